"""``story-repl eval`` and the REPL's :eval / :score / :vocab on real tiny models."""
from __future__ import annotations

import io
import json
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from model.storage.bundle import load_bundle, save_result
from model.config import Config
from model.text.corpus import read_corpus
from model.training.data import split_paragraphs
from model.errors import StoryError
from model.prediction.ngram import KneserNey
from model.text.vocab import Vocab
from model.prediction.predictor import Predictor
from model.evaluation import analysis as scores
from model.evaluation import evaluate
from repl import analysis
from repl.cli import main

from helpers import BIN, CAT

pytestmark = pytest.mark.usefixtures("fresh_home")  # STORY_REPL_HOME at tmp_path/home, no baseline kept

TINY = dict(units=32, embedding_dim=16, epochs=40)
SHORT = "the mice had a general council to consider what measures they could take"
JSON_KEYS = {"tokens", "oov_rate", "perplexity", "top1", "top5", "baseline"}


def _train(tmp: Path, name: str, corpus_path: Path, **kw) -> Path:
    from model.training.train import train

    corpus = read_corpus(corpus_path)
    return save_result(train(corpus, Config(**TINY, **kw)), tmp / name)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Two tiny models of the seed story: the whole text (no <unk>), and one that holds out
    the last quarter and drops singletons into <unk>."""
    tmp = tmp_path_factory.mktemp("eval-models")
    corpus = tmp / "cat.txt"
    shutil.copyfile(CAT, corpus)
    return {
        "plain": _train(tmp, "plain", corpus),
        "valid": _train(tmp, "valid", corpus, valid_fraction=0.25, min_count=2),
        "corpus": corpus,
    }


def _eval_json(capsys, *argv) -> dict:
    assert main(["eval", *argv, "--json"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    return json.loads(out)


def _hand(pred: Predictor, tokens: list[str]) -> tuple[float, float, float, int]:
    """Perplexity, top-1, top-5 and scored positions from the mixture, one position at a time:
    an empty cache that fills with the text, words the training text never had not scored."""
    mix = pred.mixture.fresh()
    ids = [mix.word_id(t, add=True) for t in tokens]
    nll, hit1, hit5, n = 0.0, 0, 0, 0
    for i in range(1, len(ids)):
        y = ids[i]
        if y >= mix.corpus_size:
            continue
        p = mix.distribution(ids[:i])
        nll -= math.log(p[y])
        order = np.argsort(-p, kind="stable")
        hit1 += int(order[0] == y)
        hit5 += int(y in order[:5])
        n += 1
    return math.exp(nll / n), hit1 / n, hit5 / n, n


# ---- story-repl eval ----------------------------------------------------------------------
def test_json_shape_through_the_installed_command(models, tmp_path):
    text = tmp_path / "fábula.txt"
    text.write_text(SHORT + " .\n", encoding="utf-8")
    proc = subprocess.run(
        [str(BIN), "eval", str(text), "--model", str(models["plain"]), "--json"],
        capture_output=True, text=True, encoding="utf-8", timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 1
    assert "fábula" in lines[0]  # UTF-8, not \u escapes
    out = json.loads(lines[0])
    assert JSON_KEYS <= set(out)
    assert set(out["baseline"]) >= {"kind", "order", "perplexity", "top1", "top5"}
    assert out["baseline"]["kind"] == "kneser-ney" and out["baseline"]["order"] == 5
    assert isinstance(out["tokens"], int) and out["tokens"] == len(SHORT.split())  # words + "." minus the first
    assert out["oov_rate"] == 0
    for d in (out, out["baseline"]):
        assert d["perplexity"] > 1 and 0 <= d["top1"] <= d["top5"] <= 1


def test_perplexity_matches_a_hand_computation(models):
    bundle = load_bundle(models["plain"])
    pred = Predictor(bundle)
    tokens = pred.tokenize(SHORT)
    ppl, top1, top5, n = _hand(pred, tokens)
    got = evaluate.evaluate_text(bundle, tokens)
    assert got["tokens"] == n == len(tokens) - 1
    assert got["perplexity"] == pytest.approx(ppl, rel=1e-4)
    assert got["top1"] == pytest.approx(top1)
    assert got["top5"] == pytest.approx(top5)
    assert got["nll"] == pytest.approx(math.log(ppl) * got["tokens"], rel=1e-4)


def test_a_memorised_story_is_easy_and_the_whole_text_is_scored(models, capsys):
    out = _eval_json(capsys, str(CAT), "--model", str(models["plain"]))
    assert out["tokens"] == 203 and out["text_tokens"] == 204
    assert out["unknown_rule"] == "oov-excluded"
    assert out["perplexity"] < 10  # the model was trained on this very text


def test_oov_rate_with_made_up_words(models):
    text = "the mice blorfed had a zyzzly general council"
    plain = load_bundle(models["plain"])
    got = evaluate.evaluate_text(plain, Predictor(plain).tokenize(text))
    assert got["oov_rate"] == pytest.approx(2 / 8)
    assert got["unknown"] == 2 and got["tokens"] == 5  # 7 positions after the first, minus the 2 OOV

    valid = load_bundle(models["valid"])  # the LSTM folds rare words into <unk>; the predictor keeps them
    assert valid.vocab.unk_id is not None
    pred = Predictor(valid)
    tokens = pred.tokenize(text)
    train_words = set(evaluate.split_tokens(valid, read_corpus(models["corpus"]))[0])
    oov = [t for t in tokens if t not in train_words]
    assert "blorfed" in oov and "zyzzly" in oov
    got = evaluate.evaluate_text(valid, tokens)
    assert got["unknown_rule"] == "oov-excluded"
    assert got["oov_rate"] == pytest.approx(len(oov) / 8)
    ppl, top1, top5, n = _hand(pred, tokens)
    assert got["tokens"] == n == 7 - sum(1 for t in tokens[1:] if t not in train_words)
    assert got["perplexity"] == pytest.approx(ppl, rel=1e-4)
    assert (got["top1"], got["top5"]) == pytest.approx((top1, top5))


def test_baseline_equals_kneser_ney_run_directly(models, capsys):
    bundle = load_bundle(models["valid"])
    corpus = read_corpus(models["corpus"])
    train_tokens, _ = split_paragraphs(corpus.paragraphs(), list(corpus.tokens), 0.25)
    vocab = Vocab.build(train_tokens)  # every training word, as the predictor's vocabulary
    assert vocab.tokens == Predictor(bundle).vocab.tokens
    kn_train = vocab.encode(train_tokens)
    ids = vocab.encode(corpus.tokens[:60])
    text = models["corpus"].parent / "head.txt"
    text.write_text(" ".join(corpus.tokens[:60]), encoding="utf-8")
    for order in (5, 3):
        direct = KneserNey(order, len(vocab)).fit(kn_train).evaluate(ids, start=1)
        out = _eval_json(capsys, str(text), "--model", str(models["valid"]), "--order", str(order))
        b = out["baseline"]
        assert b["order"] == order
        assert out["tokens"] == direct["tokens"] == 59
        assert b["perplexity"] == pytest.approx(direct["perplexity"], rel=1e-12)
        assert (b["top1"], b["top5"]) == (direct["top1"], direct["top5"])


def test_valid_scores_the_held_out_part(models, capsys):
    bundle = load_bundle(models["valid"])
    corpus = read_corpus(models["corpus"])
    train, valid = split_paragraphs(corpus.paragraphs(), list(corpus.tokens), 0.25)
    assert valid == corpus.tokens[-len(valid):]
    out = _eval_json(capsys, "--valid", "--model", str(models["valid"]))
    assert out["text_tokens"] == len(valid)
    assert out["tokens"] == len(valid) - 1 - sum(1 for t in valid[1:] if t not in set(train))
    assert "validation" in out["source"]
    direct = evaluate.evaluate_text(bundle, valid)
    assert out["perplexity"] == pytest.approx(direct["perplexity"])


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--valid", "--model", "{plain}"], "no validation split"),
        (["--model", "{plain}"], "needs a FILE"),
        (["{cat}", "--valid", "--model", "{valid}"], "not both"),
        (["{cat}", "--order", "0", "--model", "{plain}"], "--order"),
        (["/no/such/file.txt", "--model", "{plain}"], "not found"),
    ],
)
def test_errors_are_one_line(models, capsys, argv, message):
    argv = [a.format(plain=models["plain"], valid=models["valid"], cat=CAT) for a in argv]
    assert main(["eval", *argv, "--json"]) == 2
    cap = capsys.readouterr()
    assert cap.out == ""
    err = cap.err.strip()
    assert err.count("\n") == 0 and err.startswith("story-repl: error:") and message in err


def test_a_changed_training_text_is_refused(models):
    bundle = load_bundle(models["plain"])
    bundle.info["corpus"]["sha256"] = "0" * 64
    bundle.given_text = str(models["corpus"])  # as --corpus passes it
    with pytest.raises(StoryError, match="cat.txt is not the text .* was trained on .sha256 differs."):
        evaluate.training_corpus(bundle)  # what --valid, :eval and another --order read
    with pytest.raises(StoryError, match="is not the text"):
        evaluate.evaluate_text(bundle, ["the", "mice", "had"], order=3)
    with pytest.raises(StoryError, match="scored position"):
        evaluate.evaluate_text(load_bundle(models["plain"]), ["the", "zzz"])


def test_table_report(models, capsys):
    assert main(["eval", str(CAT), "--model", str(models["plain"])]) == 0
    out = capsys.readouterr().out
    assert "perplexity" in out and "Kneser-Ney 5-gram" in out and "top-5" in out
    assert "LSTM (lstm, context 3)" in out and "cache" in out and "weight" in out
    assert "203 positions scored of 204 tokens" in out


# ---- REPL commands --------------------------------------------------------------------------
class FakeSession:
    def __init__(self, path: Path | None):
        self.bundle = load_bundle(path) if path else None
        self.predictor = Predictor(self.bundle) if self.bundle else None
        self.k = 5
        self.shown: list = []

    def out(self, *renderables) -> None:
        self.shown.extend(renderables)

    def text(self) -> str:
        """The rendered output with runs of spaces and line breaks made single spaces."""
        buf = io.StringIO()
        con = Console(file=buf, width=100, color_system=None, highlight=False)
        for r in self.shown:
            con.print(r)
        return " ".join(buf.getvalue().split())


def test_repl_eval_defaults_to_the_validation_part_else_the_training_text(models):
    s = FakeSession(models["valid"])
    analysis.run_command(s, "eval", None)
    out = s.text()
    assert "validation part" in out and "Kneser-Ney 5-gram" in out and "perplexity" in out

    s = FakeSession(models["plain"])
    analysis.run_command(s, "eval", None)
    assert "training text" in s.text() and "203 positions scored" in s.text()

    s = FakeSession(models["plain"])
    analysis.run_command(s, "eval", str(CAT))
    assert "203 positions scored of 204 tokens" in s.text()


def test_repl_score_colours_words_and_marks_unknown_ones(models):
    s = FakeSession(models["plain"])
    analysis.run_command(s, "score", "The mice had a glorbish general council")
    out = s.text()
    assert "the mice had a glorbish general council" in out
    assert "not in the training text" in out and "first word: no context" in out
    assert "perplexity" in out and "over 5 scored words" in out
    res = scores.score_text(s.predictor, "the mice had a general council")
    council = res["words"][-1]
    assert council["word"] == "council" and council["scored"] and council["rank"] == 1
    assert council["bits"] == pytest.approx(-math.log2(council["prob"]))
    # styles: a likely word is green, and the coloured line carries per-word styles
    coloured = s.shown[0].renderables[0]
    styles = {str(sp.style) for sp in coloured.spans}
    assert any("green" in st for st in styles) and any("underline" in st for st in styles)

    s = FakeSession(models["valid"])  # the LSTM has <unk>; scoring is over every training word all the same
    res = scores.score_text(s.predictor, "the mice had a glorbish council")
    assert [w["scored"] for w in res["words"]] == [False, True, True, True, False, True]


def test_repl_vocab_overview_and_one_word(models):
    s = FakeSession(models["plain"])
    analysis.run_command(s, "vocab", None)
    out = s.text()
    assert f"vocabulary: {len(s.bundle.vocab)} words" in out
    assert "training text: 204 tokens" in out and "coverage 100.00%" in out
    assert "top 20 words" in out and " the " in out

    s = FakeSession(models["plain"])
    analysis.run_command(s, "vocab", "General")
    out = s.text()
    assert "general: rank" in out and "seen 2 times " in out
    assert "the model after “general”" in out
    assert "followers in cat" in out and "council" in out

    s = FakeSession(models["valid"])
    analysis.run_command(s, "vocab", None)
    assert "<unk>" in s.text() and "held out for validation" in s.text()
    assert f"vocabulary: {s.predictor.mixture.corpus_size} words" in s.text()
    s = FakeSession(models["valid"])
    analysis.run_command(s, "vocab", "zebrafish")
    assert "not in the training text" in s.text() and "the cache offers it" in s.text()


def test_repl_errors(models):
    with pytest.raises(StoryError, match="no model"):
        analysis.run_command(FakeSession(None), "score", "the mice")
    s = FakeSession(models["plain"])
    with pytest.raises(StoryError, match="one word"):
        analysis.run_command(s, "vocab", "two words")
    with pytest.raises(StoryError, match="no words|needs some"):
        analysis.run_command(s, "score", "   ")
    with pytest.raises(StoryError, match="not found"):
        analysis.run_command(s, "eval", "/no/such/file.txt")


def test_longest_copied_run_is_measured_on_the_training_text(default_bundle):
    from model.text.tokenize import tokenize
    from model.evaluation.memorize import longest_copied_run

    story = tokenize(CAT.read_text(encoding="utf-8"))
    assert longest_copied_run(default_bundle, story[10:40]) == 30  # a stretch of the story itself
    spliced = story[10:17] + ["zzz-never-seen"] + story[100:104]
    assert longest_copied_run(default_bundle, spliced) == 7
