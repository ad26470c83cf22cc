"""NumPy's linear algebra on one thread while emorec computes features.

Why: NumPy's BLAS (OpenBLAS in its wheels) keeps its own worker threads beside torch's OpenMP
threads, and both pools spin for a while after each call. On a machine with few cores they take
turns starving each other, while the matrix products of feature extraction (a mel filterbank,
delta filters: a few hundred frames) gain nothing from threads. With both pools at 2 threads on 2
cores, one 3 s clip took 1.7x as long end to end through ``Recognizer.predict`` (16 ms instead of
10 ms, ``benchmarks/use_speed.py``). torch's own thread count is not touched.
"""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def _numpy_blas():
    # Built on first use, when NumPy's BLAS is loaded; finding the libraries takes about 1.5 ms,
    # each limit() below about 0.01 ms.
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController().select(user_api="blas")


def numpy_blas_single_thread():
    """Context manager: NumPy's BLAS on one thread inside it, as it was outside it."""
    return _numpy_blas().limit(limits=1)
