"""Training: corpus -> vocabulary -> windows -> Keras network -> a :class:`TrainResult`.

The steps are named functions, in the order a run takes them: :func:`prepare` (recipe,
vocabulary, ids), :func:`plan_batches`, :func:`build_model`, :func:`make_datasets`,
:class:`Monitor` (exact accuracy, samples), :func:`run_loop` and :func:`finish`. Progress goes out
through a plain callback of :class:`model.training.events.Progress` records (no UI code here); the
stopping rules and the best weights are :class:`model.training.callbacks.TrainingControl`'s.
"""
from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from model.config import Config, resolve  # noqa: E402
from model.text.corpus import Corpus  # noqa: E402
from model.training.data import (  # noqa: E402
    ceiling,
    sequence_targets,
    STREAM_MIN_WINDOWS,
    stream_train_dataset,
    tf_dataset,
    truncate_randomly,
    unambiguous,
    windows,
)
from model.errors import StoryError  # noqa: E402
from model.training.events import Progress, counted  # noqa: E402,F401  (Progress re-exported: callers import it from here)
from model.text.vocab import Vocab  # noqa: E402

SMALL_WINDOWS = 20_000  # up to this many windows, exact training accuracy is checked each epoch


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
    extras: dict[str, bytes] = field(default_factory=dict)  # the mixture's other components (bundle files)
    planned_epochs: int = 0  # the epochs the run (with those it resumed) was to take
    auto_resume: bool = True  # False once the user stopped a resumed run: the REPL then only offers it

    def metrics(self) -> dict[str, Any]:
        return {
            "accuracy": self.accuracy,
            "ceiling": self.ceiling,
            "epochs": self.epochs,
            "planned_epochs": self.planned_epochs,
            "auto_resume": self.auto_resume,
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


def prepare(corpus: Corpus, config: Config, resume: Any = None) -> tuple[Config, Vocab, np.ndarray, np.ndarray]:
    """Resolve the recipe for this corpus; build the vocabulary; return train and validation ids.

    With ``resume`` (a loaded bundle) the bundle's vocabulary is kept, whatever the corpus
    would give now; its unknown words are left out of the ids."""
    from model.text.id_arrays import map_ids

    cfg = resolve(config, corpus.n_tokens)
    # The corpus's full-vocabulary ids, cut by paragraphs; mapped to model ids by one table.
    train_full, valid_full = corpus.split(cfg.valid_fraction)
    if resume is not None:
        vocab = resume.vocab
        table = vocab.id_table(corpus.words)
        return cfg, vocab, map_ids(train_full, table), map_ids(valid_full, table)
    counts = check_trainable(corpus, cfg)
    vocab = Vocab.from_counts(corpus.words, counts, corpus.first, max_size=cfg.max_vocab, min_count=cfg.min_count)
    if len(vocab) < 2:
        raise StoryError(f"{corpus.path.name} has only one distinct word; give a text with more words")
    table = vocab.id_table(corpus.words)
    return cfg, vocab, map_ids(train_full, table), map_ids(valid_full, table)


def check_trainable(corpus: Corpus, config: Config) -> np.ndarray:
    """The training part's word counts, once ``corpus`` is known to be long and varied enough
    to train ``config`` on (a one-line error otherwise): training's first check, which callers
    make before they start a run in the background."""
    from model.text.id_arrays import count_ids

    cfg = resolve(config, corpus.n_tokens)
    train_full, _ = corpus.split(cfg.valid_fraction)
    if len(train_full) < cfg.context + 1:
        raise StoryError(
            f"{corpus.path.name} has {counted(len(train_full), 'training word')}, fewer than the context window plus one "
            f"({cfg.context + 1}); use a longer text or a smaller --context"
        )
    counts = count_ids(train_full, len(corpus.words))
    if np.count_nonzero(counts) < 2:
        raise StoryError(f"{corpus.path.name} has only one distinct word; give a text with more words")
    return counts


def resume_config(bundle: Any, epochs: int | None = None) -> Config:
    """The recipe of a run that resumes ``bundle``'s training: ``epochs`` more when given, else
    the epochs an interrupted run had left, else the recipe's epochs again."""
    m = bundle.metrics
    done = int(m.get("epochs") or 0)
    planned = int(m.get("planned_epochs") or bundle.config.epochs or 0)
    if epochs is None:
        epochs = planned - done if m.get("interrupted") and planned > done else int(bundle.config.epochs or 1)
    return bundle.config.replace(epochs=int(epochs))


@dataclass
class Plan:
    """How one epoch is cut: the training windows, their ceiling and the batches."""

    x: np.ndarray  # (n, context) context ids (a strided view)
    y: np.ndarray  # (n,) next ids
    ceiling: float
    batch: int
    full_batch: bool
    steps: int

    @property
    def n(self) -> int:
        return len(self.y)


def plan_batches(cfg: Config, train_ids: np.ndarray, replicas: int) -> Plan:
    """The windows of ``train_ids`` and the global batch (split evenly over ``replicas``)."""
    from model.training.distribute import global_batch

    if cfg.arch == "stream":  # parallel streams with a carried state (model/training/stream.py)
        from model.training.stream import stream_plan

        return Plan(*stream_plan(cfg, train_ids, replicas))

    x, y = windows(train_ids, cfg.context)
    ceil, _floor = ceiling(x, y)
    n = len(y)
    full_batch = cfg.batch_size is None
    batch = n if full_batch else min(cfg.batch_size, n)
    if replicas > 1:  # the global batch, split into equal shares over the replicas
        batch = global_batch(batch, n, replicas)
        full_batch = full_batch or batch >= n
    return Plan(x, y, ceil, batch, full_batch, max(1, math.ceil(n / batch)))


def build_model(cfg: Config, vocab_size: int, strat, resume: Any = None):
    """The compiled Keras model under ``strat`` (the bundle's own, with its optimizer, to resume)."""
    import keras

    from model.training.network import build_network, make_optimizer

    with strat.scope():
        if resume is not None:
            return resume.keras_model()
        model = build_network(cfg, vocab_size)
        model.compile(
            optimizer=make_optimizer(cfg),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        )
        # Creating the slots now saves fit() a second trace of the train step.
        model.optimizer.build(model.trainable_variables)
        return model


def make_datasets(cfg: Config, plan: Plan, train_ids: np.ndarray, valid_ids: np.ndarray, replicas: int):
    """(training dataset, validation dataset or None), sharded per worker on a cluster."""
    from model.training.distribute import full_batch_dataset, shard_by_data, train_dataset
    from model.training.network import is_sequence

    if cfg.arch == "stream":  # id streams, not windows (model/training/stream.py)
        from model.training.stream import stream_data, validation_data

        return stream_data(cfg, train_ids), validation_data(cfg, valid_ids)
    seq = is_sequence(cfg)
    if plan.full_batch:
        target = sequence_targets(train_ids, cfg.context) if seq else plan.y
        train_data = full_batch_dataset(plan.x + 1, target, replicas)
    elif plan.n > STREAM_MIN_WINDOWS:  # too large to copy into TensorFlow: gathered in numpy
        train_data = stream_train_dataset(train_ids, cfg.context, plan.batch, cfg.seed, sequence=seq)
    else:
        train_data = train_dataset(train_ids, cfg.context, plan.batch, cfg.seed, sequence=seq)
    if not seq:
        train_data = train_data.map(lambda a, b: (truncate_randomly(a, cfg.seed), b))
    val_data = None
    if len(valid_ids) > cfg.context:
        val_batch = max(plan.batch, 256) if not plan.full_batch else 4096
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
    return train_data, val_data


class Monitor:
    """Exact full-window accuracy (small texts) and sample predictions, with one traced
    predict function over fixed-shape batches."""

    def __init__(self, model, vocab: Vocab, plan: Plan, seed: int):
        import tensorflow as tf

        from model.training.network import last_logits

        self.vocab, self.plan = vocab, plan
        self.small = plan.n <= SMALL_WINDOWS
        self.eval_x = tf.constant(plan.x + 1) if self.small else None
        self.predict_fn = tf.function(lambda t: tf.nn.softmax(last_logits(model, t)), reduce_retracing=True)
        self.single = unambiguous(plan.x, plan.y) if self.small else None
        self.rng = np.random.default_rng(seed)
        n = plan.n
        self.sample_rows = np.arange(n) if self.small else self.rng.choice(n, size=min(n, 256), replace=False)
        self.sample_x = self.eval_x if self.small else tf.constant(plan.x[self.sample_rows] + 1)

    def exact_accuracy(self) -> tuple[float, float]:
        """(accuracy, least probability given to the next word of an unambiguous window)."""
        y = self.plan.y
        probs = self.predict_fn(self.eval_x).numpy()
        acc = float((probs.argmax(-1) == y).mean())
        p_true = probs[np.arange(len(y)), y][self.single]
        return acc, float(p_true.min()) if len(p_true) else 1.0

    def sample_prediction(self) -> tuple[list[str], str, str]:
        j = int(self.rng.integers(0, len(self.sample_rows)))
        i = int(self.sample_rows[j])
        pred = int(self.predict_fn(self.sample_x).numpy()[j].argmax())
        return self.vocab.decode(self.plan.x[i]), self.vocab.tokens[pred], self.vocab.tokens[int(self.plan.y[i])]


def run_loop(model, cfg: Config, strat, plan: Plan, train_data, val_data, callbacks: list, replicas: int) -> int:
    """Drive the training loop that fits this run (Keras fit, sampled softmax, multi-worker).
    Returns the number of epochs run."""
    from model.training.distribute import fit_multi_worker, is_multi_worker

    epochs = int(cfg.epochs)
    if cfg.arch == "stream":
        from model.training.stream import fit_stream

        return fit_stream(model, cfg, train_data, val_data, epochs, callbacks)
    if cfg.objective == "sampled" and replicas == 1:  # several devices train the full softmax
        from model.training.sampled import fit_sampled

        return fit_sampled(model, cfg, train_data, plan.steps, epochs, callbacks, val_data)
    if is_multi_worker(strat):
        return fit_multi_worker(model, strat, train_data, plan.steps, epochs, callbacks, val_data)
    hist = model.fit(
        train_data,
        epochs=epochs,
        steps_per_epoch=plan.steps,
        validation_data=val_data,
        callbacks=callbacks,
        verbose=0,
        shuffle=False,  # the dataset is already shuffled
    )
    return len(hist.epoch)


def train(
    corpus: Corpus,
    config: Config,
    on_progress: Callable[[Progress], None] | None = None,
    stop: threading.Event | None = None,
    resume: Any = None,
    logdir: str | None = None,
    strategy: str = "auto",
    sample_every: float = 2.0,
    time_limit: float | None = None,
) -> TrainResult:
    """Train a model on ``corpus``. ``resume`` is a loaded bundle whose model and optimizer
    continue for ``config.epochs`` more epochs (:func:`resume_config`), counted after its own;
    ``time_limit`` (seconds) ends training after the batch that spends it."""
    from model.training.distribute import make_strategy
    from model.training.tfload import import_tensorflow

    # First: a multi-worker strategy has to configure TensorFlow before its first op runs.
    strat, replicas = make_strategy(strategy)
    import_tensorflow()
    from model.training.callbacks import TrainingControl
    from model.training.distribute import agreement, is_chief, is_multi_worker

    report = on_progress or (lambda p: None)
    stop = stop or threading.Event()
    cfg, vocab, train_ids, valid_ids = prepare(corpus, config, resume)
    plan = plan_batches(cfg, train_ids, replicas)
    seed_everything(cfg.seed)
    model = build_model(cfg, len(vocab), strat, resume)
    train_data, val_data = make_datasets(cfg, plan, train_ids, valid_ids, replicas)
    monitor = Monitor(model, vocab, plan, cfg.seed)
    control = TrainingControl(
        report,
        stop=stop,
        epochs=int(cfg.epochs),
        steps=plan.steps,
        tokens_per_step=plan.batch,
        replicas=replicas,
        ceiling=plan.ceiling,
        has_validation=val_data is not None,
        exact=monitor.exact_accuracy if monitor.small else None,
        sample=monitor.sample_prediction,
        agree=agreement(strat) if is_multi_worker(strat) else None,
        time_limit=time_limit,
        sample_every=sample_every,
        first_epoch=int(resume.metrics.get("epochs") or 0) if resume is not None else 0,
    )
    callbacks: list[Any] = [control]
    if logdir and is_chief():  # other workers write nothing
        callbacks.append(scalar_logger(str(logdir), control.history))
    message = f"{counted(plan.n, 'window')}, ceiling {plan.ceiling:.3f}"
    if replicas > 1:
        message += f", global batch {plan.batch:,} over {replicas} replicas"
    planned = control.first_epoch + int(cfg.epochs)
    report(Progress("start", epochs=planned, steps=plan.steps, replicas=replicas, message=message, time_limit=time_limit))
    control.start_clock()
    try:
        done_epochs = run_loop(model, cfg, strat, plan, train_data, val_data, callbacks, replicas)
    except KeyboardInterrupt:
        control.reason = "interrupted"
        done_epochs = len(control.history["loss"])
    result = finish(corpus, cfg, vocab, model, plan, control, monitor, done_epochs, replicas)
    if resume is not None:
        before = resume.metrics.get("history") or {}
        result.history = {k: list(before.get(k) or []) + v for k, v in result.history.items()}
    result.extras = mixture_files(corpus, cfg, vocab, model, report)
    report(Progress("end", epoch=result.epochs, epochs=planned, accuracy=result.accuracy, elapsed=result.train_seconds, message=result.stop_reason))
    return result


def mixture_files(corpus: Corpus, cfg: Config, vocab: Vocab, model, report: Callable[[Progress], None] | None = None) -> dict[str, bytes]:
    """The n-gram, full vocabulary and mixture weights fitted beside the trained network
    ('fitting' progress records on the way)."""
    from model.prediction.build import build_components, extras_of
    from model.training.network import export_weights

    def fitting(message: str, fraction: float) -> None:
        if report is not None:
            report(Progress("fitting", message=message, fraction=fraction))

    return extras_of(build_components(corpus, cfg, vocab, export_weights(model, cfg), fitting))


def finish(corpus: Corpus, cfg: Config, vocab: Vocab, model, plan: Plan, control, monitor: Monitor, done_epochs: int, replicas: int) -> TrainResult:
    """The result of a run: the best weights put back, the accuracy and why training stopped."""
    train_seconds = control.seconds()
    total = control.first_epoch + done_epochs
    planned = control.first_epoch + int(cfg.epochs)
    reason = control.reason or f"finished {counted(planned, 'epoch')}"
    interrupted = reason == "interrupted"
    restored = control.restore_best()
    if monitor.small:
        accuracy = monitor.exact_accuracy()[0]
    else:
        accuracy = control.accuracy if restored else 0.0
    if interrupted:
        reason = f"interrupted; kept the best weights (epoch {control.best_epoch or total} of {total})"
    return TrainResult(
        config=cfg,
        vocab=vocab,
        model=model,
        corpus_sha256=corpus.sha256,
        corpus_name=corpus.name,
        corpus_path=str(corpus.path),
        n_tokens=len(corpus.tokens),
        accuracy=accuracy,
        ceiling=plan.ceiling,
        epochs=total,
        planned_epochs=planned,
        train_seconds=train_seconds,
        stop_reason=reason,
        interrupted=interrupted,
        history=control.history,
        val_loss=control.val_loss,
        replicas=replicas,
    )
