"""How many threads numpy's matrix products use: every core (up to :data:`MOST`) while
nothing else computes here, one while a model trains in this process.

A generated word or a completion is a few products of a small batch with a large matrix
(the LSTM's recurrent kernel, the output layer), read from memory each time: two threads
read it about twice as fast (figures: bench/README.md, Generation with a story). While
TensorFlow trains in the background it keeps the cores busy, and a BLAS thread waiting for a
core would make every product slower, so training narrows BLAS to one thread until it ends.
A thread count the user set (``OPENBLAS_NUM_THREADS``, ``OMP_NUM_THREADS``) is left alone.
threadpoolctl changes the count of the BLAS numpy loaded, whichever it is.
"""
from __future__ import annotations

import functools
import os
import threading
from typing import Callable

MOST = 4  # beyond this the products are too small to share out
_USER_SET = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
_lock = threading.Lock()
_training = 0  # trainings running in this process
_controller = None
_user_set: bool | None = None  # whether the user chose the count (known at start())


def start() -> None:
    """At start-up, before numpy is loaded: BLAS starts with :func:`idle_threads` threads
    unless the user chose a count."""
    global _user_set
    _user_set = chosen_by_user()
    if not _user_set:
        os.environ["OPENBLAS_NUM_THREADS"] = str(idle_threads())


def chosen_by_user() -> bool:
    if _user_set is not None:
        return _user_set
    return any(os.environ.get(name) for name in _USER_SET)


def idle_threads() -> int:
    """The threads BLAS uses while nothing trains: the cores this process may run on, at most MOST."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(MOST, cores))


def _limit(n: int) -> None:
    global _controller
    if chosen_by_user():
        return
    try:
        if _controller is None:
            from threadpoolctl import ThreadpoolController

            _controller = ThreadpoolController()
        _controller.limit(limits=n, user_api="blas")
    except Exception:  # no threadpoolctl, or a BLAS it cannot drive: BLAS keeps its own count
        pass


def training(fn: Callable) -> Callable:
    """``fn`` (a training thread's body) run with BLAS on one thread; the cores come back after."""

    @functools.wraps(fn)
    def run(*args, **kwargs):
        global _training
        with _lock:
            _training += 1
            _limit(1)
        try:
            return fn(*args, **kwargs)
        finally:
            with _lock:
                _training -= 1
                if not _training:
                    _limit(idle_threads())

    return run
