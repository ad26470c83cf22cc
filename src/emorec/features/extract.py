"""Run an extractor over a manifest: skip cached clips, use every core, list bad files.

Each clip's features are computed and written to the :class:`FeatureStore` by the process
that computed them (an atomic rename), so a kill at any moment loses at most the clips in
flight and a re-run resumes where it stopped.

Worker processes come from a fork server (or are spawned where there is none), never forked
from the caller, whose threads (a progress bar, BLAS, torch) make ``fork`` unsafe. Each worker
re-imports the caller's ``__main__`` as multiprocessing does (it may define the extractor),
and watches a pipe from the caller: when the caller dies, even by SIGKILL, the workers exit,
and with them the fork server and the resource tracker, which live only while they are used.

A script that calls :func:`extract_features` outside an ``if __name__ == "__main__":`` guard
would run that call again in every worker, which multiprocessing refuses during start-up.
Such a call is detected (the script is parsed) and extracts in this process, with a
one-line warning that the guard gives it its workers back. ``python -m package`` and
interactive sessions are never re-imported and keep their workers.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing import Pipe, get_all_start_methods, get_context
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from pathlib import Path

import numpy as np

from emorec.errors import BadInputError, ConfigError, EmorecError, SkippedFile
from emorec.features.base import FeatureExtractor, validate_features
from emorec.features.main_guard import unguarded_main_script
from emorec.features.store import FeatureStore
from emorec.corpora.manifest import Clip

log = logging.getLogger(__name__)

#: Temporary files older than this are leftovers of a killed run and are removed.
STALE_TMP_SECONDS = 3600.0
#: With ``workers=None``, fewer workers than cores when there are fewer clips than this each.
MIN_CLIPS_PER_WORKER = 32
#: Imported once by the fork server, so that forked workers start warm (a missing one is skipped).
#: Only what the spectral extractors need (NumPy): the fork server's imports delay every worker.
FORKSERVER_PRELOAD = ("emorec.features.extract", "emorec.features.spectral")


@dataclass
class ExtractResult:
    """``extracted + cached + duplicates + len(skipped) == len(clips)``. Clips with the same
    content share one cache entry: the first counts as extracted or cached, each other one
    as a duplicate (or as skipped, like the first, when it fails). ``audio_seconds`` counts the
    audio of the clips extracted in this run, ``seconds`` the wall time of the whole call."""

    extracted: int
    cached: int
    skipped: list[SkippedFile] = field(default_factory=list)
    seconds: float = 0.0
    audio_seconds: float = 0.0
    duplicates: int = 0

    @property
    def clips_per_second(self) -> float:
        return self.extracted / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class _Outcome:
    reason: str | None = None  # None: features written
    fatal: str | None = None  # an error class name: stop the whole run
    audio_seconds: float = 0.0


def compute_features(extractor: FeatureExtractor, clip: Clip) -> np.ndarray:
    """``(T, F)`` float32 for one clip. Extractors that match on more than the media path
    (the ``npy`` importer) may define ``extract_clip(clip)``; it is used when present."""
    hook = getattr(extractor, "extract_clip", None)
    features = hook(clip) if callable(hook) else extractor.extract_file(clip.path)
    return validate_features(clip.path, features)


def _process(extractor: FeatureExtractor, store: FeatureStore, clip: Clip) -> _Outcome:
    try:
        features = compute_features(extractor, clip)
    except BadInputError as err:
        reason = err.reason if err.path == str(clip.path) else f"{err.reason} ({err.path})"
        return _Outcome(reason=reason)
    except EmorecError as err:  # a configuration / installation problem: same for every file
        return _Outcome(reason=str(err), fatal=type(err).__name__)
    except Exception as err:  # a bug or an exotic file: list it, keep going
        text = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
        return _Outcome(reason=f"{type(err).__name__}: {text}".rstrip(": "))
    store.put(clip, features)
    seconds = clip.duration
    if seconds <= 0 and extractor.frames_per_second > 0:
        seconds = features.shape[0] / extractor.frames_per_second
    return _Outcome(audio_seconds=float(seconds))


# -- worker processes -------------------------------------------------------------------
_WORKER: tuple[FeatureExtractor, FeatureStore] | None = None


def limit_threads(n: int = 1) -> None:
    """Keep one process from starting a thread per core in BLAS, OpenMP and torch."""
    for var in (
        "OMP_NUM_THREADS",
        "MKL_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "NUMBA_NUM_THREADS",
        "VECLIB_MAXIMUM_THREADS",
    ):
        os.environ[var] = str(n)
    with contextlib.suppress(Exception):
        from threadpoolctl import threadpool_limits

        threadpool_limits(n)
    if "torch" in sys.modules:
        with contextlib.suppress(Exception):
            sys.modules["torch"].set_num_threads(n)


def _init_worker(payload: bytes, caller_alive: Connection) -> None:
    global _WORKER
    threading.Thread(target=_exit_with_caller, args=(caller_alive,), daemon=True).start()
    limit_threads(1)
    _WORKER = pickle.loads(payload)


def _exit_with_caller(caller_alive: Connection) -> None:
    """Block until the caller's end of the pipe closes, then leave. Nothing is ever sent: the
    end of file comes when the caller exits, however it dies. (Neither the parent's death signal,
    which follows the fork server, nor the work queue, whose write end every worker holds too,
    would notice.)"""
    with contextlib.suppress(EOFError, OSError):
        caller_alive.recv_bytes()
    os._exit(1)


def _work(clip: Clip) -> _Outcome:
    assert _WORKER is not None, "worker not initialised"
    return _process(*_WORKER, clip)


def _context() -> BaseContext:
    """A fork server where there is one: it imports the heavy modules once, in a clean
    process, and forks each worker from it (fast, and safe with threads in this process).
    Elsewhere fresh interpreters (spawn)."""
    if "forkserver" not in get_all_start_methods():
        return get_context("spawn")
    context = get_context("forkserver")
    context.set_forkserver_preload(list(FORKSERVER_PRELOAD))
    return context


def _pool(workers: int, payload: bytes, caller_alive: Connection) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=_context(),
        initializer=_init_worker,
        initargs=(payload, caller_alive),
    )


def _run_parallel(
    todo: Sequence[Clip], workers: int, payload: bytes, report: Callable[[int, _Outcome], None]
) -> None:
    """Run ``todo`` on a pool. If a worker dies (segfault, out of memory), the clips left are
    run one at a time in a fresh single-worker pool until the culprit is found and named,
    then the rest go back to a full pool."""
    # Only this process holds ``alive``: workers get copies of the read end alone.
    caller_alive, alive = Pipe(duplex=False)
    try:
        _run_pools(todo, workers, payload, caller_alive, report)
    finally:
        alive.close()
        caller_alive.close()


def _run_pools(
    todo: Sequence[Clip],
    workers: int,
    payload: bytes,
    caller_alive: Connection,
    report: Callable[[int, _Outcome], None],
) -> None:
    remaining = list(range(len(todo)))
    crashed = _Outcome(reason="worker process died while extracting (crash or out of memory)")
    isolate = False
    while remaining:
        pool = _pool(1 if isolate else workers, payload, caller_alive)
        try:
            if isolate:
                while remaining:
                    index = remaining.pop(0)
                    try:
                        report(index, pool.submit(_work, todo[index]).result())
                    except BrokenProcessPool:
                        report(index, crashed)
                        isolate = False  # culprit found: back to full speed
                        break
                continue
            futures: dict[Future, int] = {pool.submit(_work, todo[i]): i for i in remaining}
            finished: set[int] = set()
            try:
                for future in as_completed(futures):
                    report(futures[future], future.result())
                    finished.add(futures[future])
            except BrokenProcessPool:
                for future, index in futures.items():
                    if (
                        index not in finished
                        and future.done()
                        and not future.cancelled()
                        and future.exception() is None
                    ):
                        report(index, future.result())
                        finished.add(index)
                isolate = True
            remaining = [i for i in remaining if i not in finished]
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


# -- the runner -------------------------------------------------------------------------
def extract_features(
    clips: Iterable[Clip],
    extractor: FeatureExtractor,
    cache_root: str | os.PathLike,
    *,
    workers: int | None = None,
    progress: bool = True,
) -> ExtractResult:
    """Features for every clip into ``FeatureStore(cache_root, extractor)``.

    ``workers``: processes to use; ``None`` means ``os.cpu_count()`` but at most one per
    :data:`MIN_CLIPS_PER_WORKER` clips to extract (and 1 for extractors with
    ``parallel = False``, e.g. ``ssl``); ``0`` or ``1`` runs in this process. A file that
    fails becomes a ``SkippedFile(path, reason, stage="extract")``; a configuration or
    installation error (:class:`EmorecError` other than :class:`BadInputError`) stops the run.
    """
    start = time.perf_counter()
    clips = list(clips)
    store = FeatureStore.for_extractor(cache_root, extractor)
    remove_stale_tmp(store.root)
    groups: dict[Path, list[Clip]] = {}
    for clip in clips:  # clips with identical audio share one entry: compute it once
        groups.setdefault(store.path(clip), []).append(clip)
    cached = {entry for entry in groups if entry.is_file()}
    todo = [group for entry, group in groups.items() if entry not in cached]
    result = ExtractResult(
        extracted=0, cached=len(cached), duplicates=sum(len(groups[entry]) - 1 for entry in cached)
    )
    if workers is None:  # starting a worker costs seconds of imports: give each enough work
        workers = (os.cpu_count() or 1) if getattr(extractor, "parallel", True) else 1
        workers = min(workers, -(-len(todo) // MIN_CLIPS_PER_WORKER))
    workers = max(0, min(int(workers), len(todo)))
    script = unguarded_main_script() if workers > 1 else None
    if script is not None:
        log.warning(
            '%s calls extract_features outside `if __name__ == "__main__":`, so each '
            "worker would run it again: extracting in this process (add the guard for "
            "%d workers)",
            script,
            workers,
        )
        workers = 1

    label = f"{extractor.name} ({result.cached} cached)"
    with _progress_bar(progress, len(todo), label) as advance:

        def report(index: int, outcome: _Outcome) -> None:
            group = todo[index]
            if outcome.fatal:
                error = ConfigError if outcome.fatal == "ConfigError" else EmorecError
                raise error(outcome.reason)
            if outcome.reason is None:
                result.extracted += 1
                result.duplicates += len(group) - 1
                result.audio_seconds += outcome.audio_seconds
            else:
                result.skipped.extend(
                    SkippedFile(path=str(c.path), reason=outcome.reason, stage="extract")
                    for c in group
                )
            advance()

        if workers <= 1:
            for index, group in enumerate(todo):
                report(index, _process(extractor, store, group[0]))
        else:
            payload = pickle.dumps((extractor, store))
            _run_parallel([g[0] for g in todo], workers, payload, report)
    result.seconds = time.perf_counter() - start
    return result


@contextlib.contextmanager
def _progress_bar(enabled: bool, total: int, label: str) -> Iterator[Callable[[], None]]:
    if not enabled or total == 0:
        yield lambda: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        Task,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class RateColumn(ProgressColumn):
        def render(self, task: Task) -> Text:
            speed = task.finished_speed or task.speed
            return Text(f"{speed:.1f} clips/s" if speed else "- clips/s", style="cyan")

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task(label, total=total)
        yield lambda: bar.advance(task)


def remove_stale_tmp(root: Path, older_than: float = STALE_TMP_SECONDS) -> int:
    """Delete ``.*.tmp`` files a killed run left in a store (not those of a live run)."""
    removed, now = 0, time.time()
    for tmp in root.rglob(".*.tmp"):
        with contextlib.suppress(OSError):
            if now - tmp.stat().st_mtime > older_than:
                tmp.unlink()
                removed += 1
    return removed


# -- reading back and reporting ---------------------------------------------------------
def load_features(
    clips: Iterable[Clip], store: FeatureStore, *, strict: bool = False
) -> dict[str, np.ndarray]:
    """``{clip_id: (T, F)}`` for the clips in the store. Clips without an entry (skipped at
    extraction) are left out, or raise ``KeyError`` naming the first one when ``strict``."""
    features: dict[str, np.ndarray] = {}
    for clip in clips:
        array = store.get(clip)
        if array is None:
            if strict:
                store.load(clip)  # raises KeyError with the advice
            continue
        features[clip.clip_id] = array
    return features
