"""Importing TensorFlow quietly: its C++ start-up chatter goes to /dev/null, not the user's terminal.

Only training (and resuming, and the Keras parity tests) import TensorFlow; the REPL and
the numpy predictor never do.
"""
from __future__ import annotations

import os
import sys
import threading

_lock = threading.Lock()


def import_tensorflow():
    """Import and return the ``tensorflow`` module, silencing its start-up log lines."""
    with _lock:
        if "tensorflow" in sys.modules and "keras" in sys.modules:
            return sys.modules["tensorflow"]
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        quiet = os.environ.get("STORY_REPL_DEBUG") != "1"
        saved = None
        if quiet:
            try:
                sys.stderr.flush()
                saved = os.dup(2)
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, 2)
                os.close(devnull)
            except OSError:
                saved = None
        try:
            import tensorflow as tf
            import keras  # noqa: F401

            tf.constant(0)  # the device set-up logs on first use, so do it while quiet
        finally:
            if saved is not None:
                os.dup2(saved, 2)
                os.close(saved)
        return tf
