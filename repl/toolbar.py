"""The bottom toolbar: what is under way, the decoding, the keys, then the corpus, the model and
its parts, laid out for the terminal's width on one or two lines.

Each part has a few forms, longest first. When the line does not fit, the parts are first
shortened one form each, the least important first, then the least important are cut to their
shortest form or left out; what is under way is never left out (it is cut with an ellipsis).
"""
from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from typing import Any

from model.prediction.components import PARTNER
from model.storage.untrusted import visible
from repl.train_progress import duration, eta_seconds, progress_fraction, rate

Pieces = list[tuple[str, str]]
LINES = 2  # at most this many toolbar lines
KEY, TEXT, BUSY = "class:toolbar.key", "class:toolbar", "class:toolbar.busy"


@dataclass
class Part:
    """One part of the toolbar: its forms (longest first) and how much it matters (0 most)."""

    forms: list[Pieces]
    rank: int
    keep: bool = False  # never left out
    brief: bool = False  # shortened once before anything is left out


def toolbar(session: Any, width: int | None = None) -> Pieces:
    """The toolbar's (style class, text) pieces for the session's state, fitted to ``width``
    (default: the terminal's), lines separated by a ``"\\n"`` piece. Names from files have their
    control characters written out."""
    return fit_lines(toolbar_parts(session), width if width is not None else terminal_width())


def terminal_width() -> int:
    """The width of the terminal the prompt draws on."""
    try:
        from prompt_toolkit.application.current import get_app_or_none

        app = get_app_or_none()
        if app is not None:
            return max(1, app.output.get_size().columns)
    except Exception:  # noqa: BLE001 - no terminal behind the app: the fallback below
        pass
    return max(1, shutil.get_terminal_size((100, 24)).columns)


# ---- what the toolbar says -------------------------------------------------------------------
def toolbar_parts(session: Any) -> list[Part]:
    """The toolbar's parts in the order they are shown."""
    out = [Part(activity(session), 0, keep=True)]
    note = visible(str(getattr(session, "training_note", "") or ""))
    if note:
        out.append(Part([[(BUSY, f" {note} ")], [(BUSY, f" {_cut(note, 24)} ")]], 1))
    mode = session.decoding.short()
    brief = " ".join(mode.split()[:2]) if mode.startswith("sample") else mode.split()[0]
    out.append(Part([_labelled("mode", mode), _labelled("mode", brief), [(TEXT, f" {brief} ")]], 2, brief=True))
    out.append(Part([_labelled("k", str(session.k)) + _labelled("len", str(session.length))], 7))
    ghost = getattr(session.menu, "ghost_enabled", True)
    keys = "Alt-1…9 pick  " + ("→ grey text  Alt-F a word" if ghost else "grey text off")
    brief_keys = "Alt-1…9 → Alt-F" if ghost else "Alt-1…9"
    out.append(Part([_labelled("keys", keys), [(TEXT, f" {brief_keys} ")]], 3))
    hint = visible(str(getattr(session, "keys_hint", "") or ""))
    if hint:
        out.append(Part([[(TEXT, f" {hint} ")]], 3))
    corpus = visible(session.corpus_label())
    out.append(Part([_labelled("corpus", corpus), [(TEXT, f" {_cut(corpus, 14)} ")]], 4, brief=True))
    model = model_label(session)
    out.append(Part([_labelled("model", model), [(TEXT, f" {model} ")]], 5, brief=True))
    label = parts_label(session)
    out.append(Part([_labelled("parts", label), [(TEXT, f" {label} ")]], 6, brief=True))
    return out


def _labelled(key: str, value: str) -> Pieces:
    return [(KEY, f" {key} "), (TEXT, f"{value} ")]


def activity(session: Any) -> list[Pieces]:
    """The forms of what is under way (training with its epoch, loss and ETA; reading; fitting), or idle."""
    status = visible(str(session.status or ""))
    p = getattr(session, "progress", None)
    if p is not None and status.startswith("training"):
        return [[(BUSY, f" {line} ")] for line in training_forms(p)]
    if status:
        words = status.split()
        return [[(BUSY, f" {status} ")], [(BUSY, f" {' '.join(words[:3])} ")]] if len(words) > 3 else [[(BUSY, f" {status} ")]]
    return [[(TEXT, " idle ")]]


def training_forms(p: Any) -> list[str]:
    """Training progress, longest first: epoch, share done, loss, accuracy, speed and ETA."""
    frac = progress_fraction(p)
    left = eta_seconds(p)
    eta = "" if left is None else f" ETA {duration(left)}"
    loss = "" if math.isnan(p.loss) else f" loss {p.loss:.3f}"
    acc = "" if math.isnan(p.accuracy) else f" acc {p.accuracy:.3f}"
    reps = f" ×{p.replicas}" if p.replicas > 1 else ""
    return [
        f"training epoch {p.epoch}/{p.epochs} {frac:.0%}{loss}{acc} {rate(p.tokens_per_s)} tok/s{reps}{eta}",
        f"training {p.epoch}/{p.epochs} {frac:.0%}{loss}{eta}",
        f"training {frac:.0%}{eta}",
        f"train {frac:.0%}{eta}",
    ]


def model_label(session: Any) -> str:
    """arch/context of the model in use or, before one is trained, of the one being trained
    (its context is ``auto`` until the text's size has set it)."""
    if session.bundle is not None:
        cfg = session.bundle.config
    else:
        cfg = getattr(session.predictor, "config", None) or session.config  # the resolved recipe, once the text is read
    return visible(cfg.label())


def parts_label(session: Any) -> str:
    """The components answering, and which network is still training."""
    pred = session.predictor
    if pred is None or not hasattr(pred, "components"):
        return "-"
    label = "+".join(pred.components())
    if session.training and pred.mixture.neural is None:
        return label + " (lstm training)"
    return label + (f" ({PARTNER} training)" if session.training and session.partner_training else "")


def welcome_line(session: Any) -> str:
    """The line the REPL opens with: the corpus, and the model in use or the one being trained."""
    corpus = visible(session.corpus_label())
    if session.bundle is not None:
        what = model_label(session)
    else:
        what = f"training {model_label(session)} in the background; the n-gram completes meanwhile"
    return f"story-repl: {corpus} ({what}). Type words; :help lists commands."


# ---- layout ------------------------------------------------------------------------------------
def fit_lines(shown: list[Part], width: int, lines: int = LINES) -> Pieces:
    """The parts on at most ``lines`` lines of ``width`` cells, shortened and left out as the
    module docstring says."""
    width = max(1, int(width))
    shown = [Part(p.forms[:-1] + [_cut_pieces(p.forms[-1], width)], p.rank, p.keep, p.brief) for p in shown]  # the shortest form fits
    level = [next(lv for lv, f in enumerate(p.forms) if _width(f) <= width) for p in shown]  # each part alone fits
    for step in [None, *_steps(shown)]:
        if step is not None:
            level[step[0]] = max(level[step[0]], step[1])
        rows = _pack([p.forms[lv] for p, lv in zip(shown, level) if lv < len(p.forms)], width)
        if len(rows) <= lines and all(_width(r) <= width for r in rows):
            break
    out: Pieces = []
    for i, row in enumerate(rows[:lines]):
        if i:
            out.append(("", "\n"))
        out += _cut_pieces(row, width)
    return out


def _steps(shown: list[Part]) -> list[tuple[int, int]]:
    """(part, form) changes in the order they are tried: the parts that have a brief form take
    it; then, least important first, each part's shorter forms and leaving it out."""
    order = sorted(range(len(shown)), key=lambda i: (-shown[i].rank, -i))
    brief = [i for i in order if shown[i].brief and len(shown[i].forms) > 1]
    steps = [(i, 1) for i in brief]
    for i in order:
        steps += [(i, lv) for lv in range(2 if i in brief else 1, len(shown[i].forms))]
        if not shown[i].keep:
            steps.append((i, len(shown[i].forms)))
    return steps


def _pack(chosen: list[Pieces], width: int) -> list[Pieces]:
    """The parts in order, a new line whenever the next does not fit."""
    rows: list[Pieces] = [[]]
    used = 0
    for pieces in chosen:
        w = _width(pieces)
        if rows[-1] and used + w > width:
            rows.append([])
            used = 0
        rows[-1] = rows[-1] + pieces
        used += w
    return rows


def _width(pieces: Pieces) -> int:
    from prompt_toolkit.utils import get_cwidth

    return sum(get_cwidth(text) for _, text in pieces)


def _cut(text: str, cells: int) -> str:
    """``text`` in at most ``cells`` cells, an ellipsis marking a cut."""
    from prompt_toolkit.utils import get_cwidth

    if get_cwidth(text) <= cells:
        return text
    out = ""
    for ch in text:
        if get_cwidth(out + ch) > cells - 1:
            break
        out += ch
    return out + "…"


def _cut_pieces(row: Pieces, width: int) -> Pieces:
    """``row`` cut to ``width`` cells, an ellipsis at the end of the cut."""
    if _width(row) <= width:
        return row
    out: Pieces = []
    left = width
    for style, text in row:
        w = _width([(style, text)])
        if w < left:
            out.append((style, text))
            left -= w
            continue
        out.append((style, _cut(text + "…", left)))  # the ellipsis also when the cut falls between pieces
        break
    return out
