"""Process-wide settings emorec makes for speed and memory: NumPy's BLAS on one thread while
features are computed (emorec.threads), glibc's large blocks returned to the system
(emorec.memory)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from emorec.features import spectral
from emorec.features.spectral import LogMel
from emorec.threads import numpy_blas_single_thread


def blas_threads() -> list[int]:
    """Threads of NumPy's own BLAS (SciPy and others may load their own copies beside it)."""
    numpy_prefix = os.path.dirname(np.__file__)  # .../site-packages/numpy: also matches numpy.libs/
    found = [
        lib["num_threads"]
        for lib in threadpool_info()
        if lib["user_api"] == "blas" and lib["filepath"].startswith(numpy_prefix)
    ]
    assert found, "NumPy's BLAS is not among the loaded libraries"
    return found


def test_numpy_blas_runs_on_one_thread_inside_and_as_before_outside(monkeypatch):
    before = blas_threads()
    with numpy_blas_single_thread():
        assert all(n == 1 for n in blas_threads())
    assert blas_threads() == before
    seen = []
    original = spectral.add_deltas
    monkeypatch.setattr(
        spectral, "add_deltas", lambda mel: seen.append(blas_threads()) or original(mel)
    )
    LogMel(deltas=True).extract(np.random.default_rng(0).standard_normal(16000).astype(np.float32))
    # the extractor's matrix products run on one thread
    assert seen and all(n == 1 for n in seen[0])
    assert blas_threads() == before


CHECK = "from emorec.memory import release_large_blocks; print(release_large_blocks())"


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="glibc's mallopt only",
)
def test_large_blocks_are_released_unless_the_caller_chose_glibc_thresholds():
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    assert (
        subprocess.run(
            [sys.executable, "-c", CHECK], env=env, capture_output=True, text=True, check=True
        ).stdout.strip()
        == "True"
    )
    chosen = env | {"MALLOC_MMAP_THRESHOLD_": "65536"}
    assert (
        subprocess.run(
            [sys.executable, "-c", CHECK], env=chosen, capture_output=True, text=True, check=True
        ).stdout.strip()
        == "False"
    )
