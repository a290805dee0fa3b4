"""Wiring shared by the CLI, the REPL and ``eval``: the configuration from arguments, finding,
training and loading models, JSON output. No argument parsing and no UI policy here."""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
import signal
import threading
from pathlib import Path
from typing import Any, Iterator

from rich.console import Console

from model.storage.bundle import Bundle, load_bundle
from model.config import Config
from model.errors import StoryError
from repl.train_progress import TrainingView
from repl.render import history_charts

DEFAULT_CORPUS = "belling_the_cat"


@contextlib.contextmanager
def sigint_sets(stop: threading.Event, console: Console | None = None) -> Iterator[None]:
    """While the block runs, Ctrl-C sets ``stop`` (training ends after its batch) instead of raising."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        if not stop.is_set() and console is not None:
            console.print("[yellow]stopping after this batch; keeping the best weights so far…[/yellow]")
        stop.set()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def train_with_view(
    corpus_spec: str,
    config: Config,
    console: Console,
    *,
    force: bool = False,
    encoding: str = "utf-8",
    out: str | None = None,
    logdir: str | None = None,
    strategy: str = "auto",
    stop: threading.Event | None = None,
    show_chart: bool = True,
    time_limit: float | None = None,
    verbose: bool = False,
):
    """Load the cached model for (corpus, config), or train one with a progress bar (sample
    predictions too when ``verbose``). (bundle, result)."""
    from model.storage import store

    stop = stop or threading.Event()
    title = f"training {config.arch}"
    from repl.train_progress import ReadingClock

    on_read = ReadingClock(lambda line: console.print(f"[dim]{line}[/dim]", end="\r", highlight=False))

    if not force and out is None and strategy != "multiworker":  # every worker of a cluster trains
        from model.text.corpus import resolve_path

        path = resolve_path(corpus_spec)
        hit = store.cached(path, config)
        if hit is not None:
            return hit, None
    from model.text.corpus import read_corpus

    from model.training.train import check_trainable

    corpus = read_corpus(corpus_spec, encoding=encoding, keep_case=config.keep_case, progress=on_read)
    if corpus.notice:
        from repl.render import notice

        console.print(notice(corpus.notice))
    check_trainable(corpus, config)  # a text too short fails now, not once TensorFlow is loaded
    with sigint_sets(stop, console):
        with TrainingView(console, title, verbose=verbose) as view:
            bundle, result = store.train_and_cache(
                corpus,
                config,
                on_progress=view,
                stop=stop,
                encoding=encoding,
                force=force,
                out=out,
                logdir=logdir,
                strategy=strategy,
                on_read=on_read,
                time_limit=time_limit,
            )
    if result is not None:
        report_training(console, result, bundle, show_chart)
    return bundle, result


def report_training(console: Console, result, bundle: Bundle | None, show_chart: bool = True) -> None:
    from model.training.events import counted

    style = "yellow" if result.interrupted else "green"
    console.print(
        f"[{style}]{result.stop_reason}[/{style}]: accuracy {result.accuracy:.3f} (ceiling {result.ceiling:.3f}), "
        f"{counted(result.epochs, 'epoch')} in {result.train_seconds:.1f}s"
        + (f", saved to {bundle.path}" if bundle is not None else "")
    )
    if show_chart and len(result.history.get("loss", [])) > 1:
        console.print(history_charts(result.history))


def interrupted_note(bundle: Bundle | None, how: str) -> str | None:
    """One line when ``bundle``'s training was cut short (Ctrl-C, :stop): where it stopped, and
    ``how`` to go on; None for a model whose training ended on its own."""
    m = bundle.metrics if bundle is not None and isinstance(bundle.metrics, dict) else {}
    if not m.get("interrupted"):
        return None
    done, planned = m.get("epochs"), m.get("planned_epochs") or bundle.config.epochs
    where = f" at epoch {done} of {planned}" if done is not None and planned else ""
    acc = m.get("accuracy")
    accuracy = f" (accuracy {acc:.3f})" if isinstance(acc, (int, float)) else ""
    return f"this model's training was interrupted{where}{accuracy}; {how}"


def config_from(args: argparse.Namespace, base: Config | None = None) -> Config:
    """The recipe the flags ask for; the seed is ``--train-seed`` where a command has one (its
    ``--seed`` then seeds sampling and never selects a model)."""
    names = (
        "arch context units embedding_dim optimizer lr batch_size epochs dropout max_vocab min_count "
        "keep_case valid_fraction objective"
    ).split()
    given = {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}
    seed = getattr(args, "train_seed", None) if hasattr(args, "train_seed") else getattr(args, "seed", None)
    if seed is not None:
        given["seed"] = seed
    return (base or Config()).replace(**given)


def check_positive(value: int, flag: str) -> None:
    if value < 1:
        raise StoryError(f"{flag} expects a positive integer, got {value}")


def err_console():
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def json_line(obj: Any) -> str:
    """``obj`` as one line of JSON, in UTF-8 as it is except for the characters that could drive a
    terminal or break a line: json escapes only U+0000-U+001F, so C1 controls (U+0080-U+009F,
    U+009B is a CSI), format characters, line separators and lone surrogates are escaped here."""
    text = json.dumps(obj, ensure_ascii=False)
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _json_escape(ord(ch)) for ch in text)


def _json_escape(code: int) -> str:
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def print_json(obj: Any) -> None:
    """Every ``--json`` output: one line (see :func:`json_line`)."""
    sys.stdout.write(json_line(obj) + "\n")
    sys.stdout.flush()


def obtain_bundle(args: argparse.Namespace):
    """The bundle a predict/generate/eval command asks for (training it if needed)."""

    if args.model:
        bundle = load_bundle(args.model)
        if args.corpus:  # the model's training text, taken only if its sha256 is the recorded one
            bundle.use_text(args.corpus)
        how = f"story-repl train --resume {bundle.path} continues it"
    else:
        bundle, _ = train_with_view(args.corpus or DEFAULT_CORPUS, config_from(args), err_console(), encoding=args.encoding, show_chart=False)
        how = f"story-repl train --resume {bundle.path} continues it, or the REPL on this corpus resumes it"
    note = interrupted_note(bundle, how)
    if note:
        print(f"story-repl: note: {note}", file=sys.stderr)  # one line, whatever the width
    return bundle


def parse_components(text: str | None) -> list[str] | None:
    """``lstm,ngram,cache,ncache`` (any subset, comma- or space-separated) -> names; None keeps all."""
    if text is None:
        return None
    return [p for p in text.replace(",", " ").split() if p]


def partner_recipe(bundle, arch: str) -> Config:
    """The configuration of ``bundle``'s partner of ``arch``: the recipe's defaults with the
    bundle's held-out split and case, so that the cached model is found again. ``arch`` is one
    of ``model.config.ARCHS`` (the callers check it)."""
    config = Config().replace(arch=arch, valid_fraction=float(bundle.config.valid_fraction or 0))
    return config.replace(keep_case=True) if bundle.config.keep_case else config


def partner_config(bundle, arch: str) -> tuple[Path, Config]:
    """The training text to train ``bundle``'s partner of ``arch`` on (only from where
    :meth:`Bundle.training_text` finds it, checked by sha256), and its configuration."""
    path = bundle.training_text()
    if path is None:
        from model.storage.origin import missing_text

        raise missing_text(bundle, f"to train its {arch} partner")
    return path, partner_recipe(bundle, arch)


def cached_partner(bundle, config: Config):
    """The cached partner of ``bundle`` of ``config``, found by the recorded sha256 alone (no
    text is read), or None."""
    from model.storage import store
    from model.storage.origin import trusted_spec

    sha = bundle.corpus_sha256
    if not sha:
        return None
    names = {Path(bundle.info.get("corpus", {}).get("path") or "corpus").name, Path(trusted_spec(bundle) or "corpus").name}
    for name in sorted(names):
        target = store.cache_path(Path(name), config, sha)
        if target.is_dir():
            try:
                return load_bundle(target)
            except StoryError:
                continue
    return None


def partner_bundle(bundle, spec: str | None, what: str = "--partner"):
    """The bundle ``--partner SPEC`` (or ``:partner SPEC``, ``what``) names for ``bundle``: a
    saved model directory, or an arch whose cached model of the same corpus and held-out split
    is used; None without SPEC."""
    from model.config import ARCHS
    from model.storage.origin import trusted_spec
    from model.storage.untrusted import visible

    if not spec:
        return None
    if spec not in ARCHS:
        if not Path(spec).is_dir():
            raise StoryError(f"{what} expects an arch ({', '.join(ARCHS)}) or a saved model directory, got {visible(repr(spec))}")
        return load_bundle(spec)
    config = partner_recipe(bundle, spec)
    other = cached_partner(bundle, config)
    if other is None:
        vf = float(config.valid_fraction or 0)
        flag = f" --valid-fraction {vf:g}" if vf else ""
        text = visible(trusted_spec(bundle) or "TEXT")
        name = Path(bundle.corpus_path).name or bundle.corpus_name
        raise StoryError(f"no cached {spec} model for {name}; train it first: story-repl train {text} --arch {spec}{flag}")
    return other


def make_predictor(bundle, args: argparse.Namespace | None = None):
    """The predictor over ``bundle``, with the components ``--components`` names switched on
    and the network ``--partner`` names in the mixture."""
    from model.prediction.predictor import Predictor

    pred = Predictor(bundle, partner=partner_bundle(bundle, getattr(args, "partner", None)))
    names = parse_components(getattr(args, "components", None)) if args is not None else None
    if names is not None:
        pred.components(names)
    from model.prediction.build import missing_parts_note

    note = missing_parts_note(bundle, pred.mixture)
    if note:
        print(f"story-repl: note: {note}", file=sys.stderr)  # one line, whatever the width
    return pred
