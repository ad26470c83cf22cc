"""The features of a whole clip set packed into a few large files, read clip by clip.

Layout, beside the per-clip entries of the :class:`~emorec.features.store.FeatureStore`::

    CACHE/<extractor>-<hash>/packs/<dtype>-<clip set hash>/index.json
    CACHE/<extractor>-<hash>/packs/<dtype>-<clip set hash>/shard-00000.npy
                                                   (frames, F), <= SHARD_BYTES each

A training run over tens of thousands of clips held every clip's ``(T, F)`` float32 array in
memory (40 000 clips of 64-mel log-mel with deltas: about 7 GB). A pack holds them on disk
instead, as ``.npy`` shards (``np.load(mmap_mode="r")`` maps one) and an index of where each
clip's frames start; :meth:`PackedStore.get` reads one clip's rows with ``os.pread``. Reading
through the page cache rather than a mapping keeps the pages out of the process's resident set,
so the memory of a run no longer grows with its corpus, and forked loader workers share the
file descriptors safely (``pread`` has no file position to race on).

A pack is keyed by the set of clips it holds and its dtype, so every fold, cell and recipe over
the same manifest shares one, and it is built from the per-clip entries, each read once. It is
written in a temporary folder renamed into place: a kill leaves a whole pack or none.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from emorec.features.store import FeatureStore
from emorec.corpora.manifest import Clip

SHARD_BYTES = 1 << 30  # a shard's size at most (a clip is never split across two)
DTYPES = ("float32", "float16")
STALE_SECONDS = 6 * 3600  # a temporary pack folder this old is left from a killed build


class PackedStore:
    """Read-only features of a clip set, one ``(T, F)`` array per clip, read from packed shards.

    The reading side of a :class:`FeatureStore` (``name``, ``config``, ``key``, ``get``, ``in``),
    so a dataset takes either. ``get`` returns the pack's dtype (float16 halves disk and page
    cache; what the model sees is cast to float32 by the dataset).
    """

    def __init__(self, store: FeatureStore, folder: Path):
        self.store = store
        self.name = store.name
        self.config = store.config
        self.folder = Path(folder)
        index = json.loads((self.folder / "index.json").read_text())
        self.dtype = np.dtype(index["dtype"])
        self.n_features = int(index["features"])
        self._shards = [self.folder / s["file"] for s in index["shards"]]
        self._offsets = [int(s["offset"]) for s in index["shards"]]
        self._where = {
            key: (int(shard), int(start), int(frames))
            for key, shard, start, frames in zip(
                index["keys"], index["shard"], index["start"], index["frames"]
            )
        }
        self._fds: dict[int, int] = {}
        self._pid = os.getpid()

    @classmethod
    def for_clips(
        cls, store: FeatureStore, clips: Iterable[Clip], dtype: str = "float32"
    ) -> "PackedStore":
        """The pack of every clip of ``clips`` that has an entry in ``store``, built if missing."""
        if dtype not in DTYPES:
            raise ValueError(f"pack dtype: expected one of {DTYPES}, got {dtype!r}")
        keys = sorted({store.key(c) for c in clips if c in store})
        digest = hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16]
        folder = store.root / "packs" / f"{dtype}-{digest}"
        if not (folder / "index.json").is_file():
            _build(store, keys, folder, np.dtype(dtype))
        return cls(store, folder)

    def key(self, clip: Clip) -> str:
        return self.store.key(clip)

    def __contains__(self, clip: Clip) -> bool:
        return self.key(clip) in self._where

    def __len__(self) -> int:
        return len(self._where)

    def frames(self, clip: Clip) -> int:
        """The clip's number of frames ``T`` without reading them (0 when absent)."""
        where = self._where.get(self.key(clip))
        return where[2] if where else 0

    def get(self, clip: Clip) -> np.ndarray | None:
        """Features ``(T, F)`` in the pack's dtype, or ``None`` when the clip has none."""
        where = self._where.get(self.key(clip))
        if where is None:
            return None
        shard, start, frames = where
        row = self.n_features * self.dtype.itemsize
        data = os.pread(self._fd(shard), frames * row, self._offsets[shard] + start * row)
        if len(data) != frames * row:
            raise OSError(
                f"{self._shards[shard]}: truncated pack shard (rebuild it "
                f"by removing {self.folder})"
            )
        return np.frombuffer(data, self.dtype).reshape(frames, self.n_features)

    def _fd(self, shard: int) -> int:
        if self._pid != os.getpid():  # a forked worker: descriptors are shared, but keep its own
            self._fds, self._pid = {}, os.getpid()
        if shard not in self._fds:
            self._fds[shard] = os.open(self._shards[shard], os.O_RDONLY)
        return self._fds[shard]

    def __getstate__(self) -> dict[str, Any]:  # a spawned worker opens its own descriptors
        return {**self.__dict__, "_fds": {}}

    def __del__(self) -> None:
        for fd in getattr(self, "_fds", {}).values():
            with contextlib.suppress(OSError):
                os.close(fd)


def _build(store: FeatureStore, keys: Sequence[str], folder: Path, dtype: np.dtype) -> None:
    """Write the pack of ``keys`` into a temporary folder beside ``folder``, then rename it
    there."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(folder.parent)
    headers, readable = [], []
    for key in keys:  # shapes only: np.load with mmap_mode reads the header, not the data
        path = store.entry_path(key)
        try:
            headers.append((path, np.load(path, mmap_mode="r", allow_pickle=False).shape))
            readable.append(key)
        except (ValueError, OSError, EOFError):  # unreadable: left out, so the clip reads as absent
            continue
    keys = readable
    n_features = headers[0][1][1] if headers else 0
    if any(len(shape) != 2 or shape[1] != n_features for _, shape in headers):
        raise ValueError(
            f"{store.root}: entries differ in feature size; cannot pack them into one array"
        )
    row = max(n_features, 1) * dtype.itemsize
    # clips to shards: a new shard when the next clip would pass SHARD_BYTES
    plan: list[list[int]] = [[]]
    size = 0
    for i, (_, shape) in enumerate(headers):
        if plan[-1] and size + shape[0] * row > SHARD_BYTES:
            plan.append([])
            size = 0
        plan[-1].append(i)
        size += shape[0] * row
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        index: dict[str, Any] = {
            "dtype": dtype.name,
            "features": n_features,
            "shards": [],
            "keys": [],
            "shard": [],
            "start": [],
            "frames": [],
        }
        for number, members in enumerate(plan):
            file = f"shard-{number:05d}.npy"
            total = sum(headers[i][1][0] for i in members)
            shard = np.lib.format.open_memmap(
                tmp / file, mode="w+", dtype=dtype, shape=(total, n_features)
            )
            start = 0
            for i in members:
                path, (frames, _) = headers[i]
                values = np.load(path, allow_pickle=False)
                with np.errstate(over="ignore"):  # checked just below, with the file named
                    shard[start : start + frames] = values
                if (
                    dtype == np.float16
                    and not np.isfinite(shard[start : start + frames]).all()
                    and np.isfinite(values).all()
                ):
                    raise ValueError(
                        f"{path}: features beyond float16's range (+-65504); use data.pack float32"
                    )
                index["keys"].append(keys[i])
                index["shard"].append(number)
                index["start"].append(start)
                index["frames"].append(frames)
                start += frames
            shard.flush()
            offset = shard.offset
            del shard
            index["shards"].append({"file": file, "frames": total, "offset": offset})
        (tmp / "index.json").write_text(json.dumps(index))
        for file in tmp.iterdir():
            with open(file, "rb+") as handle:
                os.fsync(handle.fileno())
        try:
            os.rename(tmp, folder)
        except OSError:  # another process built the same pack first: theirs is as good
            if not (folder / "index.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _remove_stale(packs: Path) -> None:
    now = time.time()
    for tmp in packs.glob(".*.tmp"):
        with contextlib.suppress(OSError):
            if now - tmp.stat().st_mtime > STALE_SECONDS:
                shutil.rmtree(tmp, ignore_errors=True)
