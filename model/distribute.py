"""tf.distribute strategies: default, mirrored (several GPUs of one host), multi-worker (TF_CONFIG)."""
from __future__ import annotations

from model.errors import StoryError

STRATEGIES = ("auto", "default", "mirrored", "multiworker")


def make_strategy(name: str = "auto"):
    """(strategy, replica count) for ``name``; ``auto`` mirrors over GPUs when there are several."""
    import tensorflow as tf

    if name not in STRATEGIES:
        raise StoryError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
    if name == "auto":
        gpus = tf.config.list_logical_devices("GPU")
        name = "mirrored" if len(gpus) > 1 else "default"
    if name == "default":
        strat = tf.distribute.get_strategy()
    elif name == "mirrored":
        strat = tf.distribute.MirroredStrategy()
    else:
        strat = tf.distribute.MultiWorkerMirroredStrategy()
    return strat, int(strat.num_replicas_in_sync)


def is_chief() -> bool:
    """True unless TF_CONFIG names this process as a non-chief worker."""
    import json
    import os

    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return True
    try:
        cfg = json.loads(raw)
    except ValueError:
        raise StoryError("TF_CONFIG is not valid JSON") from None
    task = cfg.get("task") or {}
    cluster = cfg.get("cluster") or {}
    kind, index = task.get("type", "worker"), int(task.get("index", 0))
    if kind == "chief":
        return True
    if kind == "worker" and "chief" not in cluster:
        return index == 0
    return False
