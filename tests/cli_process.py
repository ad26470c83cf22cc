"""``python -m emorec ARGS`` as a separate process, without paying the imports each time.

Why: importing Lightning, torchmetrics and torch takes about 6 s on 2 cores, and the suite runs the
CLI some sixty times. A helper process imports them once and forks a child per command; the child
takes the command's working directory, environment, argv and output files, runs ``emorec`` as
``python -m emorec`` would (``runpy``), exits with its status and runs its exit handlers. So each
command is still its own process with its own exit status and output, started from a clean state.

What a fork cannot show, the tests that need it keep a fresh interpreter (``fresh=True``): what a
newcomer sees at start-up (import-time notices), and launchers that re-execute the command (DDP).
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

# The helper process's own code, run with ``python -c``. It reads one JSON request per line on stdin
# and answers ``{"pid": ...}`` when the child starts and ``{"status": ...}`` when it ends.
_SERVER = r"""
import atexit, json, os, runpy, sys, threading, traceback
# the imports every child shares
import lightning.pytorch, torchmetrics, emorec.cli, emorec.workflows.crossval
requests, replies = sys.stdin.buffer, os.fdopen(os.dup(1), "w", buffering=1)
os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
replies.write("ready\n")
for line in requests:
    job = json.loads(line)
    sys.stdout.flush(); sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setsid()
            for fd, name, flags in ((0, os.devnull, os.O_RDONLY), (1, job["stdout"], os.O_WRONLY),
                                    (2, job["stderr"], os.O_WRONLY)):
                os.dup2(os.open(name, flags), fd)
            os.chdir(job["cwd"])
            os.environ.clear(); os.environ.update(job["env"])
            threads = os.environ.get("OMP_NUM_THREADS", "")
            # a fresh process would have read it at start-up
            if threads.isdigit() and int(threads) > 0:
                import torch; torch.set_num_threads(int(threads))
            script = job["script"]
            sys.argv = [script or "emorec", *job["argv"]]
            # as ``python -m`` puts the working directory
            # first, and ``python FILE`` the file's folder
            sys.path[0] = os.path.dirname(script) if script else job["cwd"]
            try:
                if script:
                    runpy.run_path(script, run_name="__main__")
                else:
                    runpy.run_module("emorec", run_name="__main__", alter_sys=True)
                code = 0
            except SystemExit as stop:
                code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
                if not isinstance(stop.code, (int, type(None))):
                    print(stop.code, file=sys.stderr)
            except BaseException:
                traceback.print_exc()
                code = 1
            threading._shutdown()
            atexit._run_exitfuncs()
        finally:
            try:
                sys.stdout.flush(); sys.stderr.flush()
            finally:
                os._exit(code)
    replies.write(json.dumps({"pid": pid}) + "\n")
    _, status = os.waitpid(pid, 0)
    replies.write(json.dumps({"status": os.waitstatus_to_exitcode(status)}) + "\n")
"""


class _Forker:
    """One helper process; requests are served one at a time."""

    def __init__(self):
        self.lock = threading.Lock()
        self.process: subprocess.Popen | None = None

    def _started(self) -> subprocess.Popen:
        if self.process is None or self.process.poll() is not None:
            env = dict(os.environ)
            env.pop("OMP_NUM_THREADS", None)
            self.process = subprocess.Popen(
                [sys.executable, "-c", _SERVER],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                bufsize=1,
                env=env,
            )
            ready = self.process.stdout.readline()
            if ready.strip() != "ready":
                raise RuntimeError(
                    f"the CLI helper process did not start (exit {self.process.poll()})"
                )
        return self.process

    def run(
        self, script: str | None, argv: list[str], cwd: Path, env: dict, timeout: float
    ) -> subprocess.CompletedProcess:
        with self.lock, tempfile.TemporaryDirectory() as outputs:
            out, err = Path(outputs) / "stdout", Path(outputs) / "stderr"
            out.touch(), err.touch()
            helper = self._started()
            helper.stdin.write(
                json.dumps(
                    {
                        "script": script,
                        "argv": argv,
                        "cwd": str(cwd),
                        "env": env,
                        "stdout": str(out),
                        "stderr": str(err),
                    }
                )
                + "\n"
            )
            pid = json.loads(helper.stdout.readline())["pid"]
            ready, _, _ = select.select([helper.stdout], [], [], timeout)
            if not ready:
                # the child leads its own session: it and what it started
                os.killpg(pid, signal.SIGKILL)
                helper.stdout.readline()
                raise subprocess.TimeoutExpired(
                    [script or "emorec", *argv], timeout, out.read_text(), err.read_text()
                )
            status = json.loads(helper.stdout.readline())["status"]
            return subprocess.CompletedProcess(
                [script or "emorec", *argv],
                status,
                out.read_text(errors="replace"),
                err.read_text(errors="replace"),
            )

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.stdin.close()
            self.process.wait(timeout=30)


_FORKER = _Forker()


def emorec(
    *args,
    cwd: Path | str | None = None,
    check: bool = True,
    timeout: float = 900,
    fresh: bool = False,
    **env: str,
) -> subprocess.CompletedProcess:
    """``python -m emorec ARGS`` in ``cwd`` with the suite's environment plus ``env``, as a
    ``CompletedProcess`` with text output. ``check`` fails the test with the command's output when
    it does not exit 0. ``EMOREC_RUN_DIR`` is dropped, so a command names its own run folder."""
    return _run(None, args, cwd, check, timeout, fresh, env)


def python_script(
    script: Path | str,
    *args,
    cwd: Path | str | None = None,
    check: bool = True,
    timeout: float = 900,
    fresh: bool = False,
    **env: str,
) -> subprocess.CompletedProcess:
    """``python SCRIPT ARGS`` (a benchmark, say), as :func:`emorec` runs the CLI."""
    return _run(str(Path(script).resolve()), args, cwd, check, timeout, fresh, env)


def _run(
    script: str | None, args, cwd, check: bool, timeout: float, fresh: bool, env: dict
) -> subprocess.CompletedProcess:
    argv = [str(arg) for arg in args]
    environment = {**os.environ, **{key: str(value) for key, value in env.items()}}
    environment.pop("EMOREC_RUN_DIR", None)
    where = Path(cwd) if cwd is not None else Path.cwd()
    if fresh:
        command = [sys.executable, *([script] if script else ["-m", "emorec"]), *argv]
        proc = subprocess.run(
            command, cwd=where, capture_output=True, text=True, timeout=timeout, env=environment
        )
    else:
        proc = _FORKER.run(script, argv, where, environment, timeout)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{script or 'emorec'} {' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout}\n"
            f"{proc.stderr[-4000:]}"
        )
    return proc


def close() -> None:
    _FORKER.close()
