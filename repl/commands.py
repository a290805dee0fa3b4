"""REPL commands: ``:name args`` lines parsed into small validated values.

Parsing is pure: :func:`parse` turns a line into a :class:`Command` or raises a one-line
:class:`StoryError` that names the problem (and the closest command for a typo). The
session decides what each command does.
"""
from __future__ import annotations

import difflib
import math
import os
import re
import shlex
from dataclasses import dataclass, field

from model.config import ARCHS
from model.errors import StoryError
from model.prediction.components import components_help


@dataclass(frozen=True)
class Spec:
    usage: str
    help: str
    args: str  # "none" | "int" | "float?" | "path" | "path?" | "word" | "word?" | "text" | "text?" | "train"


COMMANDS: dict[str, Spec] = {
    "help": Spec(":help", "list every command and the keys", "none"),
    "train": Spec(
        ":train [PATH] [--time-limit D]",
        "retrain on PATH, or on the current corpus, in the background, for at most D (90s, 10m, 1h) if given; "
        "the old model stays usable until the new one is ready (:stop ends it early)",
        "train",
    ),
    "corpus": Spec(":corpus PATH", "switch corpus: load its cached model or train one", "path"),
    "stop": Spec(
        ":stop", "stop training after the current batch, keeping and saving the best weights (so does Ctrl-C on an empty line)", "none"
    ),
    "topk": Spec(":topk N", "show the N most likely next words in the table (the menu shows at least 10)", "int"),
    "greedy": Spec(":greedy", "generate by always taking the most likely word", "none"),
    "sample": Spec(":sample [T]", "generate by sampling at temperature T (default 1.0)", "float?"),
    "mode": Spec(":mode", "toggle between greedy and sampled generation", "none"),
    "beam": Spec(":beam N", "generate the most likely continuation by beam search of width N (1 = greedy)", "int"),
    "decode": Spec(
        ":decode [KEY=VALUE ...]",
        "show or set decoding: T, k (top-k), p (top-p), minp, rep (repeat penalty), last-n, nr (no-repeat n-gram), "
        "beam; also greedy, sample, off (no repetition controls), defaults",
        "text?",
    ),
    "len": Spec(":len N", "generate N words after each line", "int"),
    "seed": Spec(":seed N", "seed sampling and the next training run", "int"),
    "arch": Spec(":arch NAME", f"switch encoder ({', '.join(ARCHS)}): load or train that model", "word"),
    "context": Spec(":context N", "switch context window: load or train that model", "int"),
    "save": Spec(":save DIR", "save the current model to DIR", "path"),
    "load": Spec(":load DIR", "load a model saved with :save or story-repl train", "path"),
    "info": Spec(
        ":info", "corpus, vocabulary, components and their weights, parameters, accuracy, where the model lives", "none"
    ),
    "history": Spec(":history", "show the loss and accuracy curves of the last training", "none"),
    "eval": Spec(
        ":eval [--keystrokes] [FILE]",
        "perplexity, top-1/top-5 accuracy and OOV rate on FILE (default: held-out text), beside a 5-gram; "
        "--keystrokes: keys a typist saves with the menu, beside Kneser-Ney and Presage",
        "path?",
    ),
    "score": Spec(":score TEXT", "colour each word of TEXT by the probability the model gave it", "text"),
    "vocab": Spec(":vocab [WORD]", "vocabulary size and coverage, or a word's rank, count and followers", "word?"),
    "components": Spec(
        ":components [LIST]",
        f"the predictor's parts with their weights and held-out perplexities: {components_help()}; "
        "with LIST (e.g. lstm,ngram) use only those",
        "text?",
    ),
    "partner": Spec(
        ":partner [ARCH|DIR|off] [--time-limit D]",
        "a second network in the mixture (lstm2): the cached ARCH model of this text and split, trained in the "
        "background (for at most D) when there is none, or a model saved in DIR; off drops it; alone, shows it",
        "train",
    ),
    "ghost": Spec(":ghost on|off", "the grey continuation after a word (→ accepts it, Alt-F one word)", "word?"),
    "repeat": Spec(":repeat on|off", "offer again the menu's words you passed over while typing the same word (default off)", "word?"),
    "quit": Spec(":quit", "leave story-repl (Ctrl-D does too)", "none"),
}
ALIASES = {"exit": "quit", "q": "quit", "h": "help", "?": "help", "k": "topk"}


@dataclass(frozen=True)
class Command:
    name: str
    arg: object = None
    options: dict = field(default_factory=dict)  # --name value options, e.g. :train's time_limit


def parse_int(text: str, what: str) -> int:
    """An integer from ``text``; also accepts ``10^9``, ``1e9`` and ``1_000``."""
    s = text.strip().replace("_", "").replace(",", "")
    m = re.fullmatch(r"([+-]?\d+)\s*(?:\^|\*\*)\s*(\d+)", s)
    try:
        if m:
            base, exp = int(m.group(1)), int(m.group(2))
            if exp > 30:
                return 10**30 if base > 0 else -(10**30)
            return base**exp
        if re.fullmatch(r"[+-]?\d+", s):
            return int(s[:40]) if len(s) <= 40 else (10**40 if not s.startswith("-") else -(10**40))
        if re.fullmatch(r"[+-]?\d+(\.\d+)?[eE]\+?\d+", s):
            v = float(s)
            if math.isfinite(v) and v == int(v):
                return int(v)
    except (ValueError, OverflowError):
        pass
    raise StoryError(f"{what} expects a whole number, got {text.strip()!r}")


_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(s|sec|secs|seconds?|m|min|mins|minutes?|h|hr|hrs|hours?)?")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600}


MAX_DURATION_HOURS = 10**5  # about 11 years: a longer limit is a typo, not a plan


def parse_duration(text: str, what: str = "--time-limit") -> float:
    """Seconds from ``90``, ``90s``, ``10m``, ``1.5h`` (a bare number is seconds), above zero
    and at most :data:`MAX_DURATION_HOURS`."""
    shown = str(text).strip()
    shown = repr(shown if len(shown) <= 40 else shown[:39] + "…")
    m = _DURATION.fullmatch(str(text).strip().lower())
    if not m:
        raise StoryError(f"{what} expects a duration such as 90, 90s, 10m or 1h, got {shown}")
    seconds = float(m.group(1)) * _UNIT_SECONDS[(m.group(2) or "s")[0]]
    if not seconds > 0:
        raise StoryError(f"{what} expects a duration above zero, got {shown}")
    if seconds > MAX_DURATION_HOURS * 3600:
        raise StoryError(f"{what} expects a duration of at most {MAX_DURATION_HOURS:,}h; {shown} is too long")
    return seconds


def parse_float(text: str, what: str) -> float:
    try:
        v = float(text.strip())
    except ValueError:
        raise StoryError(f"{what} expects a number, got {text.strip()!r}") from None
    if not math.isfinite(v):
        raise StoryError(f"{what} expects a finite number, got {text.strip()!r}")
    return v


def parse_path(text: str) -> str:
    """A path argument: the rest of the line, quotes removed, ``~`` expanded."""
    s = text.strip()
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "'\"":
        s = s[1:-1]
    elif "'" in s or '"' in s:
        try:
            parts = shlex.split(s)
        except ValueError:
            raise StoryError(f"unbalanced quotes in path {text.strip()!r}") from None
        s = " ".join(parts)
    return os.path.expanduser(s)


def resolve_name(word: str) -> str:
    name = ALIASES.get(word, word)
    if name in COMMANDS:
        return name
    close = difflib.get_close_matches(name, list(COMMANDS), n=1, cutoff=0.5)
    prefix = [c for c in COMMANDS if c.startswith(name)] if name else []
    hint = close[0] if close else (prefix[0] if len(prefix) == 1 else None)
    shown = word if len(word) <= 30 else word[:30] + "…"
    if hint:
        raise StoryError(f"unknown command :{shown}; did you mean :{hint}? (:help lists them)")
    raise StoryError(f"unknown command :{shown}; :help lists the commands")


def is_command(line: str) -> bool:
    return line.lstrip().startswith(":")


def parse(line: str) -> Command:
    """Parse a ``:command args`` line."""
    body = line.strip()[1:]
    word, _, rest = body.partition(" ")
    if not word.strip():
        raise StoryError("empty command; :help lists the commands")
    name = resolve_name(word.strip().lower())
    spec = COMMANDS[name]
    rest = rest.strip()
    kind = spec.args
    optional = kind.endswith("?") or kind == "train"
    kind = kind.rstrip("?")
    if kind == "none":
        if rest:
            raise StoryError(f":{name} takes no arguments (usage: {spec.usage})")
        return Command(name)
    if not rest:
        if optional:
            return Command(name)
        raise StoryError(f":{name} needs an argument (usage: {spec.usage})")
    if kind in ("int", "float", "word") and len(rest.split()) > 1:
        raise StoryError(f":{name} takes one argument, got {len(rest.split())} (usage: {spec.usage})")
    if kind == "int":
        return Command(name, parse_int(rest, f":{name}"))
    if kind == "float":
        return Command(name, parse_float(rest, f":{name}"))
    if kind == "path":
        return Command(name, parse_path(rest))
    if kind == "train":
        path, time_limit = parse_train(rest, f":{name}")
        return Command(name, path, {"time_limit": time_limit} if time_limit is not None else {})
    return Command(name, rest)


def parse_train(text: str, what: str = ":train") -> tuple[str | None, float | None]:
    """``[PATH] [--time-limit D]`` of ``:train`` and ``:partner`` (the option may come first or last)."""
    m = re.search(r"(?:^|\s)--time-limit(?:\s+|=)(\S+)\s*$", text) or re.match(r"^--time-limit(?:\s+|=)(\S+)(?:\s+|$)", text)
    limit = None
    if m:
        limit = parse_duration(m.group(1), f"{what} --time-limit")
        text = (text[: m.start()] + text[m.end() :]).strip()
    elif re.search(r"(?:^|\s)--time-limit\s*$", text):
        raise StoryError(f"{what} --time-limit needs a duration such as 90s, 10m or 1h")
    return (parse_path(text) if text.strip() else None), limit


def help_rows() -> list[tuple[str, str]]:
    return [(spec.usage, spec.help) for spec in COMMANDS.values()]


def command_table_markdown() -> str:
    """The README's command table, from :data:`COMMANDS` (the same rows as ``:help``)."""

    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    rows = ["| command | what it does |", "|---|---|"]
    rows += [f"| `{cell(usage)}` | {cell(text)} |" for usage, text in help_rows()]
    return "\n".join(rows) + "\n"
