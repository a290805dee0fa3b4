"""Training progress on the terminal: the corpus-reading line, a rich progress bar and the
toolbar's one-line status, all from :class:`model.training.events.Progress` records.

Every command that trains shows it (``train``, and ``predict``, ``generate``, ``eval`` or
``complete`` without a cached model, through :func:`repl.models.train_with_view`), as does the
REPL when a small corpus trains before the first prompt. Besides loss, accuracy, tokens/s and ETA
it prints a sample prediction now and then when asked (``train --verbose``); off a terminal, a
plain status line instead of the bar.
"""
from __future__ import annotations

import math
import time

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

from repl.render import sample_line


def rate(tokens_per_s: float) -> str:
    if tokens_per_s >= 1e6:
        return f"{tokens_per_s / 1e6:.1f}M"
    if tokens_per_s >= 1e3:
        return f"{tokens_per_s / 1e3:.1f}k"
    return f"{tokens_per_s:.0f}"


def reading_line(done: int, total: int, elapsed: float) -> str:
    """One line for reading a corpus: share done, MB/s and time left,
    e.g. ``reading corpus 42% 35.1 MB/s ETA 12s``."""
    total = max(int(total), 1)
    frac = min(1.0, max(0, int(done)) / total)
    line = f"reading corpus {frac:.0%}"
    if elapsed > 0 and done > 0:
        speed = done / elapsed
        line += f" {speed / 1e6:.1f} MB/s"
        if frac < 1.0:
            line += f" ETA {duration((total - done) / speed)}"
    return line


def duration(seconds: float) -> str:
    """A short time span: ``12s``, ``3m05s``, ``1h02m``."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class ReadingClock:
    """A ``progress(done, total)`` callback that keeps the latest :func:`reading_line`,
    timed from its creation (make it just before reading), and hands it to ``show`` (at most
    ``every`` seconds apart, and always for the last chunk)."""

    def __init__(self, show, every: float = 0.1) -> None:
        self.show = show
        self.every = every
        self.t0 = time.monotonic()
        self.last_shown = -1e9
        self.line = ""

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        self.line = reading_line(done, total, now - self.t0)
        if now - self.last_shown >= self.every or done >= total:
            self.last_shown = now
            self.show(self.line)


def status_line(p) -> str:
    """A compact one-line summary of a progress record (for the toolbar)."""
    if p is None:
        return ""
    frac = progress_fraction(p)
    acc = "" if math.isnan(p.accuracy) else f" acc {p.accuracy:.3f}"
    loss = "" if math.isnan(p.loss) else f" loss {p.loss:.3f}"
    reps = f" ×{p.replicas}" if p.replicas > 1 else ""
    left = eta_seconds(p)
    eta = "" if left is None else f" ETA {duration(left)}"
    return f"epoch {p.epoch}/{p.epochs} {frac:4.0%}{loss}{acc} {rate(p.tokens_per_s)} tok/s{reps}{eta}"


def eta_seconds(p) -> float | None:
    """Seconds of training left: the epochs left at the pace so far, or the time limit left if
    that comes first; None before either is known."""
    if p is None:
        return None
    frac = progress_fraction(p)
    start = min(frac, getattr(p, "first_epoch", 0) / max(1, p.epochs))  # a resumed run's epochs before this one
    elapsed = max(0.0, float(getattr(p, "elapsed", 0.0) or 0.0))
    left = elapsed * (1.0 - frac) / (frac - start) if frac > start and elapsed > 0 else None
    limit = getattr(p, "time_limit", None)
    if limit is not None:
        budget = max(0.0, float(limit) - elapsed)
        left = budget if left is None else min(left, budget)
    return left


def fitting_line(p) -> str:
    """The step after the network's training, e.g. ``fitting the n-gram 40%``."""
    return f"{p.message} {min(1.0, max(0.0, p.fraction)):.0%}"


def progress_fraction(p) -> float:
    total = max(1, p.epochs * max(1, p.steps))
    done = max(0, (p.epoch - 1) * max(1, p.steps) + p.step)
    return min(1.0, done / total)


class TrainingView:
    """Context manager: ``with TrainingView(console, title) as view: train(..., on_progress=view)``."""

    def __init__(self, console: Console, title: str, sample_every: float = 2.0, verbose: bool = False):
        self.console = console
        self.title = title
        self.verbose = verbose  # print a sample prediction now and then
        self.sample_every = sample_every
        self._last_sample = -1e9
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(bar_width=28),
            TaskProgressColumn(),
            TextColumn("epoch {task.fields[epoch]}"),
            TextColumn("loss [cyan]{task.fields[loss]}"),
            TextColumn("acc [green]{task.fields[acc]}"),
            TextColumn("{task.fields[rate]} tok/s{task.fields[replicas]}"),
            TextColumn("ETA {task.fields[eta]}"),
            console=console,
            transient=False,
            refresh_per_second=8,
        )
        self.task = None
        self.last = None

    def __enter__(self) -> "TrainingView":
        self.progress.__enter__()
        self.task = self.progress.add_task(
            self.title, total=1.0, epoch="-", loss="-", acc="-", rate="-", replicas="", eta="-"
        )
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def __call__(self, p) -> None:
        if p.kind in ("batch", "epoch"):
            self.last = p
            if not self.console.is_terminal:  # logs and pipes get a plain line now and then
                now = time.monotonic()
                if p.kind == "epoch" and now - getattr(self, "_last_line", -1e9) >= self.sample_every:
                    self._last_line = now
                    self.console.print(status_line(p), highlight=False)
            self.progress.update(
                self.task,
                completed=progress_fraction(p),
                epoch=f"{p.epoch}/{p.epochs}",
                loss="-" if math.isnan(p.loss) else f"{p.loss:.4f}",
                acc="-" if math.isnan(p.accuracy) else f"{p.accuracy:.3f}",
                rate=rate(p.tokens_per_s),
                replicas=f" ×{p.replicas} replicas" if p.replicas > 1 else "",
                eta="-" if eta_seconds(p) is None else duration(eta_seconds(p)),
            )
        elif p.kind == "fitting":
            self.progress.update(self.task, description=fitting_line(p))
        elif p.kind == "sample" and p.sample is not None and self.verbose:
            now = time.monotonic()
            if now - self._last_sample >= self.sample_every:
                self._last_sample = now
                self.progress.console.print(sample_line(*p.sample))
        elif p.kind == "start" and p.message:
            self.progress.console.print(f"[dim]{p.message}[/dim]")
        elif p.kind == "end":
            self.progress.update(self.task, completed=1.0, description=self.title)
