"""The SkyPilot task files in deploy/ and the README table that replaces the seed scripts.

Which validator: SkyPilot is NOT installed in the project environment (it pulls in cloud SDKs
and pins of its own), so these tests validate every task file against a JSON schema written
here from SkyPilot's own schema (``sky/utils/schemas.py``: ``get_task_schema``,
``get_resources_schema``, ``get_storage_schema``) and its YAML reference docs, with a small
validator for the JSON-schema subset those use. When the ``sky`` package is importable, the
files are also parsed with SkyPilot's own parser (``sky.Task.from_yaml``).

Why not SkyPilot's parser in CI: skypilot 0.14.1 installs here (a throwaway venv, 51 s, 459 MB),
but ``sky.Task.from_yaml`` resolves AWS instance types from SkyPilot's instance catalog, which it
downloads from GitHub, and this machine reaches only package registries. Re-checked at the end of
the first session: ``deploy/spot.yaml`` parsed (1 node, ``AWS([Spot], {'T4': 1}, disk_size=100)``);
``aws_t4.yaml`` and ``multinode.yaml`` stopped at that catalog download, not at a schema error.
"""

import importlib.util
import re
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
TASKS = sorted(DEPLOY.glob("*.yaml"))

# --------------------------------------------------------------------- schema (from SkyPilot)
STR, INT, NUM, BOOL, OBJ, ARR, NULL = (
    {"type": t} for t in ("string", "integer", "number", "boolean", "object", "array", "null")
)
JOB_RECOVERY = {
    "anyOf": [
        STR,
        {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "strategy": {"anyOf": [STR, NULL]},
                "max_restarts_on_errors": {"type": "integer", "minimum": 0},
                "recover_on_exit_codes": {
                    "anyOf": [
                        {"type": "integer", "minimum": 0, "maximum": 255},
                        {
                            "type": "array",
                            "items": {"type": "integer", "minimum": 0, "maximum": 255},
                        },
                    ]
                },
            },
        },
    ]
}
_SINGLE_RESOURCES = {
    "cloud": STR,
    "region": STR,
    "zone": STR,
    "infra": {
        "type": "string",
        "pattern": r"^(?:(?i:aws|gcp|azure|lambda|ibm|oci|scp|runpod|fluidstack|paperspace|cudo|"
        r"do|vast|nebius|vsphere|kubernetes|k8s|slurm|hyperbolic|seeweb|shadeform|primeintellect)(?:/[^/]+(?:/[^/]+)?)?"
        r"|\*(?:/[^/]+(?:/[^/]+)?)?)$",
    },
    "cpus": {"anyOf": [STR, NUM]},
    "memory": {"anyOf": [STR, NUM]},
    "accelerators": {
        "anyOf": [
            STR,
            {"type": "object", "additionalProperties": {"anyOf": [NULL, NUM]}},
            {"type": "array", "items": STR},
        ]
    },
    "instance_type": STR,
    "use_spot": BOOL,
    "job_recovery": JOB_RECOVERY,
    "disk_size": {"anyOf": [STR, INT]},
    "disk_tier": STR,
    "network_tier": STR,
    "local_disk": STR,
    "ports": {"anyOf": [STR, INT, {"type": "array", "items": {"anyOf": [STR, INT]}}, NULL]},
    "labels": {"type": "object", "additionalProperties": STR},
    "accelerator_args": OBJ,
    "image_id": {"anyOf": [STR, OBJ, NULL]},
    "autostop": {"anyOf": [BOOL, STR, INT, OBJ]},
    "priority": INT,
}
RESOURCES = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        **_SINGLE_RESOURCES,
        "any_of": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "properties": _SINGLE_RESOURCES,
            },
        },
        "ordered": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "properties": _SINGLE_RESOURCES,
            },
        },
    },
}
STORAGE = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "name": STR,
        "source": {"anyOf": [STR, {"type": "array", "items": STR}]},
        "store": {
            "type": "string",
            "ienum": ["s3", "gcs", "azure", "r2", "ibm", "oci", "nebius", "coreweave", "hf"],
        },
        "persistent": BOOL,
        "mode": {"type": "string", "ienum": ["MOUNT", "COPY", "MOUNT_CACHED"]},
        "mount_options": STR,
        "config": OBJ,
    },
}
TASK = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "name": STR,
        "workdir": {"anyOf": [STR, OBJ]},
        "event_callback": STR,
        "num_nodes": INT,
        "resources": RESOURCES,
        "file_mounts": {"type": "object", "additionalProperties": {"anyOf": [STR, STORAGE]}},
        "setup": STR,
        "run": STR,
        "envs": {
            "type": "object",
            "patternProperties": {r"^[a-zA-Z_][a-zA-Z0-9_]*$": {"type": ["string", "null"]}},
            "additionalProperties": False,
        },
        "secrets": {"anyOf": [OBJ, ARR]},
        "config": OBJ,
        "volumes": OBJ,
        "service": OBJ,
        "pool": OBJ,
    },
}
_TYPES = {
    "string": str,
    "integer": int,
    "number": (int, float),
    "boolean": bool,
    "object": dict,
    "array": list,
    "null": type(None),
}


def errors(value, schema, where="task") -> list[str]:
    """The JSON-schema subset SkyPilot's schemas use (plus ``ienum``: case-insensitive enum)."""
    if "anyOf" in schema:
        options = [errors(value, option, where) for option in schema["anyOf"]]
        return (
            []
            if any(not e for e in options)
            else [f"{where}: matches none of {len(options)} forms: {options}"]
        )
    kinds = schema.get("type")
    if kinds:
        kinds = kinds if isinstance(kinds, list) else [kinds]
        ok = any(
            isinstance(value, _TYPES[k])
            and not (k in ("integer", "number") and isinstance(value, bool))
            for k in kinds
        )
        if not ok:
            return [f"{where}: expected {kinds}, got {value!r}"]
    out = []
    if "ienum" in schema and str(value).lower() not in [v.lower() for v in schema["ienum"]]:
        out.append(f"{where}: {value!r} not one of {schema['ienum']}")
    if "pattern" in schema and isinstance(value, str) and not re.search(schema["pattern"], value):
        out.append(f"{where}: {value!r} does not match {schema['pattern']}")
    if "minimum" in schema and isinstance(value, (int, float)) and value < schema["minimum"]:
        out.append(f"{where}: {value} < {schema['minimum']}")
    if "maximum" in schema and isinstance(value, (int, float)) and value > schema["maximum"]:
        out.append(f"{where}: {value} > {schema['maximum']}")
    if isinstance(value, dict):
        props, patterns = schema.get("properties", {}), schema.get("patternProperties", {})
        for key, item in value.items():
            if key in props:
                out += errors(item, props[key], f"{where}.{key}")
                continue
            matched = [p for p in patterns if re.search(p, key)]
            for p in matched:
                out += errors(item, patterns[p], f"{where}.{key}")
            extra = schema.get("additionalProperties", True)
            if not matched and extra is False:
                out.append(f"{where}: unknown field {key!r}")
            elif not matched and isinstance(extra, dict):
                out += errors(item, extra, f"{where}.{key}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            out += errors(item, schema["items"], f"{where}[{i}]")
    return out


def load(path: Path) -> dict:
    """The task as SkyPilot sees it: ``${VAR}`` in file_mounts filled from ``envs`` at parse
    time."""
    task = yaml.safe_load(path.read_text())
    envs = {k: str(v) for k, v in (task.get("envs") or {}).items()}
    mounts = yaml.safe_dump(task.get("file_mounts") or {})
    task["file_mounts"] = yaml.safe_load(
        re.sub(r"\$\{(\w+)\}", lambda m: envs.get(m.group(1), m.group(0)), mounts)
    )
    return task


def test_there_are_the_three_task_files():
    assert [p.name for p in TASKS] == ["aws_t4.yaml", "multinode.yaml", "spot.yaml"]


@pytest.mark.parametrize("path", TASKS, ids=lambda p: p.name)
def test_task_file_matches_skypilots_schema(path):
    task = load(path)
    assert errors(task, TASK) == []
    for mount, spec in task["file_mounts"].items():
        assert "${" not in yaml.safe_dump(spec), f"{mount}: an env var SkyPilot would not fill"


def test_the_validator_catches_mistakes():
    good = load(DEPLOY / "aws_t4.yaml")
    assert errors({**good, "nodes": 2}, TASK)  # misspelt num_nodes
    assert errors({**good, "resources": {**good["resources"], "use_spot": "yes"}}, TASK)
    assert errors({**good, "resources": {**good["resources"], "infra": "amazon"}}, TASK)
    assert errors({**good, "file_mounts": {"/runs": {"name": "b", "mode": "MOUNTED"}}}, TASK)
    assert errors({**good, "envs": {"BAD-NAME": "x"}}, TASK)


@pytest.mark.parametrize("path", TASKS, ids=lambda p: p.name)
def test_setup_and_run_are_valid_bash(path):
    task = load(path)
    for section in ("setup", "run"):
        proc = subprocess.run(["bash", "-n"], input=task[section], capture_output=True, text=True)
        assert proc.returncode == 0, f"{section}: {proc.stderr}"


@pytest.mark.parametrize("path", TASKS, ids=lambda p: p.name)
def test_every_task_trains_with_emorec_from_bucket_data_into_a_bucket(path):
    task = load(path)
    assert task["workdir"] == "." and "pip install -e ." in task["setup"]
    mounts = task["file_mounts"]
    assert mounts["/data"]["source"].startswith("s3://") and mounts["/data"]["mode"] == "COPY"
    assert mounts["/runs"]["mode"] == "MOUNT" and mounts["/runs"]["store"] == "s3"
    assert "emorec prepare" in task["run"] and "emorec train" in task["run"]
    assert task["resources"]["accelerators"] == "T4:1"


def test_one_t4_on_aws():
    task = load(DEPLOY / "aws_t4.yaml")
    assert (
        task["resources"]["instance_type"] == "g4dn.xlarge" and task["resources"]["infra"] == "aws"
    )
    assert "--run-dir /runs/" in task["run"] and "num_nodes" not in task


def test_multinode_wires_skypilots_node_variables_into_lightning():
    task = load(DEPLOY / "multinode.yaml")
    assert task["num_nodes"] == 2
    run = task["run"]
    assert re.search(r'MASTER_ADDR=\$\(echo "\$SKYPILOT_NODE_IPS" \| head -n1\)', run)
    assert "NODE_RANK=$SKYPILOT_NODE_RANK" in run and "SKYPILOT_NUM_NODES" in run
    assert '--num-nodes "$NUM_NODES"' in run and '--devices "$SKYPILOT_NUM_GPUS_PER_NODE"' in run
    assert "EMOREC_RUN_DIR=/runs/" in run, "every node must name the same run directory"


def test_spot_job_resumes_from_the_bucket_after_preemption():
    task = load(DEPLOY / "spot.yaml")
    resources = task["resources"]
    assert resources["use_spot"] is True and resources["job_recovery"]["strategy"] == "FAILOVER"
    run = task["run"]
    assert "RUN=/runs/runs/spot-$SKYPILOT_TASK_ID" in run, "the same directory on every recovery"
    assert 'emorec train --resume "$RUN"' in run and 'EMOREC_RUN_DIR="$RUN" emorec train' in run
    assert "sky jobs launch" in (DEPLOY / "spot.yaml").read_text()


def test_recovery_branch_of_the_spot_script_picks_resume_only_for_an_existing_run(tmp_path):
    """Run the spot job's run script with a fake `emorec` that records its arguments."""
    task = load(DEPLOY / "spot.yaml")
    script = (
        task["run"]
        .replace(". ~/emorec-venv/bin/activate", "")
        .replace("/runs/", f"{tmp_path}/runs/")
    )
    script = script.replace("~/work", f"{tmp_path}/work").replace("$HOME/work", f"{tmp_path}/work")
    (tmp_path / "bin").mkdir()
    fake = tmp_path / "bin" / "emorec"
    fake.write_text(f'#!/bin/bash\necho "EMOREC_RUN_DIR=$EMOREC_RUN_DIR $*" >> {tmp_path}/calls\n')
    fake.chmod(0o755)
    env = {
        "PATH": f"{tmp_path}/bin:/usr/bin:/bin",
        "SKYPILOT_TASK_ID": "sky-managed-1_emorec-spot_3-0",
        **{k: str(v) for k, v in task["envs"].items()},
    }
    for _ in range(2):
        subprocess.run(["bash", "-c", script], env=env, check=True, capture_output=True)
        run_dir = tmp_path / "runs" / "runs" / "spot-sky-managed-1_emorec-spot_3-0"
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text("{}")  # what the first session leaves behind
    calls = (tmp_path / "calls").read_text().splitlines()
    trains = [c for c in calls if " train " in c]
    assert (
        "train configs/ravdess_attn_crnn.yaml" in trains[0]
        and f"EMOREC_RUN_DIR={run_dir}" in trains[0]
    )
    assert f"train --resume {run_dir}" in trains[1]


@pytest.mark.skipif(
    importlib.util.find_spec("sky") is None,
    reason="SkyPilot is not installed here (schema checks above)",
)
@pytest.mark.parametrize("path", TASKS, ids=lambda p: p.name)
def test_skypilot_parses_the_task_file(path):  # pragma: no cover - only where skypilot is installed
    import sky

    task = sky.Task.from_yaml(str(path))
    assert task.run and task.setup


SEED_SCRIPTS = [
    "deploy_attn_crnn_training.sh",
    "deploy_attn_crnn_v2.sh",
    "deploy_lstm_attention_model.sh",
    "deploy_fixed_cnn_lstm_model_to_ec2.sh",
    "deploy_hybrid_attention.sh",
    "check_sequence_generator.sh",
    "monitor_attn_crnn_training.sh",
    "monitor_attn_crnn_v2.sh",
    "monitor_ec2_cnn_lstm_training.sh",
    "monitor_hybrid_attention.sh",
    "monitor_lstm_attention_model.sh",
    "download_lstm_attention_results.sh",
    "download_hybrid_attention_results.sh",
    "live_continuous_monitor.sh",
]


def test_readme_maps_every_seed_script_to_its_replacement():
    readme = (DEPLOY / "README.md").read_text()
    seeds = REPO.parent / "shared" / "seeds"
    names = set(SEED_SCRIPTS)
    if seeds.is_dir():  # the seeds themselves, when they are beside the repository
        names |= {
            Path(m).name
            for f in seeds.glob("*.txt")
            for m in re.findall(r"[\w./-]+\.sh\b", f.read_text())
        }
    missing = sorted(n for n in names if n not in readme)
    assert not missing, f"deploy/README.md does not say what replaces {missing}"
    for needle in (
        "monitor_attn_crnn_training.sh -s",
        "monitor_attn_crnn_training.sh -l",
        "monitor_attn_crnn_training.sh -d",
        "monitor_attn_crnn_v2.sh -c",
        "live_continuous_monitor.sh gpu",
        "live_continuous_monitor.sh system",
        "live_continuous_monitor.sh all",
        "sky rsync-down",
        "sky storage",
        "sky logs",
        "emorec monitor",
        "emorec runs",
        "--resume",
    ):
        assert needle in readme, needle
