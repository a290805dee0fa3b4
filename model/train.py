"""Training: corpus -> vocabulary -> windows -> Keras network -> a trained result.

Progress goes out through a plain callback (``on_progress``) carrying :class:`Progress`
records; there is no UI code here. Training stops when

- training accuracy reaches the corpus's ceiling (see :func:`model.data.ceiling`),
- validation loss stops improving (when a validation split is asked for),
- the epoch budget is spent, or
- ``stop`` (a ``threading.Event``) is set, e.g. by Ctrl-C: the current batch finishes first.

In every case the best weights seen so far are the ones kept.
"""
from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from model.config import Config, resolve  # noqa: E402
from model.corpus import Corpus  # noqa: E402
from model.data import (  # noqa: E402
    ceiling,
    sequence_targets,
    split_paragraphs,
    tf_dataset,
    truncate_randomly,
    unambiguous,
    windows,
)  # noqa: E402
from model.errors import StoryError  # noqa: E402
from model.vocab import Vocab  # noqa: E402

SMALL_WINDOWS = 20_000  # up to this many windows, exact training accuracy is checked each epoch
VALID_PATIENCE = 3
# At the ceiling, train on until every window with a single continuation gives it at least
# this probability, so the right word is not just ranked first but clearly likely.
CONFIDENCE = 0.9  # epochs without a better validation loss before stopping


@dataclass
class Progress:
    """One progress report. ``kind`` is 'start', 'batch', 'epoch', 'sample' or 'end'."""

    kind: str
    epoch: int = 0
    epochs: int = 0
    step: int = 0
    steps: int = 0
    loss: float = math.nan
    accuracy: float = math.nan
    val_loss: float | None = None
    tokens_per_s: float = 0.0
    elapsed: float = 0.0
    replicas: int = 1
    sample: tuple[list[str], str, str] | None = None  # (context words, predicted, true)
    message: str = ""


@dataclass
class TrainResult:
    config: Config
    vocab: Vocab
    model: Any  # keras.Model, with its optimizer state
    corpus_sha256: str
    corpus_name: str
    corpus_path: str
    n_tokens: int
    accuracy: float
    ceiling: float
    epochs: int
    train_seconds: float
    stop_reason: str
    interrupted: bool
    history: dict[str, list[float]] = field(default_factory=dict)
    val_loss: float | None = None
    replicas: int = 1

    def metrics(self) -> dict[str, Any]:
        return {
            "accuracy": self.accuracy,
            "ceiling": self.ceiling,
            "epochs": self.epochs,
            "train_seconds": self.train_seconds,
            "stop_reason": self.stop_reason,
            "interrupted": self.interrupted,
            "val_loss": self.val_loss,
            "history": self.history,
            "replicas": self.replicas,
        }


def seed_everything(seed: int) -> None:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(int(seed))
    try:
        tf.config.experimental.enable_op_determinism()
    except Exception:  # pragma: no cover - older TF
        pass


def scalar_logger(logdir: str, history: dict[str, list[float]]):
    """A Keras callback writing per-epoch loss, accuracy, learning rate (and validation loss) as
    TensorBoard scalars. It uses ``tf.summary.write`` with the scalars plugin's metadata, so it
    needs no ``tensorboard`` package; TensorBoard reads the files as usual."""
    import keras
    import tensorflow as tf
    from tensorflow.core.framework import summary_pb2

    meta = summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))
    writer = tf.summary.create_file_writer(logdir)

    class ScalarLogger(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            with writer.as_default():
                for name, values in history.items():
                    if values:
                        tf.summary.write(f"epoch_{name}", tf.constant(float(values[-1])), step=epoch + 1, metadata=meta)
            writer.flush()

        def on_train_end(self, logs=None):
            writer.close()

    return ScalarLogger()


def prepare(corpus: Corpus, config: Config) -> tuple[Config, Vocab, np.ndarray, np.ndarray]:
    """Resolve the recipe for this corpus; build the vocabulary; return train and validation ids."""
    cfg = resolve(config, len(corpus.tokens))
    train_tokens, valid_tokens = split_paragraphs(corpus.paragraphs(), corpus.tokens, cfg.valid_fraction)
    vocab = Vocab.build(train_tokens, max_size=cfg.max_vocab, min_count=cfg.min_count)
    if len(train_tokens) < cfg.context + 1:
        raise StoryError(
            f"{corpus.path.name} has {len(train_tokens)} training words, fewer than the context window plus one "
            f"({cfg.context + 1}); use a longer text or a smaller --context"
        )
    if len(vocab) < 2:
        raise StoryError(f"{corpus.path.name} has only one distinct word; give a text with more words")
    train_ids = vocab.encode(train_tokens)
    valid_ids = vocab.encode(valid_tokens) if vocab.unk_id is not None else np.asarray(
        vocab.split_known(valid_tokens)[0], np.int32
    )
    return cfg, vocab, train_ids, valid_ids


def train(
    corpus: Corpus,
    config: Config,
    on_progress: Callable[[Progress], None] | None = None,
    stop: threading.Event | None = None,
    resume: Any = None,
    logdir: str | None = None,
    strategy: str = "auto",
    sample_every: float = 2.0,
) -> TrainResult:
    """Train a model on ``corpus``. ``resume`` is a loaded bundle whose model and optimizer continue."""
    from model.distribute import make_strategy
    from model.tfload import import_tensorflow

    # First: a multi-worker strategy has to configure TensorFlow before its first op runs.
    strat, replicas = make_strategy(strategy)
    tf = import_tensorflow()
    import keras

    from model.distribute import (
        agreement,
        fit_multi_worker,
        full_batch_dataset,
        global_batch,
        is_chief,
        is_multi_worker,
        shard_by_data,
        train_dataset,
    )
    from model.network import build_network, is_sequence, last_logits, make_optimizer

    report = on_progress or (lambda p: None)
    stop = stop or threading.Event()
    cfg, vocab, train_ids, valid_ids = prepare(corpus, config)
    if resume is not None:  # the bundle's vocabulary, whatever the corpus would give now
        vocab = resume.vocab
        train_tokens, valid_tokens = split_paragraphs(corpus.paragraphs(), corpus.tokens, cfg.valid_fraction)
        train_ids = np.asarray(vocab.split_known(train_tokens)[0], np.int32)
        valid_ids = np.asarray(vocab.split_known(valid_tokens)[0], np.int32)
    x, y = windows(train_ids, cfg.context)
    ceil, _floor = ceiling(x, y)
    n = len(y)
    full_batch = cfg.batch_size is None
    batch = n if full_batch else min(cfg.batch_size, n)
    if replicas > 1:  # the global batch, split into equal shares over the replicas
        batch = global_batch(batch, n, replicas)
        full_batch = full_batch or batch >= n
    steps = max(1, math.ceil(n / batch))
    multi = is_multi_worker(strat)
    agree_min = agreement(strat)  # the same figures on every worker
    seed_everything(cfg.seed)

    with strat.scope():
        if resume is not None:
            model = resume.keras_model()
        else:
            model = build_network(cfg, len(vocab))
            model.compile(
                optimizer=make_optimizer(cfg),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
            )
            # Creating the slots now saves fit() a second trace of the train step.
            model.optimizer.build(model.trainable_variables)
    seq = is_sequence(cfg)
    if full_batch:
        target = sequence_targets(train_ids, cfg.context) if seq else y
        train_data = full_batch_dataset(x + 1, target, replicas)
    else:
        train_data = train_dataset(train_ids, cfg.context, batch, cfg.seed, sequence=seq)
    if not seq:
        train_data = train_data.map(lambda a, b: (truncate_randomly(a, cfg.seed), b))
    val_data = None
    if len(valid_ids) > cfg.context:
        val_batch = max(batch, 256) if not full_batch else 4096
        if replicas > 1:  # Keras reduces the first batch over the replicas: its shares must be equal
            m = len(valid_ids) - cfg.context
            if m < replicas:
                raise StoryError(
                    f"the validation split has {m} windows, fewer than the {replicas} replicas; "
                    "use a larger --valid-fraction or fewer replicas"
                )
            val_batch = replicas * (min(val_batch, m) // replicas)
        val_data = tf_dataset(valid_ids, cfg.context, val_batch, False, cfg.seed, sequence=seq)
    if replicas > 1:  # each worker keeps its share of every global batch
        train_data = shard_by_data(train_data)
        if val_data is not None:
            val_data = shard_by_data(val_data)

    small = n <= SMALL_WINDOWS
    eval_x = tf.constant(x + 1) if small else None
    predict_fn = tf.function(lambda t: tf.nn.softmax(last_logits(model, t)), reduce_retracing=True)
    single = unambiguous(x, y) if small else None

    def exact_accuracy() -> tuple[float, float]:
        """(accuracy, least probability given to the next word of an unambiguous window)."""
        probs = predict_fn(eval_x).numpy()
        acc = float((probs.argmax(-1) == y).mean())
        p_true = probs[np.arange(n), y][single]
        return acc, float(p_true.min()) if len(p_true) else 1.0

    rng = np.random.default_rng(cfg.seed)
    state: dict[str, Any] = {
        "best": None,
        "best_score": -math.inf,
        "best_epoch": 0,
        "reason": "",
        "since_best": 0,
        "t0": time.perf_counter(),
        "last_report": 0.0,
        "last_sample": 0.0,
        "accuracy": 0.0,
        "val_loss": None,
    }
    history: dict[str, list[float]] = {"loss": [], "accuracy": [], "learning_rate": []}
    if val_data is not None:
        history["val_loss"] = []
    epochs = int(cfg.epochs)
    tokens_per_step = batch

    # Sample predictions reuse one fixed-shape batch, so the predict function is traced once.
    sample_rows = np.arange(n) if small else rng.choice(n, size=min(n, 256), replace=False)
    sample_x = eval_x if small else tf.constant(x[sample_rows] + 1)

    def sample_prediction() -> tuple[list[str], str, str]:
        j = int(rng.integers(0, len(sample_rows)))
        i = int(sample_rows[j])
        pred = int(predict_fn(sample_x).numpy()[j].argmax())
        return vocab.decode(x[i]), vocab.tokens[pred], vocab.tokens[int(y[i])]

    class Control(keras.callbacks.Callback):
        def on_train_batch_end(self, batch_i, logs=None):
            now = time.perf_counter()
            if stop.is_set() and not multi:  # several workers agree on stopping at the epoch's end
                self.model.stop_training = True
                state["reason"] = "interrupted"
            if now - state["last_report"] >= 0.1:
                state["last_report"] = now
                elapsed = now - state["t0"]
                done = self._epoch * steps + batch_i + 1
                report(
                    Progress(
                        "batch",
                        epoch=self._epoch + 1,
                        epochs=epochs,
                        step=batch_i + 1,
                        steps=steps,
                        loss=float((logs or {}).get("loss", math.nan)),
                        accuracy=float((logs or {}).get("accuracy", math.nan)),
                        tokens_per_s=done * tokens_per_step / max(elapsed, 1e-9),
                        elapsed=elapsed,
                        replicas=replicas,
                    )
                )

        def on_epoch_begin(self, epoch, logs=None):
            self._epoch = epoch

        def on_epoch_end(self, epoch, logs=None):
            logs = logs if logs is not None else {}
            lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
            logs["learning_rate"] = lr
            acc = float(logs.get("accuracy", 0.0))
            confident = 0.0
            if small:
                # The running figure lags one update behind and, for left-to-right encoders,
                # averages over every prefix; the ceiling is about full windows.
                acc, confident = exact_accuracy()
            stop_asked = stop.is_set()
            if multi:  # local figures, agreed on so that every worker decides alike below
                acc, confident, going_on = agree_min([acc, confident, 0.0 if stop_asked else 1.0])
                stop_asked = going_on < 0.5
            loss = float(logs.get("loss", math.nan))
            history["loss"].append(loss)
            history["accuracy"].append(acc)
            history["learning_rate"].append(lr)
            val_loss = logs.get("val_loss")
            if val_loss is not None:
                history["val_loss"].append(float(val_loss))
                state["val_loss"] = float(val_loss)
                score = -float(val_loss)
            else:
                score = acc - 1e-9 * loss
            if score > state["best_score"]:
                state.update(best_score=score, best=self.model.get_weights(), best_epoch=epoch + 1, since_best=0)
                state["accuracy"] = acc
            else:
                state["since_best"] += 1
            elapsed = time.perf_counter() - state["t0"]
            report(
                Progress(
                    "epoch",
                    epoch=epoch + 1,
                    epochs=epochs,
                    step=steps,
                    steps=steps,
                    loss=loss,
                    accuracy=acc,
                    val_loss=None if val_loss is None else float(val_loss),
                    tokens_per_s=(epoch + 1) * steps * tokens_per_step / max(elapsed, 1e-9),
                    elapsed=elapsed,
                    replicas=replicas,
                )
            )
            if elapsed - state["last_sample"] >= sample_every or epoch == 0:
                state["last_sample"] = elapsed
                report(Progress("sample", epoch=epoch + 1, epochs=epochs, sample=sample_prediction()))
            if stop_asked:
                state["reason"] = "interrupted"
                self.model.stop_training = True
            elif val_data is None and acc >= ceil - 1e-9 and confident >= CONFIDENCE:
                state["reason"] = f"reached the accuracy ceiling {ceil:.3f}"
                self.model.stop_training = True
            elif val_data is not None and state["since_best"] >= VALID_PATIENCE:
                state["reason"] = f"validation loss stopped improving (best at epoch {state['best_epoch']})"
                self.model.stop_training = True

        def on_train_end(self, logs=None):
            state["t_end"] = time.perf_counter()  # fit()'s own teardown is not training

    callbacks: list[Any] = [Control()]
    if logdir and is_chief():  # other workers write nothing
        callbacks.append(scalar_logger(str(logdir), history))

    start_message = f"{n} windows, ceiling {ceil:.3f}"
    if replicas > 1:
        start_message += f", global batch {batch} over {replicas} replicas"
    report(Progress("start", epochs=epochs, steps=steps, replicas=replicas, message=start_message))
    state["t0"] = time.perf_counter()
    done_epochs = 0
    try:
        if cfg.objective == "sampled" and replicas == 1:  # several devices train the full softmax
            from model.sampled import fit_sampled

            done_epochs = fit_sampled(model, cfg, train_data, steps, epochs, callbacks, val_data)
        elif multi:
            done_epochs = fit_multi_worker(model, strat, train_data, steps, epochs, callbacks, val_data)
        else:
            hist = model.fit(
                train_data,
                epochs=epochs,
                steps_per_epoch=steps,
                validation_data=val_data,
                callbacks=callbacks,
                verbose=0,
                shuffle=False,  # the dataset is already shuffled
            )
            done_epochs = len(hist.epoch)
    except KeyboardInterrupt:
        state["reason"] = "interrupted"
        done_epochs = len(history["loss"])
    train_seconds = state.get("t_end", time.perf_counter()) - state["t0"]
    if not state["reason"]:
        state["reason"] = f"finished {epochs} epochs"
    interrupted = state["reason"] == "interrupted"
    if state["best"] is not None:
        model.set_weights(state["best"])
        accuracy = exact_accuracy()[0] if small else state["accuracy"]
    else:
        accuracy = exact_accuracy()[0] if small else 0.0
    if interrupted:
        state["reason"] = f"interrupted; kept the best weights (epoch {state['best_epoch']} of {done_epochs})"
    result = TrainResult(
        config=cfg,
        vocab=vocab,
        model=model,
        corpus_sha256=corpus.sha256,
        corpus_name=corpus.name,
        corpus_path=str(corpus.path),
        n_tokens=len(corpus.tokens),
        accuracy=accuracy,
        ceiling=ceil,
        epochs=done_epochs,
        train_seconds=train_seconds,
        stop_reason=state["reason"],
        interrupted=interrupted,
        history=history,
        val_loss=state["val_loss"],
        replicas=replicas,
    )
    report(Progress("end", epoch=done_epochs, epochs=epochs, accuracy=accuracy, elapsed=train_seconds, message=result.stop_reason))
    return result
