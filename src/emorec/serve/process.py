"""``emorec serve`` in a child process on a free loopback port, ready once ``/healthz`` answers: for
integration tests, notebooks and load benchmarks that talk to a real server.

    with ServeProcess("model_dir", "--workers", "2") as server:
        httpx.post(f"{server.url}/predict", ...)
"""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (the OS picks it)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class ServeProcess:
    """``emorec serve [MODEL] [OPTIONS...] --port P`` for as long as the ``with`` block lasts.

    ``model`` None serves the released model. The child's output goes to a temporary file, not a
    pipe (a long load run would fill a pipe and stall the server); it is ``output`` after exit and
    ends the error when the child dies or does not answer within ``startup_timeout`` seconds."""

    def __init__(
        self,
        model: str | Path | None = None,
        *options: str,
        host: str = "127.0.0.1",
        startup_timeout: float = 120.0,
    ):
        self.host, self.port = host, free_port(host)
        self.url = f"http://{host}:{self.port}"
        self.command = [
            sys.executable,
            "-m",
            "emorec",
            "serve",
            *([str(model)] if model is not None else []),
            *options,
            "--host",
            host,
            "--port",
            str(self.port),
        ]
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen | None = None
        self._log = None
        self.output = ""

    @property
    def pid(self) -> int:
        assert self.process is not None, "the server is not started"
        return self.process.pid

    def __enter__(self) -> "ServeProcess":
        self._log = tempfile.TemporaryFile("w+")
        self.process = subprocess.Popen(
            self.command, stdout=self._log, stderr=subprocess.STDOUT, text=True
        )
        deadline = time.monotonic() + self.startup_timeout
        while self.process.poll() is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2):
                    return self
            except OSError:
                time.sleep(0.3)
        died = self.process.poll() is not None
        self.__exit__()
        why = (
            f"exited with status {self.process.returncode}"
            if died
            else f"did not answer /healthz within {self.startup_timeout:g} s"
        )
        raise RuntimeError(f"emorec serve {why}: {self.output[-2000:]}")

    def __exit__(self, *_) -> None:
        if self.process is None or self._log is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.seek(0)
        self.output = self._log.read()
        self._log.close()
        self._log = None
