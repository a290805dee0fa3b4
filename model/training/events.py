"""Progress records of a training run, sent through a plain callback (no UI code in ``model``)."""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class Progress:
    """One progress report. ``kind`` is 'start', 'batch', 'epoch', 'sample', 'fitting' (the n-gram and
    the mixture weights, after the network: ``message`` and ``fraction``) or 'end'."""

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
    time_limit: float | None = None  # seconds of training allowed, if a budget was set
    fraction: float = 0.0  # of the 'fitting' step done
    first_epoch: int = 0  # epochs run before this run (it resumed them): ``epoch`` counts on from them


def counted(n: int, noun: str) -> str:
    """``n`` with thousands separators and ``noun`` in the singular or plural: ``1 epoch``, ``4,993 words``."""
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"
