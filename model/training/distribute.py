"""tf.distribute strategies: default, mirrored (several GPUs of one host), multi-worker (TF_CONFIG).

``--batch-size`` and ``--lr`` are global: a step splits the batch over the replicas and sums their
gradients, so it is one step on the whole batch (rounded up to a multiple of the replica count,
:func:`global_batch`). On a cluster every worker builds the same input pipeline and runs the same
number of steps, decisions between epochs use figures every worker shares (:func:`agreement`),
and only the chief writes.
"""
from __future__ import annotations

import json
import math
import os
import signal
import sys
import threading
import time
from typing import Any, Callable, Sequence

from model.errors import StoryError

STRATEGIES = ("auto", "default", "mirrored", "multiworker")
TIMEOUT_ENV = "STORY_REPL_WORKER_TIMEOUT"
DEFAULT_TIMEOUT = 600.0


def tf_config() -> dict[str, Any] | None:
    """The parsed ``TF_CONFIG``, or None when it is not set."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return None
    try:
        cfg = json.loads(raw)
    except ValueError:
        raise StoryError("TF_CONFIG is not valid JSON") from None
    if not isinstance(cfg, dict):
        raise StoryError("TF_CONFIG must be a JSON object with 'cluster' and 'task'")
    return cfg


def is_chief() -> bool:
    """True unless TF_CONFIG names this process as a non-chief worker."""
    cfg = tf_config()
    if cfg is None:
        return True
    task = cfg.get("task") or {}
    cluster = cfg.get("cluster") or {}
    kind, index = task.get("type", "worker"), int(task.get("index", 0))
    if kind == "chief":
        return True
    if kind == "worker" and "chief" not in cluster:
        return index == 0
    return False


def num_workers() -> int:
    """Tasks taking part in training according to TF_CONFIG (1 without it)."""
    cfg = tf_config()
    if cfg is None:
        return 1
    cluster = cfg.get("cluster") or {}
    return max(1, sum(len(cluster.get(job) or ()) for job in ("chief", "worker")))


def worker_timeout() -> float:
    """Seconds a worker waits for the others (``STORY_REPL_WORKER_TIMEOUT``, default 600):
    for all of them to join at start-up, then for each training step."""
    raw = os.environ.get(TIMEOUT_ENV)
    if not raw:
        return DEFAULT_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        raise StoryError(f"{TIMEOUT_ENV} expects a number of seconds, got {raw!r}") from None
    if not value > 0 or value == math.inf:
        raise StoryError(f"{TIMEOUT_ENV} expects a positive number of seconds, got {raw!r}")
    return value


_WATCHDOG = r"""
import os, select, signal, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
pid, seconds, message = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
fd = sys.stdin.fileno()
deadline = time.monotonic() + seconds
while True:
    left = deadline - time.monotonic()
    if left <= 0:
        os.write(2, ("\nstory-repl: error: " + message + "\n").encode("utf-8", "replace"))
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
        sys.exit(0)
    ready, _, _ = select.select([fd], [], [], min(left, 5.0))
    if ready:
        if not os.read(fd, 4096):
            sys.exit(0)
        deadline = time.monotonic() + seconds
"""


class Watchdog:
    """Ends this process (SIGKILL, after a one-line error on stderr) when it is not kicked
    for ``seconds``.

    A worker waiting in TensorFlow for its peers can block there holding Python's
    interpreter lock, where no Python thread or signal handler runs, so the watchdog is a
    small separate process; it goes away by itself when the block ends or this process exits."""

    def __init__(self, seconds: float, message: str) -> None:
        self.seconds = float(seconds)
        self.message = message
        self._proc: Any = None
        self._last = 0.0

    def __enter__(self) -> "Watchdog":
        import subprocess

        self._proc = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, str(os.getpid()), repr(self.seconds), self.message],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            close_fds=True,
        )
        self._last = time.monotonic()
        return self

    def kick(self) -> None:
        now = time.monotonic()
        if self._proc is not None and now - self._last >= 1.0:
            self._last = now
            try:
                self._proc.stdin.write(b".")
                self._proc.stdin.flush()
            except OSError:
                pass

    def __exit__(self, *exc: object) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(timeout=10)
        except Exception:  # noqa: BLE001 - never let the watchdog outlive its block
            proc.kill()
            proc.wait()


_LOST = (r"/job:(\w+)/(?:replica:\d+/)?task:(\d+)")


def cluster_failure(error: BaseException) -> str:
    """A one-line account of a TensorFlow error caused by another worker failing."""
    import re

    text = str(getattr(error, "message", "") or error)
    tasks = sorted({f"{job} {index}" for job, index in re.findall(_LOST, text)})
    low = text.lower()
    if "heartbeat" in low:
        why = "it stopped sending heartbeats"
    elif "socket closed" in low or "connection reset" in low or "connect" in low:
        why = "its connection closed"
    elif "deadline" in low or "timed out" in low or "timeout" in low:
        why = "it did not answer in time"
    else:
        lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith(" ")]
        useful = [ln for ln in lines if not ln.startswith(("Graph execution error", "Detected at node", "[["))]
        why = (useful or lines or [type(error).__name__])[0][:160]
    who = f" ({', '.join(tasks)})" if tasks else ""
    return f"lost another worker of the cluster{who}: {why}; training stopped"


def _multi_worker():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from model.training.tfload import quiet_stderr

    with quiet_stderr():  # importing only: the cluster set-up must come before any TensorFlow op
        import tensorflow as tf
        import keras  # noqa: F401

    cfg = tf_config()
    if cfg is not None:
        cluster = cfg.get("cluster")
        task = cfg.get("task")
        if not isinstance(cluster, dict) or not isinstance(task, dict):
            raise StoryError("TF_CONFIG needs a 'cluster' (job name -> list of host:port) and a 'task' (type, index)")
    timeout = worker_timeout()
    waiting = (
        f"not every worker of the cluster ({num_workers()} in TF_CONFIG) joined within {timeout:g} s; "
        f"start them all and check their host:port addresses (or set {TIMEOUT_ENV})"
    )
    try:
        with Watchdog(timeout, waiting):
            strategy = tf.distribute.MultiWorkerMirroredStrategy()
    except RuntimeError as e:
        if "startup" in str(e):
            raise StoryError(
                "multi-worker training has to set TensorFlow up itself: run it in a process of its own "
                "(story-repl train --strategy multiworker) before anything else uses TensorFlow"
            ) from None
        raise
    except ValueError as e:
        raise StoryError(f"TF_CONFIG: {str(e).splitlines()[0] if str(e) else e!r}") from None
    # TensorFlow's cluster set-up takes SIGTERM for itself (for preemption handling, unused
    # here), so `kill` would no longer stop the worker: give SIGTERM its usual meaning back.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    return strategy


# One strategy of each kind per process: several of a kind would reuse the same collective
# keys, and a multi-worker strategy can only be set up once.
_made: dict[str, Any] = {}


def make_strategy(name: str = "auto"):
    """(strategy, replica count) for ``name``; ``auto`` mirrors over GPUs when there are several.

    Call it before any other TensorFlow use in the process: a multi-worker strategy has to
    configure TensorFlow's collective ops before TensorFlow initialises. The strategy of a
    kind is made once per process and reused."""
    if name not in STRATEGIES:
        raise StoryError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
    if name == "multiworker":
        if name not in _made:
            _made[name] = _multi_worker()
        strat = _made[name]
        return strat, int(strat.num_replicas_in_sync)

    from model.training.tfload import import_tensorflow

    tf = import_tensorflow()
    if name == "auto":
        gpus = tf.config.list_logical_devices("GPU")
        name = "mirrored" if len(gpus) > 1 else "default"
    if name == "default":
        strat = tf.distribute.get_strategy()
    else:
        if name not in _made:
            _made[name] = tf.distribute.MirroredStrategy()
        strat = _made[name]
    return strat, int(strat.num_replicas_in_sync)


def is_multi_worker(strategy) -> bool:
    """True for a multi-worker strategy (replicas that may live in several processes)."""
    import tensorflow as tf

    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def agreement(strategy) -> Callable[[Sequence[float]], list[float]]:
    """A function taking figures to their element-wise minimum over every worker, so that
    all workers get the same numbers.

    Each worker may compute a figure locally (an evaluation on its own device); deciding on
    the agreed figure makes every worker take the same decision. Under a multi-worker
    strategy all workers must call it together (it is a collective); otherwise it returns
    the figures unchanged."""
    if not is_multi_worker(strategy):
        return lambda values: [float(v) for v in values]
    import tensorflow as tf

    def on_replica(t):
        return tf.distribute.get_replica_context().all_gather(t[None, :], axis=0)

    @tf.function
    def gather(v):
        return strategy.run(on_replica, args=(v,))

    def agree(values: Sequence[float]) -> list[float]:
        local = tf.constant([float(v) for v in values], tf.float64)
        stacked = strategy.experimental_local_results(gather(local))[0]
        return [float(v) for v in tf.reduce_min(stacked, axis=0).numpy()]

    return agree


def global_batch(batch: int, n: int, replicas: int) -> int:
    """The global batch actually used: ``batch`` (at most ``n`` windows), rounded up to a
    multiple of ``replicas`` so every replica gets an equal share of every full batch."""
    batch = max(1, min(int(batch), int(n)))
    return int(math.ceil(batch / replicas) * replicas)


def train_dataset(ids, context: int, batch: int, seed: int, sequence: bool = False):
    """An endless tf.data pipeline of (ids+1 windows, targets) training batches.

    Every epoch is a fresh permutation of all windows, cut into batches of ``batch`` (the last
    one of an epoch partial). The permutation is a function of (seed, epoch) only, so every
    worker builds the same batches in the same order, and so does every iterator Keras
    creates over the dataset. With ``sequence`` the target is the word after every prefix."""
    import numpy as np
    import tensorflow as tf

    ids = np.asarray(ids, dtype=np.int32)
    n = len(ids) - context
    table = tf.constant(ids)
    offsets = tf.range(context, dtype=tf.int32)
    seed_t = tf.constant(int(seed), tf.int64)

    def epoch(e):
        order = tf.random.experimental.stateless_shuffle(tf.range(n, dtype=tf.int32), seed=tf.stack([seed_t, e]))
        return tf.data.Dataset.from_tensor_slices(order).batch(batch)

    def gather(starts):
        idx = starts[:, None] + offsets[None, :]
        if sequence:
            return tf.gather(table, idx) + 1, tf.gather(table, idx + 1)
        return tf.gather(table, idx) + 1, tf.gather(table, starts + context)

    ds = tf.data.Dataset.counter().flat_map(epoch)
    return ds.map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(tf.data.AUTOTUNE)


def full_batch_dataset(x, target, replicas: int):
    """An endless stream of full batches for training on the whole text per step.

    One replica gets every window in every step. Several replicas get a global batch of the
    window count rounded up to a multiple of the replica count, cut from the windows repeated
    end to end: every window once plus fewer than ``replicas`` of them a second time (a
    different few each step), so every replica gets an equal share."""
    import tensorflow as tf

    n = len(x)
    if replicas <= 1:
        return tf.data.Dataset.from_tensors((x, target)).repeat()
    batch = global_batch(n, n, replicas)
    ds = tf.data.Dataset.from_tensor_slices((x, target)).repeat()
    return ds.batch(batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def shard_by_data(dataset):
    """``dataset`` with auto-sharding by data: each worker keeps its share of every batch."""
    import tensorflow as tf

    opts = tf.data.Options()
    opts.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(opts)


def _mean(totals) -> float:
    """Mean loss from reduced (loss sum, right, count) totals."""
    return float(totals[0] / max(totals[2], 1.0))


def _accuracy(totals) -> float:
    return float(totals[1] / max(totals[2], 1.0))


def _distributed_steps(model, strategy):
    """(train_step, eval_step): tf.functions returning (loss sum, right, count) summed over
    every replica of the cluster; the train step applies one optimizer update on the mean
    loss of the global batch."""
    import keras
    import tensorflow as tf

    optimizer = model.optimizer
    sum_op = tf.distribute.ReduceOp.SUM

    def sums(y, logits):
        losses = keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
        right = tf.cast(tf.equal(tf.cast(tf.argmax(logits, -1), y.dtype), y), tf.float32)
        count = tf.cast(tf.size(losses), tf.float32)
        return tf.reduce_sum(losses), tf.reduce_sum(right), count

    def replica_train(batch):
        x, y = batch
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            loss_sum, right, count = sums(y, logits)
            total = tf.distribute.get_replica_context().all_reduce(sum_op, count)
            loss = loss_sum / tf.maximum(total, 1.0)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return tf.stack([loss_sum, right, count])

    def replica_eval(batch):
        x, y = batch
        return tf.stack(sums(y, model(x, training=False)))

    @tf.function
    def train_step(iterator):
        per_replica = strategy.run(replica_train, args=(next(iterator),))
        return strategy.reduce(sum_op, per_replica, axis=None)

    @tf.function(reduce_retracing=True)
    def eval_step(batch):
        return strategy.reduce(sum_op, strategy.run(replica_eval, args=(batch,)), axis=None)

    return train_step, eval_step


def fit_multi_worker(model, strategy, train_data, steps: int, epochs: int, callbacks: list, val_data=None) -> int:
    """Train ``model`` under a multi-worker strategy, driving ``callbacks`` as ``fit`` would.
    Returns the number of epochs run.

    Keras 3's ``fit`` does not run under a multi-worker strategy (keras-team/keras#20585), so
    this is the same training step written out: every replica sums its examples' losses,
    divides by the number of examples in the whole global batch, and the optimizer sums the
    gradients over all replicas; the result is one step on the mean loss of the global batch,
    uneven last batches included. Logged loss and accuracy are sums reduced over all workers,
    so every worker sees the same figures. ``model.stop_training`` is read between epochs;
    callbacks must set it alike on every worker."""
    import keras
    import numpy as np
    import tensorflow as tf

    optimizer = model.optimizer
    if not optimizer.built:
        with strategy.scope():
            optimizer.build(model.trainable_variables)
    cb = keras.callbacks.CallbackList(callbacks, model=model)
    train_step, eval_step = _distributed_steps(model, strategy)
    mean, accuracy = _mean, _accuracy

    timeout = worker_timeout()
    stalled = f"no training step finished for {timeout:g} s: another worker of the cluster stopped answering"
    lost = (
        tf.errors.UnavailableError,
        tf.errors.DeadlineExceededError,
        tf.errors.AbortedError,
        tf.errors.CancelledError,
    )
    model.stop_training = False
    done = 0
    with Watchdog(timeout, stalled) as watchdog:
        try:
            iterator = iter(strategy.experimental_distribute_dataset(train_data))
            dist_val = strategy.experimental_distribute_dataset(val_data) if val_data is not None else None
            cb.on_train_begin()
            for epoch in range(epochs):
                cb.on_epoch_begin(epoch)
                totals = np.zeros(3)
                for b in range(steps):
                    cb.on_train_batch_begin(b)
                    totals += train_step(iterator).numpy()
                    watchdog.kick()
                    cb.on_train_batch_end(b, {"loss": mean(totals), "accuracy": accuracy(totals)})
                logs: dict[str, Any] = {"loss": mean(totals), "accuracy": accuracy(totals)}
                if dist_val is not None:
                    val = np.zeros(3)
                    for batch in dist_val:
                        val += eval_step(batch).numpy()
                        watchdog.kick()
                    logs["val_loss"] = mean(val)
                    logs["val_accuracy"] = accuracy(val)
                cb.on_epoch_end(epoch, logs)
                watchdog.kick()
                done = epoch + 1
                if model.stop_training:
                    break
        except lost as e:
            raise StoryError(cluster_failure(e)) from None
    cb.on_train_end()
    return done
