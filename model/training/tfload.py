"""Importing TensorFlow quietly: its C++ start-up chatter goes to /dev/null, not the user's terminal.

Only training (and resuming, and the Keras parity tests) import TensorFlow; the REPL and
the numpy predictor never do.
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading
from typing import Iterator

_lock = threading.Lock()


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null for the block (TensorFlow's C++ start-up lines).
    With ``STORY_REPL_DEBUG=1`` nothing is hidden."""
    if os.environ.get("STORY_REPL_DEBUG") == "1":
        yield
        return
    saved = None
    try:
        sys.stderr.flush()
        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
    except OSError:
        saved = None
    try:
        yield
    finally:
        if saved is not None:
            os.dup2(saved, 2)
            os.close(saved)


def import_tensorflow():
    """Import and return the ``tensorflow`` module, silencing its start-up log lines."""
    with _lock:
        if "tensorflow" in sys.modules and "keras" in sys.modules:
            return sys.modules["tensorflow"]
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        with quiet_stderr():
            import tensorflow as tf
            import keras  # noqa: F401

            tf.constant(0)  # the device set-up logs on first use, so do it while quiet
        return tf
