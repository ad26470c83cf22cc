"""The extraction runner's processes as a user's script sees them: no orphans after a kill,
no ``if __name__ == "__main__":`` guard needed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import REPO
from test_extract import entries, tones

from emorec.features import FeatureStore
from emorec.features.spectral import LogMel
from emorec.corpora.manifest import write_manifest

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="reads /proc (Linux)")

ENV = {**os.environ, "PYTHONPATH": str(REPO / "src")}


def _stat(pid: int) -> tuple[str, int, int] | None:
    """``(state, ppid, start time)`` of a process, or ``None`` when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the name in parentheses may hold spaces
    return fields[0], int(fields[1]), int(fields[19])


def descendants(root: int) -> dict[int, int]:
    """``{pid: start time}`` of every process below ``root``."""
    children: dict[int, list[tuple[int, int]]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and (stat := _stat(int(name))):
            children.setdefault(stat[1], []).append((int(name), stat[2]))
    found, todo = {}, [root]
    while todo:
        for pid, start in children.get(todo.pop(), []):
            found[pid] = start
            todo.append(pid)
    return found


def alive(pid: int, start: int) -> bool:
    stat = _stat(pid)  # the same start time: not a new process that reuses the pid
    return stat is not None and stat[2] == start and stat[0] not in "ZX"  # zombies hold nothing


SLOW_SCRIPT = textwrap.dedent("""
    import sys, time
    from emorec.features.extract import extract_features
    from emorec.features.spectral import LogMel
    from emorec.corpora.manifest import read_manifest

    class SlowLogMel(LogMel):  # same name and config as LogMel: the same cache
        def extract(self, wave):
            time.sleep(0.3)
            return super().extract(wave)

    if __name__ == "__main__":
        extract_features(read_manifest(sys.argv[1]), SlowLogMel(), sys.argv[2], workers=2,
                         progress=False)
""")


@pytest.mark.slow
def test_workers_fork_server_and_tracker_exit_when_the_caller_is_killed(tmp_path):
    manifest = write_manifest(tones(tmp_path / "audio", 60), tmp_path / "manifest.csv")
    (tmp_path / "slow.py").write_text(SLOW_SCRIPT)
    store = FeatureStore.for_extractor(tmp_path / "cache", LogMel())
    with open(tmp_path / "stderr.txt", "w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, str(tmp_path / "slow.py"), str(manifest), str(tmp_path / "cache")],
            env=ENV,
            stderr=stderr,
        )
    below: dict[int, int] = {}
    try:
        deadline = time.monotonic() + 120
        while len(entries(store)) < 2:  # the workers are up and writing
            assert proc.poll() is None, (tmp_path / "stderr.txt").read_text()
            assert time.monotonic() < deadline, "extraction did not start"
            time.sleep(0.05)
        below = descendants(proc.pid)
        assert len(below) >= 3, below  # the fork server and 2 workers at least
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 10
        while (
            any(alive(pid, start) for pid, start in below.items()) and time.monotonic() < deadline
        ):
            time.sleep(0.1)
        survivors = {
            pid: Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")[:120]
            for pid, start in below.items()
            if alive(pid, start)
        }
        assert not survivors, f"still running 10 s after the caller's SIGKILL: {survivors}"
        assert len(entries(store)) < 60  # the kill came mid-run
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid, start in below.items():
            if alive(pid, start):
                os.kill(pid, signal.SIGKILL)


PID_SCRIPT = """
import os, sys
from emorec.features.extract import extract_features
from emorec.features.spectral import LogMel
from emorec.corpora.manifest import read_manifest

class PidLogMel(LogMel):  # same name and config as LogMel; notes which process ran it
    def extract(self, wave):
        open(os.path.join(sys.argv[3], str(os.getpid())), "w").close()
        return super().extract(wave)

def run():
    result = extract_features(read_manifest(sys.argv[1]), PidLogMel(), sys.argv[2], workers=2,
                              progress=False)
    print(os.getpid(), result.extracted)
"""


@pytest.mark.slow
@pytest.mark.parametrize("guarded", [False, True])
def test_a_script_with_or_without_the_main_guard_finishes(tmp_path, guarded):
    clips = tones(tmp_path / "audio", 4)
    manifest = write_manifest(clips, tmp_path / "manifest.csv")
    script = tmp_path / "plain.py"
    script.write_text(
        PID_SCRIPT + ('if __name__ == "__main__":\n    run()\n' if guarded else "run()\n")
    )
    (tmp_path / "pids").mkdir()
    proc = subprocess.run(
        [
            sys.executable,
            str(script),
            str(manifest),
            str(tmp_path / "cache"),
            str(tmp_path / "pids"),
        ],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    caller, extracted = proc.stdout.split()
    assert int(extracted) == 4
    assert len(entries(FeatureStore.for_extractor(tmp_path / "cache", LogMel()))) == 4
    ran_in = {p.name for p in (tmp_path / "pids").iterdir()}
    if guarded:  # the workers did the work, and nothing was said
        assert caller not in ran_in and "outside `if __name__" not in proc.stderr, proc.stderr
    else:  # the call would run again in each worker: it ran here instead, and said why
        assert ran_in == {caller}
        warning = [line for line in proc.stderr.splitlines() if "outside `if __name__" in line]
        assert len(warning) == 1 and str(script) in warning[0], proc.stderr
