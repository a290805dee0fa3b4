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

from model.errors import StoryError
from model.prediction.caches import NCACHE_THETA
from model.prediction.components import registered_names
from model.prediction.interface import Sparse, Term
from model.storage.untrusted import has_control, number, visible

EM_STEPS = 60
BUCKET_PRIOR = 50.0  # positions' worth of pull toward the global weights, per bucket
MIN_WEIGHT = 0.002  # no component's weight falls below this, so text unlike the held-out part stays scored sanely
FORMAT_VERSION = 2  # of mixture.json; 1 kept the neural cache's sharpness as a top-level "theta"


def mix(parts: Sequence[Any], row: Sequence[float]) -> Any:
    """Σ row[k] · parts[k] over the parts that answer (not None) with a positive weight: the
    one weighted sum of the mixture (distributions, or one word's probabilities). Arrays are
    summed first, in order; a :class:`~model.prediction.interface.Term` then adds itself into
    that sum; a :class:`~model.prediction.interface.Sparse` adds its floor to every word and
    its weights at its ids, in place. 0.0 when no part counts."""
    out = None
    floor, ids, weights, total = 0.0, [], [], 0
    terms = []
    for w, part in zip(row, parts):
        if not (w > 0 and part is not None):
            continue
        if isinstance(part, Sparse):
            floor += w * part.floor
            ids.append(part.ids)
            weights.append(w * part.weights)
            total = part.total
        elif isinstance(part, Term):
            terms.append((w, part))
        elif out is None:
            out = w * part
        else:
            out += w * part
    for w, term in terms:
        out = term.add_to(out, w)
    if ids:
        if out is None:
            out = np.zeros(total)
        out += floor
        for at, add in zip(ids, weights):
            np.add.at(out, at, add)
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
MAX_BUCKETS = 64  # rows a saved file may hold: one per n-gram matched order
MAX_WEIGHT = 1e6  # a row is renormalised, so only its proportions count; larger ones could overflow its sum
THETA = (1e-6, 100.0)  # the neural cache's sharpness: beyond this exp(θ h·h) could overflow


def saved_form(weights: Weights, params: dict[str, dict]) -> dict:
    """The weights and the components' fitted parameters, as one JSON object."""
    return {"format_version": FORMAT_VERSION, **weights.to_dict(), "components": params}


def from_saved(d: Any, path) -> tuple[Weights, dict[str, dict]]:
    """(weights, parameters by component) of a saved object (format 1 or 2) read from ``path``:
    the one place every field of ``mixture.json`` and the kept partner weights is checked (types,
    lengths, finite non-negative rows that sum above 0, known components), since a hand-edited
    or hostile file must fail here with one line, never later with an IndexError or a NaN."""
    where = visible(path)
    if not isinstance(d, dict):
        raise StoryError(f"{where} holds {type(d).__name__}, not a JSON object; retrain the model")
    version = d.get("format_version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise StoryError(f"{where}: format_version is {_shown(version)}; expected a whole number from 1 to {FORMAT_VERSION}; retrain the model")
    if version > FORMAT_VERSION:
        raise StoryError(f"{where}: format_version is {version}, newer than this story-repl ({FORMAT_VERSION}); upgrade story-repl")
    try:
        return _saved_weights(d, where), _saved_params(d, version, where)
    except StoryError as e:
        raise StoryError(f"{e}; retrain the model") from None


def _shown(value: Any) -> str:
    """A value from the file as it can be shown in one line: escaped, cut short."""
    return visible(repr(value))[:60]


def _saved_weights(d: dict, where: str) -> Weights:
    known = registered_names()
    names = d.get("names")
    if not isinstance(names, list) or not 1 <= len(names) <= len(known):
        raise StoryError(f"{where}: names is {_shown(names)}; expected a list of component names")
    for name in names:
        if name not in known or names.count(name) > 1:
            raise StoryError(f"{where}: names holds {_shown(name)}, unknown or repeated; components are {', '.join(known)}")
    rows = d.get("by_bucket")
    if not isinstance(rows, list) or len(rows) > MAX_BUCKETS:
        raise StoryError(f"{where}: by_bucket is {_shown(rows)}; expected a list of at most {MAX_BUCKETS} rows")
    by_bucket = [_saved_row(row, len(names), f"{where}: by_bucket[{b}]") for b, row in enumerate(rows)]
    overall = _saved_row(d.get("overall"), len(names), f"{where}: overall")
    fitted_on = d.get("fitted_on", "")
    if not isinstance(fitted_on, str) or len(fitted_on) > 200 or has_control(fitted_on):
        raise StoryError(f"{where}: fitted_on is {_shown(fitted_on)}; expected a short line of text")
    positions = int(number(d.get("positions", 0), f"{where}: positions", 0, 1e12, integer=True))
    ppl = d.get("perplexity") or {}
    if not isinstance(ppl, dict) or any(k not in names and k != "mixture" for k in ppl):
        raise StoryError(f"{where}: perplexity is {_shown(ppl)}; expected a number for each of its names")
    perplexity = {k: number(v, f"{where}: perplexity[{_shown(k)}]", 0.0, 1e300) for k, v in ppl.items()}
    return Weights(list(names), by_bucket, overall, fitted_on, positions, perplexity)


def _saved_row(row: Any, n: int, where: str) -> list[float]:
    """``n`` weights, each finite from 0 to MAX_WEIGHT, at least one above 0."""
    if not isinstance(row, list) or len(row) != n:
        size = f"{len(row)} weights" if isinstance(row, list) else _shown(row)
        raise StoryError(f"{where} holds {size}; expected {n}, one per name")
    out = [number(w, f"{where}[{i}]", 0.0, MAX_WEIGHT) for i, w in enumerate(row)]
    if not sum(out) > 0:
        raise StoryError(f"{where} is {out}; expected at least one weight above 0")
    return out


def _saved_params(d: dict, version: int, where: str) -> dict[str, dict]:
    """The components' parameters: objects of finite numbers (or text, or true/false), by registered name."""
    if version == 1:
        return {"ncache": {"theta": number(d.get("theta", NCACHE_THETA), f"{where}: theta", *THETA)}}
    comps = d.get("components") or {}
    if not isinstance(comps, dict):
        raise StoryError(f"{where}: components is {_shown(comps)}; expected an object by component name")
    known = registered_names()
    out: dict[str, dict] = {}
    for name, params in comps.items():
        if name not in known or not isinstance(params, dict):
            raise StoryError(f"{where}: components[{_shown(name)}] is {_shown(params)}; expected parameters of a component")
        out[name] = {}
        for key, v in params.items():
            field = f"{where}: components[{_shown(name)}][{_shown(key)}]"
            if key == "theta":
                v = number(v, field, *THETA)
            elif not isinstance(v, (str, bool)):
                v = number(v, field)
            out[name][key] = v
    return out


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
