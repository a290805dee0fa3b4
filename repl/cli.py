"""``story-repl``: the REPL by default, plus scriptable ``train``, ``predict``, ``generate``, ``eval`` and ``complete``.

Errors are one line on stderr with a non-zero exit status; ``--debug`` shows tracebacks.
``--json`` prints exactly one JSON object on stdout (UTF-8; only characters that could drive a
terminal are ``\\u``-escaped).
"""
from __future__ import annotations

import argparse
import os
import sys
import threading
from typing import Sequence

from model.config import ARCHS, OBJECTIVES, OPTIMIZERS
from model.errors import StoryError
from model.prediction.components import components_help
from repl.decoding_args import add_decoding_args, decoding_from_args
from repl.models import check_positive, config_from, err_console, make_predictor, obtain_bundle, print_json
from repl.render import safe
from repl.stories_cli import add_stories_parser, run_stories

SUBCOMMANDS = ("train", "predict", "generate", "eval", "complete", "stories")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit status 2
        # main() prints "story-repl: error: ..."; a subcommand names itself once after that.
        sub = self.prog.removeprefix("story-repl").strip()
        raise StoryError(f"{sub}: {message}" if sub else message)


def _duration(text: str) -> float:
    from repl.commands import parse_duration

    try:
        return parse_duration(text)
    except StoryError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix("--time-limit expects ")) from None


def add_config_args(p: argparse.ArgumentParser, train_seed: bool = False) -> None:
    """The recipe's flags; with ``train_seed`` its seed is ``--train-seed`` (``--seed`` is then the command's own)."""
    g = p.add_argument_group("model configuration (selects the cached model too)")
    g.add_argument("--arch", choices=ARCHS, help="encoder over the context window (default lstm)")
    g.add_argument("--context", type=int, metavar="N", help="words of context (default 3 for small stories)")
    g.add_argument("--units", type=int, metavar="N", help="LSTM units (default 512)")
    g.add_argument("--embedding-dim", type=int, metavar="N", help="embedding size")
    g.add_argument("--optimizer", choices=OPTIMIZERS, help="default adam; the seed tutorial used rmsprop")
    g.add_argument("--lr", type=float, help="learning rate")
    g.add_argument("--batch-size", type=int, metavar="N", help="global batch size (default: whole text for small stories)")
    g.add_argument("--epochs", type=int, metavar="N", help="maximum epochs")
    g.add_argument("--dropout", type=float, help="dropout rate")
    if train_seed:
        g.add_argument("--train-seed", type=int, metavar="N", help="the training seed of the model to use (default 42)")
    else:
        g.add_argument("--seed", type=int, metavar="N", help="random seed (default 42)")
    g.add_argument("--max-vocab", type=int, metavar="N", help="keep the N most frequent words; the rest become <unk>")
    g.add_argument("--min-count", type=int, metavar="N", help="words seen fewer times become <unk>")
    g.add_argument("--keep-case", action="store_true", default=None, help="do not lower-case")
    g.add_argument("--valid-fraction", type=float, metavar="F", help="hold out the last F of the text for validation")
    g.add_argument("--objective", choices=OBJECTIVES, help="softmax, or sampled softmax for large vocabularies")
    p.add_argument("--encoding", default="utf-8", help="corpus text encoding (default utf-8)")


def add_source_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", metavar="DIR", help="a saved model directory")
    p.add_argument(
        "--components", metavar="LIST", help=f"the predictor's parts to use, comma-separated (default: all): {components_help()}"
    )
    p.add_argument("--corpus", metavar="PATH", help=f"use (or train) the cached model for this corpus; {MODEL_TEXT}")
    add_partner_arg(p)
    add_config_args(p, train_seed=True)


MODEL_TEXT = (
    "with --model, that model's training text (used only if its sha256 is the one the model recorded), "
    "to rebuild its n-gram or for eval --valid"
)


def add_partner_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--partner", metavar="ARCH|DIR",
        help="a second network in the mixture (component lstm2): the cached model of this corpus with that arch (e.g. stream), or a model directory",
    )


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="story-repl", description="Complete your words with an LSTM trained on a story.")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command")

    t = sub.add_parser("train", help="train a model and cache it")
    t.add_argument("corpus", nargs="?", help="corpus file or shipped corpus name")
    t.add_argument("--out", metavar="DIR", help="also save the bundle here")
    t.add_argument("--resume", metavar="DIR", help="continue training a saved bundle (its config; its training text is CORPUS, checked by sha256)")
    t.add_argument("--logdir", metavar="DIR", help="write TensorBoard scalars here")
    t.add_argument("--strategy", default="auto", choices=("auto", "default", "mirrored", "multiworker"))
    t.add_argument("--force", action="store_true", help="retrain even if a cached model exists")
    t.add_argument(
        "--time-limit", type=_duration, metavar="D", help="stop after D of training (90, 90s, 10m, 1h); the best weights are kept"
    )
    t.add_argument("--json", action="store_true", help="print one JSON object")
    t.add_argument("--no-chart", action="store_true", help="do not draw the loss/accuracy chart")
    t.add_argument("--verbose", action="store_true", help="print a sample prediction now and then while training")
    add_config_args(t)

    pr = sub.add_parser("predict", help="top-k next words")
    pr.add_argument("text")
    pr.add_argument("-k", type=int, default=5)
    pr.add_argument("--json", action="store_true")
    add_source_args(pr)
    add_no_seed(pr)

    g = sub.add_parser("generate", help="generate a continuation")
    g.add_argument("text")
    g.add_argument("-n", type=int, default=32, help="words to generate")
    add_decoding_args(g)
    g.add_argument("--json", action="store_true")
    g.add_argument("--seed", type=int, metavar="N", help="seed of sampling (default: the model's training seed)")
    add_source_args(g)

    e = sub.add_parser("eval", help="perplexity and accuracy on a text, beside a Kneser-Ney baseline")
    e.add_argument("file", nargs="?", help="text to evaluate (default: the held-out part with --valid)")
    e.add_argument("--valid", action="store_true", help="evaluate on the corpus's held-out validation part")
    e.add_argument("--order", type=int, default=5, help="n-gram order of the baseline (default 5)")
    e.add_argument("--keystrokes", action="store_true", help="also simulate a typist: keystroke savings by menu size, beside Kneser-Ney and Presage")
    e.add_argument("--menu", default="1,3,5,10", metavar="N,N", help="menu sizes for --keystrokes (default 1,3,5,10)")
    e.add_argument("--limit", type=int, metavar="N", help="with --keystrokes, type only the first N tokens")
    e.add_argument("--per-line", action="store_true", help="with --keystrokes, also type each line as its own REPL line, with the story on and off")
    e.add_argument("--json", action="store_true")
    add_source_args(e)
    add_no_seed(e)

    c = sub.add_parser("complete", help="the REPL's menu and continuation for buffers read as JSON lines on stdin")
    c.add_argument("-k", type=int, default=10, help="menu entries per answer (default 10)")
    c.add_argument("--repeat", action="store_true", help="show passed-over words again while a word is typed")
    c.add_argument("--no-ghost", action="store_true", help="no inline continuation")
    add_source_args(c)
    add_no_seed(c)
    add_stories_parser(sub)
    return p


def add_no_seed(p: argparse.ArgumentParser) -> None:
    """``--seed`` on a command that does not sample: refused by :func:`check_no_seed`, which says what to pass."""
    p.add_argument("--seed", type=int, help=argparse.SUPPRESS)


def check_no_seed(args: argparse.Namespace) -> None:
    if getattr(args, "seed", None) is not None and args.command != "generate":
        raise StoryError(
            f"{args.command}: --seed seeds sampling in generate; to use the model trained with seed {args.seed}, pass --train-seed {args.seed}"
        )


def repl_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="story-repl", description="Complete your words with an LSTM trained on a story.")
    p.add_argument("--corpus", metavar="PATH", help=f"corpus to load or train (default belling_the_cat); {MODEL_TEXT}")
    p.add_argument("--model", metavar="DIR", help="a saved model directory")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.add_argument("--no-resume", action="store_true", help="do not resume in the background a training that was cut short")
    p.add_argument(
        "--story", metavar="new|ID|TITLE", help="the story to write into: new, or a story's id or title (default: the corpus's last story)"
    )
    add_partner_arg(p)
    add_config_args(p)
    return p


def cmd_train(args: argparse.Namespace) -> int:
    from repl.models import DEFAULT_CORPUS, interrupted_note, report_training, train_with_view

    console = err_console()
    if args.resume:
        bundle, result = resume_with_view(args, console)
        report_training(console, result, bundle, not args.no_chart)
    else:
        bundle, result = train_with_view(
            args.corpus or DEFAULT_CORPUS,
            config_from(args),
            console,
            force=args.force,
            encoding=args.encoding,
            out=args.out,
            logdir=args.logdir,
            strategy=args.strategy,
            show_chart=not args.no_chart,
            time_limit=args.time_limit,
            verbose=args.verbose,
        )
        if result is None:
            console.print(f"[dim]using the cached model at {bundle.path} (--force retrains)[/dim]")
    if bundle is not None and bundle.metrics.get("interrupted"):
        how = f"story-repl train --resume {bundle.path} continues it"
        console.print(f"[yellow]{interrupted_note(bundle, how) if result is None else how}[/yellow]", highlight=False)
    note = (result.vocab if result is not None else bundle.vocab).unk_note() if (result or bundle) else None
    if note:
        console.print(f"[dim]{note}[/dim]", highlight=False)
    if args.json:
        print_json(train_json(bundle, result))
    return 0


def resume_with_view(args: argparse.Namespace, console):
    """``train --resume DIR``: the saved model trained on (for ``--epochs`` more, else the epochs an
    interrupted run had left) and saved over itself or to ``--out``. (bundle or None, result)."""
    from model.storage.bundle import load_bundle
    from model.storage.store import resume_training
    from repl.models import sigint_sets
    from repl.train_progress import TrainingView

    old = load_bundle(args.resume)
    if args.corpus:  # the model's training text, taken only if its sha256 is the recorded one
        old.use_text(args.corpus)
    corpus = old.training_corpus(args.encoding, need="to resume training")
    stop = threading.Event()
    with sigint_sets(stop, console), TrainingView(console, f"resuming {old.config.arch}", verbose=args.verbose) as view:
        return resume_training(
            old, corpus, epochs=args.epochs, out=args.out, on_progress=view, stop=stop, logdir=args.logdir,
            strategy=args.strategy, time_limit=args.time_limit,
        )


def train_json(bundle, result) -> dict:
    """What ``train --json`` prints (its keys are stable)."""
    metrics = bundle.metrics if bundle is not None else result.metrics()
    cfg = bundle.config if bundle is not None else result.config
    return {
        "bundle": str(bundle.path) if bundle is not None else None,
        "accuracy": metrics.get("accuracy"),
        "ceiling": metrics.get("ceiling"),
        "epochs": metrics.get("epochs"),
        "train_seconds": metrics.get("train_seconds"),
        "arch": cfg.arch,
        "context": cfg.context,
        "vocab_size": len(bundle.vocab) if bundle is not None else len(result.vocab),
        "stop_reason": metrics.get("stop_reason"),
        "val_loss": metrics.get("val_loss"),
        "cached": result is None,
        "recipe": cfg.to_dict(),
        "interrupted": bool(metrics.get("interrupted", False)),
        "planned_epochs": metrics.get("planned_epochs"),
    }


def cmd_predict(args: argparse.Namespace) -> int:
    from repl.render import notice, topk_table

    check_positive(args.k, "-k")
    bundle = obtain_bundle(args)
    pred = make_predictor(bundle, args)
    k = min(args.k, len(pred.vocab))
    out = pred.predict_text(args.text, k)
    if args.json:
        print_json(out)
        return 0
    from rich.console import Console

    console = Console(highlight=False)
    if out["unknown"]:
        console.print(notice(f"unknown words skipped: {', '.join(out['unknown'])}"))
    console.print(topk_table([(p["word"], p["prob"]) for p in out["predictions"]]))
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from model.text.writing import continuation

    check_positive(args.n, "-n")
    if args.temperature is not None and not args.temperature > 0:
        raise StoryError(f"--temperature expects a positive number, got {args.temperature}")
    decoding = decoding_from_args(args)
    bundle = obtain_bundle(args)
    pred = make_predictor(bundle, args)
    seed_tokens = pred.tokenize(args.text)
    _, unknown = pred.encode(seed_tokens)
    seed = args.seed if args.seed is not None else bundle.config.seed
    tokens = pred.generate(seed_tokens, args.n, seed=seed, decoding=decoding)
    text = continuation(args.text, tokens, pred.casing)[1].strip()
    if args.json:
        print_json(
            {"seed": seed_tokens, "tokens": tokens, "text": text, "unknown": unknown, "mode": decoding.mode, "decoding": decoding.to_dict()}
        )
        return 0
    if unknown:
        print(f"unknown words skipped: {safe(', '.join(unknown))}", file=sys.stderr)
    print(safe(text))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from repl.eval_view import run_eval

    return run_eval(args)


def cmd_complete(args: argparse.Namespace) -> int:
    from repl.complete_protocol import run_complete

    return run_complete(args)


def stdout_closed() -> bool:
    """Whether nobody reads stdout any more, so that a BrokenPipeError was ours to write, not
    one from a pipe to another program (a helper that exited)."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll here, or stdout is no file
        return False


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("STORY_REPL_DEBUG") == "1"
    if debug:
        os.environ["STORY_REPL_DEBUG"] = "1"
    # numpy's work here (REPL, predict, generate, eval) is small matrix products where BLAS
    # threads only wait on each other; TensorFlow does not use OpenBLAS.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    try:
        if argv and argv[0] in SUBCOMMANDS or argv[:1] in (["-h"], ["--help"]):
            args = build_parser().parse_args(argv)
            check_no_seed(args)
            handler = {"train": cmd_train, "predict": cmd_predict, "generate": cmd_generate, "eval": cmd_eval, "complete": cmd_complete, "stories": run_stories}[args.command]
            return handler(args)
        args = repl_parser().parse_args(argv)
        from repl.session import run_session

        return run_session(args)
    except StoryError as e:
        if debug:
            import traceback

            traceback.print_exc()
        print(f"story-repl: error: {safe(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("story-repl: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - never a traceback for the user
        if isinstance(e, BrokenPipeError) and stdout_closed():
            return 1  # whoever read the output stopped reading (`| head`): nothing to say
        if debug:
            raise
        print(f"story-repl: error: {type(e).__name__}: {safe(str(e).splitlines()[0]) if str(e) else ''} (run with --debug for details)", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
