"""The decoding flags of ``story-repl generate``, and the Decoding they ask for.

``--greedy`` / ``--sample`` pick the mode (greedy by default); ``--temperature``, ``--top-k``,
``--top-p`` and ``--min-p`` shape sampling and so choose ``--sample`` when neither mode is
given (with ``--greedy`` they are refused, since they would do nothing); ``--repeat-penalty``,
``--repeat-last-n`` and ``--no-repeat-ngram`` apply to every mode; ``--beam N`` searches for the
most likely continuation. Each value is checked by :class:`model.prediction.decoding.Decoding`, which
raises a one-line StoryError naming the flag.
"""
from __future__ import annotations

import argparse

from model.prediction.decoding import DEFAULT, Decoding
from model.errors import StoryError

_SAMPLING = (("temperature", "--temperature"), ("top_k", "--top-k"), ("top_p", "--top-p"), ("min_p", "--min-p"))


def add_decoding_args(p: argparse.ArgumentParser) -> None:
    """Add the mode and decoding flags to the ``generate`` parser."""
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--greedy", action="store_true", help="always take the most likely word (the default)")
    mode.add_argument("--sample", action="store_true", help="sample each word from the model's distribution")
    g = p.add_argument_group("decoding")
    g.add_argument("--temperature", type=float, metavar="T", help="sampling temperature (default 1.0)")
    g.add_argument("--top-k", type=int, metavar="K", help="sample among the K most likely words (0 = off)")
    g.add_argument("--top-p", type=float, metavar="P", help=f"nucleus: the most likely words holding P of the probability (default {DEFAULT.top_p:g}; 1 = off)")
    g.add_argument("--min-p", type=float, metavar="P", help="drop words less than P times as likely as the best (0 = off)")
    g.add_argument("--repeat-penalty", type=float, metavar="R", help=f"p -> p**R for words among the last N (default {DEFAULT.repeat_penalty:g}; 1 = off)")
    g.add_argument("--repeat-last-n", type=int, metavar="N", help=f"how many previous words the penalty looks at (default {DEFAULT.repeat_last_n}; -1 = all)")
    g.add_argument("--no-repeat-ngram", type=int, metavar="N", help=f"never repeat an N-gram (default {DEFAULT.no_repeat_ngram}; 0 = off)")
    g.add_argument("--beam", type=int, metavar="N", help="beam search of width N for the most likely continuation")


def decoding_from_args(args: argparse.Namespace) -> Decoding:
    """The Decoding the flags ask for (a StoryError for a bad value or combination)."""
    given = {f: getattr(args, f, None) for f in ("temperature", "top_k", "top_p", "min_p")}
    sampling = [flag for f, flag in _SAMPLING if given[f] is not None]
    beam = getattr(args, "beam", None)
    if sampling and getattr(args, "greedy", False):
        raise StoryError(f"{sampling[0]} shapes sampling and does nothing with --greedy; use --sample or drop it")
    if beam is not None and beam > 1 and sampling:
        raise StoryError(f"{sampling[0]} shapes sampling and does nothing with --beam; drop one of them")
    greedy = not (getattr(args, "sample", False) or (sampling and not getattr(args, "greedy", False)))
    kw: dict[str, object] = {"greedy": greedy}
    for f in ("temperature", "top_k", "top_p", "min_p", "repeat_penalty", "repeat_last_n", "no_repeat_ngram", "beam"):
        v = getattr(args, f, None)
        if v is not None:
            kw[f] = v
    return Decoding(**kw)
