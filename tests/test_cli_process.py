"""The suite's forked CLI runner behaves as a fresh process would: own status, folder, environment,
output, and a timeout that kills the command and leaves the runner usable."""

import subprocess

import pytest

from cli_process import emorec, python_script


def test_a_forked_command_has_its_own_folder_environment_output_and_status(tmp_path):
    (tmp_path / "show.py").write_text(
        "import os, sys\nprint(os.getcwd(), os.environ['EMOREC_PROBE'], sys.argv[1:])\n"
        "print('to stderr', file=sys.stderr)\nsys.exit(3)\n"
    )
    proc = python_script(tmp_path / "show.py", "a", 1, cwd=tmp_path, check=False, EMOREC_PROBE="x")
    assert proc.returncode == 3
    assert (
        proc.stdout.split() == [str(tmp_path), "x", "['a',", "'1']"]
        and proc.stderr == "to stderr\n"
    )
    assert (
        proc.stdout
        == python_script(
            tmp_path / "show.py", "a", 1, cwd=tmp_path, check=False, fresh=True, EMOREC_PROBE="x"
        ).stdout
    )


def test_a_command_past_its_timeout_is_killed_and_the_next_one_runs(tmp_path):
    (tmp_path / "sleep.py").write_text("import time\ntime.sleep(60)\n")
    with pytest.raises(subprocess.TimeoutExpired):
        python_script(tmp_path / "sleep.py", cwd=tmp_path, timeout=1)
    version = emorec("--version", cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.strip()
