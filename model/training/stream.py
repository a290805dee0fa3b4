"""Training the ``stream`` arch: the text as parallel streams, the LSTM state carried across batches.

Where the windowed archs read each window from a zero state, the stream arch reads the training
ids as ``batch_size`` parallel streams with truncated back-propagation through time (as the
word-level LSTM of ``pytorch/examples``): each step trains the next ``bptt`` tokens of every
stream from the state the previous step ended with. The saved model predicts from a zero state
over the last ``context`` words, like the numpy predictor; the stopping rules are
:class:`model.training.callbacks.TrainingControl`'s.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from model.config import STREAM_BPTT, Config
from model.errors import StoryError

VALID_STREAMS = 10  # streams the held-out ids are cut into for the validation loss
# The learning rate rises linearly over the first epoch or this many steps, whichever is
# shorter: at full rate from the start, Adam could leave the network stuck for epochs near
# the unigram distribution.
WARMUP_STEPS = 200
ANNEAL = 0.5  # learning-rate factor after an epoch without a better validation loss
MIN_LR_FACTOR = 1 / 64  # the learning rate is never annealed below this share of the initial one
ACC_ROWS = 4096  # predictions per step used for the running accuracy under the sampled objective


@dataclass
class StreamData:
    """Ids cut into ``streams`` rows of equal length; batches of ``bptt`` columns.

    ``x`` holds input ids (vocabulary id + 1, as the network reads them), ``y`` next ids."""

    data: np.ndarray  # (streams, n) vocabulary ids
    bptt: int
    steps: int  # full batches per epoch
    seed: int
    shuffle_offset: bool = True

    @classmethod
    def cut(cls, ids: np.ndarray, streams: int, bptt: int, seed: int, shuffle_offset: bool = True) -> "StreamData":
        ids = np.asarray(ids, np.int32)
        streams = max(1, min(int(streams), len(ids) // 2))
        n = len(ids) // streams
        if n < 2:
            raise StoryError(f"the text has {len(ids)} words: too few to train the stream arch; use a longer text")
        data = np.ascontiguousarray(ids[: n * streams].reshape(streams, n))
        t = max(1, min(int(bptt), n - 1))
        k = (n - 1) // t  # full steps from offset 0
        # One step fewer leaves room for any offset in [0, t); a single step keeps offset 0.
        steps = k - 1 if (shuffle_offset and k > 1) else k
        return cls(data, t, steps, int(seed), shuffle_offset and k > 1)

    @property
    def streams(self) -> int:
        return int(self.data.shape[0])

    @property
    def tokens_per_step(self) -> int:
        return self.streams * self.bptt

    def offset(self, epoch: int) -> int:
        if not self.shuffle_offset:
            return 0
        return int(np.random.default_rng([self.seed, epoch]).integers(0, self.bptt))

    def batches(self, epoch: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The epoch's (x, y) batches, each (streams, bptt), in stream order."""
        o, t = self.offset(epoch), self.bptt
        for s in range(self.steps):
            a = o + s * t
            yield self.data[:, a : a + t] + 1, self.data[:, a + 1 : a + t + 1]


def stream_plan(cfg: Config, train_ids: np.ndarray, replicas: int):
    """The fields of a stream run's :class:`model.training.train.Plan`: the inference windows (for the
    ceiling and the exact accuracy the stopping rules use) and the stream batches' size and
    count, as (x, y, ceiling, batch, full_batch, steps)."""
    from model.training.data import ceiling, windows

    if replicas > 1:
        raise StoryError(f"--arch stream trains on one device, not {replicas} replicas; pass --strategy default")
    data = stream_data(cfg, train_ids)
    x, y = windows(train_ids, int(cfg.context))
    ceil, _floor = ceiling(x, y)
    return x, y, ceil, data.tokens_per_step, cfg.batch_size is None, data.steps


def stream_data(cfg: Config, train_ids: np.ndarray) -> StreamData:
    """Training streams: ``batch_size`` of them (one, the whole text, when it is None)."""
    return StreamData.cut(train_ids, cfg.batch_size or 1, int(cfg.bptt or STREAM_BPTT), cfg.seed)


def validation_data(cfg: Config, valid_ids: np.ndarray) -> StreamData | None:
    """The held-out ids as a few streams, read in order (None when there are too few)."""
    if len(valid_ids) < 2:
        return None
    streams = max(1, min(VALID_STREAMS, len(valid_ids) // (2 * int(cfg.bptt or STREAM_BPTT))))
    return StreamData.cut(valid_ids, streams, int(cfg.bptt or STREAM_BPTT), cfg.seed, shuffle_offset=False)


class StreamNet:
    """The stream model's layers, called with an explicit (h, c) state per LSTM layer."""

    def __init__(self, model, cfg: Config):
        self.embed = model.get_layer("embedding")
        self.lstms = [model.get_layer("lstm_1"), model.get_layer("lstm_2")]
        names = ("embedding_dropout", "between_dropout", "encoder_dropout")
        have = {layer.name for layer in model.layers}
        self.drops = [model.get_layer(n) if n in have else None for n in names]
        self.tied = bool(cfg.tie_weights)
        self.dense = None if self.tied else model.get_layer("logits")
        self.units = int(cfg.units)

    def output_weights(self):
        """(kernel (U, V), bias (V,)) of the output layer."""
        import tensorflow as tf

        if self.tied:
            return tf.transpose(self.embed.embeddings[1:]), self.embed.bias
        return self.dense.kernel, self.dense.bias

    def hidden(self, x, states, training: bool):
        """(B, T) input ids, [h1, c1, h2, c2] -> ((B, T, U) top-layer outputs, new states)."""
        import tensorflow as tf

        def drop(k, t):
            return self.drops[k](t, training=training) if self.drops[k] is not None else t

        h = drop(0, tf.gather(self.embed.embeddings, x))  # streams have no padding: no mask
        new = []
        for k, layer in enumerate(self.lstms):
            h, hs, cs = layer(h, initial_state=[states[2 * k], states[2 * k + 1]], training=training)
            new += [hs, cs]
            h = drop(1 if k == 0 else 2, h)
        return h, new

    def zero_state(self, batch: int):
        import tensorflow as tf

        return [tf.zeros((batch, self.units), tf.float32) for _ in range(4)]


class Schedule:
    """The learning rate of :func:`fit_stream`: a linear warm-up over the first epoch (at most
    :data:`WARMUP_STEPS` steps), then the rate reached, multiplied by :data:`ANNEAL` after each
    epoch without a better validation loss, never below :data:`MIN_LR_FACTOR` of ``cfg.lr``."""

    def __init__(self, optimizer, cfg: Config, steps_per_epoch: int) -> None:
        import keras

        self.optimizer = optimizer
        self.warmup = max(1, min(WARMUP_STEPS, steps_per_epoch))
        self.step = int(keras.ops.convert_to_numpy(optimizer.iterations))  # a resumed model goes on
        # after warm-up a resumed model keeps the (possibly annealed) rate it had
        current = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
        self.target = float(cfg.lr) if self.step < self.warmup else current
        self.floor = float(cfg.lr) * MIN_LR_FACTOR

    def rate(self) -> float:
        return self.target * min(1.0, (self.step + 1) / self.warmup)

    def before_step(self) -> None:
        if self.step <= self.warmup:
            self.optimizer.learning_rate.assign(self.rate())
        self.step += 1

    def anneal(self) -> None:
        self.target = max(self.target * ANNEAL, self.floor)
        self.optimizer.learning_rate.assign(self.rate())


def fit_stream(model, cfg: Config, train_data: StreamData, val_data: StreamData | None, epochs: int, callbacks: list) -> int:
    """Train ``model`` on ``train_data`` with the state carried across steps, driving
    ``callbacks`` as ``fit`` would. Returns the number of epochs run."""
    import tensorflow as tf

    from model.training.callbacks import drive_epochs

    net = StreamNet(model, cfg)
    optimizer = model.optimizer
    variables = model.trainable_variables
    sampled = cfg.objective == "sampled"
    vocab = int(net.output_weights()[1].shape[0])
    num_sampled = max(1, min(int(cfg.num_sampled), vocab - 1))

    @tf.function(reduce_retracing=True)
    def step(x, y, states):
        with tf.GradientTape() as tape:
            h, new = net.hidden(x, states, training=True)
            flat = tf.reshape(h, (-1, net.units))
            labels = tf.reshape(tf.cast(y, tf.int64), (-1,))
            kernel, bias = net.output_weights()
            if sampled:
                loss = tf.reduce_mean(
                    tf.nn.sampled_softmax_loss(
                        weights=tf.transpose(kernel),
                        biases=bias,
                        labels=labels[:, None],
                        inputs=flat,
                        num_sampled=num_sampled,
                        num_classes=vocab,
                        remove_accidental_hits=True,
                        seed=cfg.seed,
                    )
                )
                logits = flat[:ACC_ROWS] @ kernel + bias
                acc_labels = labels[:ACC_ROWS]
            else:
                logits = flat @ kernel + bias
                loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
                acc_labels = labels
        grads = tape.gradient(loss, variables)
        optimizer.apply_gradients(zip(grads, variables))
        acc = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, -1), acc_labels), tf.float32))
        return loss, acc, new

    schedule = Schedule(optimizer, cfg, train_data.steps)
    best_val = math.inf
    states = None

    def batches(epoch: int):
        nonlocal states
        states = net.zero_state(train_data.streams)  # each epoch reads the streams afresh
        return train_data.batches(epoch)

    def train_step(batch) -> tuple[Any, Any]:
        nonlocal states
        schedule.before_step()
        x, y = batch
        loss, acc, states = step(tf.constant(x), tf.constant(y), states)
        return loss, acc

    def validate() -> float:
        nonlocal best_val
        val = stream_loss(net, val_data)
        if val < best_val:
            best_val = val
        else:  # no better: smaller steps from here on
            schedule.anneal()
        return val

    return drive_epochs(model, callbacks, epochs, batches, train_step, validate if val_data is not None else None)


def stream_loss(net: StreamNet, data: StreamData) -> float:
    """Mean cross-entropy (nats) over every position of ``data``, state carried, no dropout."""
    import tensorflow as tf

    fn = getattr(net, "_eval_step", None)
    if fn is None:

        @tf.function(reduce_retracing=True)
        def fn(x, y, states):
            h, new = net.hidden(x, states, training=False)
            kernel, bias = net.output_weights()
            logits = tf.reshape(h, (-1, net.units)) @ kernel + bias
            labels = tf.reshape(tf.cast(y, tf.int64), (-1,))
            return tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)), new

        net._eval_step = fn
    states = net.zero_state(data.streams)
    total, count = 0.0, 0
    for x, y in data.batches(0):
        s, states = fn(tf.constant(x), tf.constant(y), states)
        total += float(s)
        count += x.size
    return total / max(1, count)
