"""The bottom toolbar: corpus, model, settings, what is under way, and the keys."""
from __future__ import annotations

from typing import Any

from model.prediction.components import PARTNER
from model.storage.untrusted import visible


def toolbar(session: Any) -> list[tuple[str, str]]:
    """The toolbar's (style class, text) pieces for the session's current state (names from files
    with their control characters written out)."""
    cfg = session.bundle.config if session.bundle is not None else session.config
    mode = session.decoding.short()
    parts = [
        ("class:toolbar.key", " corpus "),
        ("class:toolbar", f"{visible(session.corpus_label())} "),
        ("class:toolbar.key", " model "),
        ("class:toolbar", f"{visible(cfg.arch)}/{cfg.context} "),
        ("class:toolbar.key", " k "),
        ("class:toolbar", f"{session.k} "),
        ("class:toolbar.key", " len "),
        ("class:toolbar", f"{session.length} "),
        ("class:toolbar.key", " parts "),
        ("class:toolbar", f"{visible(parts_label(session))} "),
    ]
    if session.status:
        parts.append(("class:toolbar.busy", f" {visible(session.status)} "))
    else:
        parts.append(("class:toolbar", " idle "))
    # after the status, so a narrow terminal cuts the decoding settings, never what is under way
    parts += [("class:toolbar.key", " mode "), ("class:toolbar", f"{mode} ")]
    parts.append(("class:toolbar.key", " keys "))
    parts.append(("class:toolbar", " Alt-1…9 pick  " + ("→ grey text  Alt-F a word " if session.menu.ghost_enabled else "grey text off ")))
    return parts


def parts_label(session: Any) -> str:
    """The components answering, and which network is still training."""
    pred = session.predictor
    if pred is None or not hasattr(pred, "components"):
        return "-"
    label = "+".join(pred.components())
    if session.training and pred.mixture.neural is None:
        return label + " (lstm training)"
    return label + (f" ({PARTNER} training)" if session.training and session.partner_training else "")
