"""The mixture's weights: how they are fitted (EM), kept, saved, and how the parts are summed.

The weights are fitted by EM on held-out text and depend on the context: one weight vector
per "matched order" of the n-gram (how many previous words it has seen as a context), so the
mixture can trust the n-gram where it has seen long contexts and a network elsewhere.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from model.prediction.components import NCACHE_THETA

EM_STEPS = 60
BUCKET_PRIOR = 50.0  # positions' worth of pull toward the global weights, per bucket
MIN_WEIGHT = 0.002  # no component's weight falls below this, so text unlike the held-out part stays scored sanely
FORMAT_VERSION = 2  # of mixture.json; 1 kept the neural cache's sharpness as a top-level "theta"


def mix(parts: Sequence[Any], row: Sequence[float]) -> Any:
    """Σ row[k] · parts[k] over the parts that answer (not None) with a positive weight, in
    order: the one weighted sum of the mixture (distributions, or one word's probabilities).
    0.0 when no part counts."""
    out = None
    for w, part in zip(row, parts):
        if w > 0 and part is not None:
            term = w * part
            out = term if out is None else out + term
    return 0.0 if out is None else out


@dataclass
class Weights:
    """Mixture weights: ``by_bucket[b][k]`` for n-gram matched order b and component k."""

    names: list[str]
    by_bucket: list[list[float]]
    overall: list[float]
    fitted_on: str = ""
    positions: int = 0
    perplexity: dict[str, float] = field(default_factory=dict)  # each component's and the mixture's, where fitted

    def to_dict(self) -> dict:
        return {
            "names": self.names,
            "by_bucket": self.by_bucket,
            "overall": self.overall,
            "fitted_on": self.fitted_on,
            "positions": self.positions,
            "perplexity": self.perplexity,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Weights":
        return cls(
            list(d["names"]),
            [list(map(float, row)) for row in d["by_bucket"]],
            list(map(float, d["overall"])),
            str(d.get("fitted_on", "")),
            int(d.get("positions", 0)),
            {k: float(v) for k, v in (d.get("perplexity") or {}).items()},
        )

    def row(self, bucket: int, active: Sequence[str]) -> np.ndarray:
        """Weights of the ``active`` components (in ``self.names`` order), renormalised."""
        src = self.by_bucket[bucket] if 0 <= bucket < len(self.by_bucket) else self.overall
        w = np.asarray([src[i] if n in active else 0.0 for i, n in enumerate(self.names)], np.float64)
        s = w.sum()
        if s <= 0:  # every fitted weight is on parts that are off: share equally
            w = np.asarray([1.0 if n in active else 0.0 for n in self.names], np.float64)
            s = w.sum()
        return w / s


# ---- the saved form (mixture.json, and the partner weights) ---------------------------------
def saved_form(weights: Weights, params: dict[str, dict]) -> dict:
    """The weights and the components' fitted parameters, as one JSON object."""
    return {"format_version": FORMAT_VERSION, **weights.to_dict(), "components": params}


def from_saved(d: dict) -> tuple[Weights, dict[str, dict]]:
    """(weights, parameters by component) of a saved object, format 1 or 2."""
    version = int(d.get("format_version", 1))
    if version > FORMAT_VERSION:
        raise ValueError(f"format version {version}, newer than this story-repl ({FORMAT_VERSION})")
    if version == 1:
        params = {"ncache": {"theta": float(d.get("theta", NCACHE_THETA))}}
    else:
        params = {str(k): dict(v) for k, v in (d.get("components") or {}).items()}
    return Weights.from_dict(d), params


# ---- fitting -------------------------------------------------------------------------------
def em_weights(p: np.ndarray, steps: int = EM_STEPS) -> np.ndarray:
    """Maximum-likelihood mixture weights for (n, K) per-position component probabilities."""
    n, k = p.shape
    w = np.full(k, 1.0 / k)
    if n == 0:
        return w
    p = np.maximum(p, 1e-300)
    for _ in range(steps):
        r = p * w
        r /= r.sum(axis=1, keepdims=True)
        w = r.mean(axis=0)
    return w


def _floored(w: np.ndarray) -> np.ndarray:
    w = np.maximum(np.asarray(w, np.float64), MIN_WEIGHT)
    return w / w.sum()


def fit_weights(p: np.ndarray, buckets: np.ndarray, names: Sequence[str], n_buckets: int, fitted_on: str = "") -> Weights:
    """EM weights overall and per bucket; a bucket with few positions leans on the overall ones."""
    overall = _floored(em_weights(p))
    rows = []
    for b in range(n_buckets):
        sel = buckets == b
        m = int(sel.sum())
        if m == 0:
            rows.append(overall.tolist())
            continue
        wb = em_weights(p[sel])
        rows.append(_floored((m * wb + BUCKET_PRIOR * overall) / (m + BUCKET_PRIOR)).tolist())
    w = Weights(list(names), rows, overall.tolist(), fitted_on, int(len(p)))
    mixed = np.asarray([np.dot(p[i], w.row(int(buckets[i]), names)) for i in range(len(p))]) if len(p) else np.zeros(0)
    if len(p):
        for j, name in enumerate(names):
            w.perplexity[name] = float(math.exp(-np.mean(np.log(np.maximum(p[:, j], 1e-300)))))
        w.perplexity["mixture"] = float(math.exp(-np.mean(np.log(np.maximum(mixed, 1e-300)))))
    return w
