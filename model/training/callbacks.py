"""Keras callbacks of a training run: progress reports, the stopping rules and the best weights.

Imported only where training happens (it imports Keras). Every training loop (Keras ``fit``, and
story-repl's own sampled-softmax, stream and multi-worker loops) drives these through
``keras.callbacks.CallbackList``, so the rules are the same whichever loop runs; one callback,
:class:`TrainingControl`, owns the best weights and every stopping decision.
"""
from __future__ import annotations

import math
import threading
import time
from typing import Any, Callable, Sequence

import keras

from model.training.events import Progress

# At the ceiling, train on until every window with a single continuation gives it at least
# this probability, so the right word is not just ranked first but clearly likely.
CONFIDENCE = 0.9
VALID_PATIENCE = 3  # epochs without a better validation loss before stopping
TIME_LIMIT = "time limit"  # the stop reason of a run that spent its time budget


class TrainingControl(keras.callbacks.Callback):
    """Reports progress and decides when training stops; keeps the best weights.

    Rules, checked in this order:

    - **interrupt**: ``stop`` (a ``threading.Event``, set by Ctrl-C or ``:stop``) ends
      training after the current batch (at the epoch's end on a multi-worker cluster, where
      every worker must stop alike);
    - **time limit**: once ``time_limit`` seconds of training have passed, training ends
      after the current batch (reason ``"time limit"``);
    - **NaN**: a non-finite training loss ends training;
    - **ceiling**: with no validation split, training ends once the exact accuracy reaches
      the corpus's ceiling and every unambiguous window's next word gets probability at
      least ``CONFIDENCE``;
    - **validation**: with a validation split, training ends after ``VALID_PATIENCE`` epochs
      without a better validation loss.

    The best weights are those of the epoch with the lowest validation loss (or, without a
    validation split, the highest exact accuracy, ties to the lower loss). Whatever ends the
    run, :meth:`restore_best` puts them back; a run stopped before its first epoch ended
    keeps the weights it has.
    """

    def __init__(
        self,
        report: Callable[[Progress], None],
        *,
        stop: threading.Event,
        epochs: int,
        steps: int,
        tokens_per_step: int,
        replicas: int,
        ceiling: float,
        has_validation: bool,
        exact: Callable[[], tuple[float, float]] | None = None,
        sample: Callable[[], Any] | None = None,
        agree: Callable[[Sequence[float]], list[float]] | None = None,
        time_limit: float | None = None,
        sample_every: float = 2.0,
        first_epoch: int = 0,
    ) -> None:
        super().__init__()
        self.report = report
        self.stop = stop
        self.epochs = epochs
        self.steps = steps
        self.tokens_per_step = tokens_per_step
        self.replicas = replicas
        self.ceiling = ceiling
        self.has_validation = has_validation
        self.exact = exact
        self.sample = sample
        self.agree = agree  # a multi-worker cluster decides on agreed figures
        self.time_limit = time_limit
        self.sample_every = sample_every
        self.first_epoch = first_epoch  # epochs run before this one (a resumed run): reports count on from them
        self.history: dict[str, list[float]] = {"loss": [], "accuracy": [], "learning_rate": []}
        if has_validation:
            self.history["val_loss"] = []
        self.best: list | None = None
        self.best_score = -math.inf
        self.best_epoch = 0
        self.since_best = 0
        self.reason = ""
        self.accuracy = 0.0
        self.val_loss: float | None = None
        self.t0 = time.perf_counter()
        self.t_end: float | None = None
        self._epoch = 0
        self._last_report = 0.0
        self._last_sample = 0.0

    # ---- clock ------------------------------------------------------------------------
    def start_clock(self) -> None:
        self.t0 = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def out_of_time(self) -> bool:
        return self.time_limit is not None and self.elapsed() >= self.time_limit

    def seconds(self) -> float:
        """Seconds of training, without the loop's own teardown."""
        return (self.t_end if self.t_end is not None else time.perf_counter()) - self.t0

    # ---- Keras hooks ------------------------------------------------------------------
    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}
        if self.agree is None:  # several workers agree on stopping at the epoch's end
            if self.stop.is_set():
                self._halt("interrupted")
            elif self.out_of_time():
                self._halt(TIME_LIMIT)
            elif not math.isfinite(float(logs.get("loss", 0.0))):
                self._halt("the training loss became NaN or infinite; kept the last good weights (try a lower --lr)")
        now = time.perf_counter()
        if now - self._last_report >= 0.1:
            self._last_report = now
            done = self._epoch * self.steps + batch + 1
            self._report("batch", step=batch + 1, loss=logs.get("loss"), accuracy=logs.get("accuracy"), done=done)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        logs["learning_rate"] = lr
        acc, confident = float(logs.get("accuracy", 0.0)), 0.0
        if self.exact is not None:
            acc, confident = self.exact()
        stop_asked, out_of_time = self.stop.is_set(), self.out_of_time()
        if self.agree is not None:  # local figures, agreed on so that every worker decides alike
            acc, confident, going_on, in_time = self.agree([acc, confident, 0.0 if stop_asked else 1.0, 0.0 if out_of_time else 1.0])
            stop_asked, out_of_time = going_on < 0.5, in_time < 0.5
        loss = float(logs.get("loss", math.nan))
        val_loss = logs.get("val_loss")
        self._record(epoch, loss, acc, lr, val_loss)
        self._report("epoch", step=self.steps, loss=loss, accuracy=acc, val_loss=val_loss, done=(epoch + 1) * self.steps)
        if self.sample is not None and (self.elapsed() - self._last_sample >= self.sample_every or epoch == 0):
            self._last_sample = self.elapsed()
            self.report(Progress("sample", epoch=self.first_epoch + epoch + 1, epochs=self.first_epoch + self.epochs, sample=self.sample()))
        self._decide(stop_asked, out_of_time, loss, acc, confident)

    def on_train_end(self, logs=None):
        self.t_end = time.perf_counter()

    # ---- rules --------------------------------------------------------------------------
    def _record(self, epoch: int, loss: float, acc: float, lr: float, val_loss) -> None:
        self.history["loss"].append(loss)
        self.history["accuracy"].append(acc)
        self.history["learning_rate"].append(lr)
        if val_loss is not None:
            self.history["val_loss"].append(float(val_loss))
            self.val_loss = float(val_loss)
            score = -float(val_loss)
        else:
            score = acc - 1e-9 * loss
        if math.isfinite(loss) and score > self.best_score:
            self.best_score, self.best, self.best_epoch, self.since_best = score, self.model.get_weights(), self.first_epoch + epoch + 1, 0
            self.accuracy = acc
        else:
            self.since_best += 1

    def _decide(self, stop_asked: bool, out_of_time: bool, loss: float, acc: float, confident: float) -> None:
        if self.reason:  # already decided during the epoch
            return
        if stop_asked:
            self._halt("interrupted")
        elif out_of_time:
            self._halt(TIME_LIMIT)
        elif not math.isfinite(loss):
            self._halt("the training loss became NaN or infinite; kept the last good weights (try a lower --lr)")
        elif not self.has_validation and acc >= self.ceiling - 1e-9 and confident >= CONFIDENCE:
            self._halt(f"reached the accuracy ceiling {self.ceiling:.3f}")
        elif self.has_validation and self.since_best >= VALID_PATIENCE:
            self._halt(f"validation loss stopped improving (best at epoch {self.best_epoch})")

    def _halt(self, reason: str) -> None:
        if not self.reason:
            self.reason = reason
        self.model.stop_training = True

    def restore_best(self) -> bool:
        """Put the best weights back. False when no epoch ended (the weights stay as they are)."""
        if self.best is None:
            return False
        self.model.set_weights(self.best)
        return True

    def _report(self, kind: str, *, step: int, loss, accuracy, done: int, val_loss=None) -> None:
        elapsed = self.elapsed()
        self.report(
            Progress(
                kind,
                epoch=self.first_epoch + self._epoch + 1,
                epochs=self.first_epoch + self.epochs,
                step=step,
                steps=self.steps,
                loss=math.nan if loss is None else float(loss),
                accuracy=math.nan if accuracy is None else float(accuracy),
                val_loss=None if val_loss is None else float(val_loss),
                tokens_per_s=done * self.tokens_per_step / max(elapsed, 1e-9),
                elapsed=elapsed,
                replicas=self.replicas,
                time_limit=self.time_limit,
                first_epoch=self.first_epoch,
            )
        )


def drive_epochs(model, callbacks: list, epochs: int, batches: Callable[[int], Any],
                 step: Callable[[Any], tuple[Any, Any]], validate: Callable[[], float] | None = None) -> int:
    """The epoch loop of a training loop of story-repl's own, driving ``callbacks`` as
    ``fit`` would: ``step(batch)`` trains on each batch of ``batches(epoch)`` and returns
    (loss, accuracy); ``validate()``, when given, returns the validation loss at the end of
    each epoch. Reads ``model.stop_training`` after every batch. Returns the epochs run."""
    cb = keras.callbacks.CallbackList(callbacks, model=model)
    model.stop_training = False
    cb.on_train_begin()
    done = 0
    for epoch in range(epochs):
        cb.on_epoch_begin(epoch)
        total_loss = total_acc = 0.0
        b = 0
        for b, batch in enumerate(batches(epoch)):
            loss, acc = step(batch)
            total_loss += float(loss)
            total_acc += float(acc)
            cb.on_train_batch_end(b, {"loss": total_loss / (b + 1), "accuracy": total_acc / (b + 1)})
            if model.stop_training:
                break
        logs: dict[str, Any] = {"loss": total_loss / max(1, b + 1), "accuracy": total_acc / max(1, b + 1)}
        if validate is not None:
            val = float(validate())
            logs["val_loss"] = val if math.isfinite(val) else math.inf
        cb.on_epoch_end(epoch, logs)
        done = epoch + 1
        if model.stop_training:
            break
    cb.on_train_end()
    return done
