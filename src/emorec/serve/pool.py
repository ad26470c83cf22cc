"""Inference in a bounded pool: ``workers`` threads and at most ``queue`` jobs waiting. A job past
that is refused at once (503 with ``Retry-After``) instead of joining an unbounded backlog, and a
job that waits or runs past ``timeout`` seconds answers 503 while its thread finishes it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any


class Overloaded(Exception):
    def __init__(self, reason: str, retry_after: int = 1):
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class InferencePool:
    def __init__(self, workers: int = 1, queue: int = 8, timeout: float = 30.0):
        self.workers, self.capacity, self.timeout = (
            max(1, workers),
            max(1, workers) + max(0, queue),
            timeout,
        )
        self._executor = ThreadPoolExecutor(
            max_workers=self.workers, thread_name_prefix="emorec-infer"
        )
        self._lock = threading.Lock()
        self._pending = 0  # queued + running

    @property
    def depth(self) -> int:
        """Jobs queued or running now."""
        return self._pending

    @property
    def full(self) -> bool:
        return self._pending >= self.capacity

    def _release(self, _future=None) -> None:
        with self._lock:
            self._pending -= 1

    async def run(self, job: Callable[[], Any]) -> Any:
        with self._lock:
            if self._pending >= self.capacity:
                raise Overloaded(
                    f"the server is busy ({self._pending} requests in progress); retry shortly"
                )
            self._pending += 1
        future = self._executor.submit(job)
        # the slot frees when the work ends, not when we stop waiting
        future.add_done_callback(self._release)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), timeout=self.timeout)
        except asyncio.TimeoutError:
            raise Overloaded(
                f"the request took longer than {self.timeout:.0f} s", retry_after=5
            ) from None

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
