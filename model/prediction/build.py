"""Building, saving and loading the mixture.

A trained bundle saves the mixture's non-neural parts beside the network: the full
vocabulary (``words.json``), the n-gram (``ngram.npz``, plain arrays) and the weights with
the components' fitted parameters (``mixture.json``). The weights are fitted by EM on
held-out text: the validation split, or the last tenth of the training text when there is
none. A second network (``--partner``) joins as the ``lstm2`` component (:func:`attach_partner`).
"""
from __future__ import annotations

import numpy as np

from model.prediction.components import ORDER, PARTNER, make_component, make_components
from model.prediction.interface import Ingredients
from model.prediction.mixture import Mixture
from model.prediction.ngram import KneserNey
from model.prediction.scoring import FIT_TOKENS, fit_mixture_weights
from model.prediction.weights import Weights, from_saved, saved_form
from model.storage.partners import partner_weights_path, read_weights, write_weights
from model.errors import StoryError
from model.lru import LRU
from model.text.casing import Casing, casing_of_file
from model.text.vocab import Vocab

CASING_FILE = "casing.json"

# The n-gram of a very large text is estimated on its last NGRAM_TOKENS training tokens (about
# 50 bytes a token while counting: ~500 MB here); every training word stays in the vocabulary.
NGRAM_TOKENS = 10_000_000
# A text with at least this many training tokens keeps its fitted n-gram for the next training
# (:mod:`model.storage.ngrams`); a smaller one is fitted again in a fraction of a second.
NGRAM_CACHE_TOKENS = 100_000


def training_split(corpus, valid_fraction: float) -> tuple[list[str], list[str]]:
    """(training tokens, held-out tokens) of a corpus, split as training splits it."""
    train, valid = corpus.split(float(valid_fraction or 0.0))
    words = corpus.words
    return [words[i] for i in train.tolist()], [words[i] for i in valid.tolist()]


def heldout_for_weights(train_tokens: list[str], valid_tokens: list[str]) -> tuple[list[str], str]:
    """The text the weights are fitted on: the validation split, else the training text's last tenth."""
    if len(valid_tokens) >= 2:
        return valid_tokens, "validation split"
    n = len(train_tokens)
    return train_tokens[n - max(2, n // 10) :], "last tenth of the training text"


def training_vocabulary(corpus, valid_fraction: float) -> tuple[Vocab, np.ndarray, np.ndarray, np.ndarray]:
    """(every word of the training part, in frequency order with ties by first appearance;
    the table from corpus ids to that vocabulary's ids; the training and held-out parts as
    corpus ids). The parts are views of the corpus ids (memory-mapped for a large text),
    counted block by block, so that no copy of a large text's ids is made here."""
    from model.text.id_arrays import count_ids

    train, valid = corpus.split(float(valid_fraction or 0.0))
    counts = count_ids(train, len(corpus.words))
    # The training part is the text's beginning, so a word's first appearance in it is its
    # first appearance in the text (``corpus.first``).
    words = Vocab.from_counts(corpus.words, counts, corpus.first)
    return words, words.id_table(corpus.words), train, valid


def _network(config, weights, vocab: Vocab) -> tuple:
    """(numpy network, its vocabulary, context): what a network component is made from."""
    from model.prediction.numpy_net import Network

    return Network(config, weights), vocab, int(config.context)


def ngram_mixture(corpus, config, progress=None) -> Mixture:
    """The n-gram and cache alone (no network yet), weighted by EM on held-out text: what
    completes words while the LSTM of a new corpus trains."""
    return build_components(corpus, config, None, None, progress)


def training_ngram(corpus, config, words: Vocab, table: np.ndarray, train, progress=None) -> KneserNey:
    """The n-gram of the training part (of a very large text, its last NGRAM_TOKENS tokens): for
    a text of NGRAM_CACHE_TOKENS or more, the one kept for this text and split
    (:mod:`model.storage.ngrams`), else fitted (and kept)."""
    from model.storage.ngrams import cached_ngram, keep_ngram, ngram_dir

    where = ngram_dir(corpus, config.valid_fraction, ORDER, NGRAM_TOKENS) if len(train) >= NGRAM_CACHE_TOKENS else None
    kn = cached_ngram(where, words) if where is not None else None
    if kn is None:
        kn = KneserNey(ORDER, vocab_size=len(words)).fit(table[np.asarray(train[-NGRAM_TOKENS:])].astype(np.int64), progress)
        if where is not None:
            keep_ngram(where, kn, words)
    return kn


def build_components(corpus, config, lstm_vocab: Vocab | None, weights: dict[str, np.ndarray] | None, progress=None) -> Mixture:
    """Full vocabulary, n-gram and (with ``weights``) the network; mixture weights fitted by EM.
    ``progress(message, fraction)`` follows the n-gram, then the weights."""
    report = progress or (lambda message, fraction: None)
    report("fitting the n-gram", 0.0)
    words, table, train, valid_ids = training_vocabulary(corpus, config.valid_fraction)
    kn = training_ngram(corpus, config, words, table, train, lambda f: report("fitting the n-gram", 0.3 * f))
    report("fitting the mixture weights", 0.3)
    networks = {"lstm": _network(config, weights, lstm_vocab)} if weights is not None and lstm_vocab is not None else {}
    mix = Mixture(words, make_components(Ingredients(words, kn, networks)))
    if len(valid_ids) >= 2:
        heldout, where = [corpus.words[i] for i in valid_ids[:FIT_TOKENS].tolist()], "validation split"
    else:
        start = len(train) - max(2, len(train) // 10)
        tail = table[np.asarray(train[start : start + FIT_TOKENS])]
        heldout, where = [words.tokens[i] for i in tail.tolist()], "last tenth of the training text"
    mix.weights = fit_mixture_weights(mix, heldout, where, lambda f: report("fitting the mixture weights", 0.3 + 0.6 * f))
    report("fitting the mixture weights", 1.0)
    mix.casing = corpus_casing(corpus, config)
    return mix


_CASINGS: LRU[tuple[str, str, int], Casing] = LRU(4)  # (sha256, encoding, tokens) -> the casing of the text's first tokens


def corpus_casing(corpus, config) -> Casing | None:
    """How the words of a case-folded model's text are written; None for a model that keeps
    case, or when the text cannot be read (the words are then written as they are)."""
    if config.keep_case:
        return None
    try:
        cut = corpus.split_point(float(config.valid_fraction or 0.0))  # the training part only
        casing = _CASINGS.get_or_make((corpus.sha256, corpus.encoding, cut), lambda: casing_of_file(corpus.path, corpus.encoding, cut))
    except (StoryError, OSError, UnicodeError, ValueError):
        return None
    return None if casing.plain else casing


def saved_casing(bundle, words: Vocab) -> Casing | None:
    """The bundle's ``casing.json`` (checked: one line naming it when it fails); without one,
    the casing of its training text where :meth:`Bundle.training_text` finds it, else None."""
    data = bundle.extra(CASING_FILE)
    if data is not None:
        return Casing.from_json(data, words.tokens, bundle.path / CASING_FILE)
    if bundle.config.keep_case or bundle.training_text() is None:
        return None
    try:
        return corpus_casing(bundle.training_corpus(), bundle.config)
    except (StoryError, OSError, UnicodeError, ValueError):
        return None


def extras_of(mix: Mixture) -> dict[str, bytes]:
    """The bundle files of the mixture's non-neural parts (plain JSON and arrays)."""
    import io
    import json

    buf = io.BytesIO()
    np.savez(buf, **mix.ngram.kn.to_arrays())
    words = Vocab(mix.words.tokens[: mix.corpus_size], mix.words.counts[: mix.corpus_size])
    out = {
        "words.json": words.to_json().encode("utf-8"),
        "ngram.npz": buf.getvalue(),
        "mixture.json": json.dumps(saved_form(mix.weights, mix.params()), ensure_ascii=False).encode("utf-8"),
    }
    if getattr(mix, "casing", None) is not None:
        out[CASING_FILE] = mix.casing.to_json(words.tokens)
    return out


def read_extras(bundle) -> tuple[Vocab, KneserNey, Weights, dict] | None:
    """(words, n-gram, weights, the components' parameters) saved in the bundle, or None
    when it has none (an older bundle). Each file is checked field by field where its format
    is read (``words.json`` by the vocabulary, ``ngram.npz`` by :meth:`KneserNey.from_arrays`,
    ``mixture.json`` by :func:`from_saved`); one that fails is one line naming it."""
    from model.errors import StoryError
    from model.storage.untrusted import parse_json, read_npz, visible

    raw = {name: bundle.extra(name) for name in ("words.json", "ngram.npz", "mixture.json")}
    if any(v is None for v in raw.values()):
        return None
    words = _saved_words(raw["words.json"], bundle.path / "words.json")
    ngram = bundle.path / "ngram.npz"
    try:
        kn = KneserNey.from_arrays(read_npz(raw["ngram.npz"], ngram, kinds="fiu"))
    except ValueError as e:
        raise StoryError(f"{visible(ngram)}: {visible(e)}; retrain the model") from None
    if kn.vocab_size != len(words):
        raise StoryError(f"{visible(ngram)}: array 'meta' says {kn.vocab_size} words but words.json has {len(words)}; retrain the model")
    mixture = bundle.path / "mixture.json"
    weights, params = from_saved(parse_json(raw["mixture.json"], mixture), mixture)
    return words, kn, weights, params


def _saved_words(data: bytes, path) -> Vocab:
    """The full vocabulary of ``words.json``; its errors name that file."""
    from model.errors import StoryError
    from model.storage.untrusted import visible

    where = visible(path)
    try:
        return Vocab.from_json(data, source=where)
    except StoryError as e:
        if where in str(e):
            raise
        raise StoryError(f"{where}: {e}") from None


def load_mixture(bundle, partner=None) -> Mixture:
    """The bundle's mixture. A bundle without its components (an older one) gets them built in
    memory from its training text when that text is at hand (:meth:`Bundle.training_text`: the
    text the user passed, a shipped corpus, each checked by sha256); without it, the LSTM alone
    over its own vocabulary (:func:`missing_parts_note` says so). Loading never writes into the
    bundle. ``partner``: another bundle of the same text and split whose network joins as the
    ``lstm2`` component (:func:`attach_partner`)."""
    mix = _load_mixture(bundle)
    if partner is not None:
        attach_partner(mix, bundle, partner)
    return mix


def _check_partner(mix: Mixture, bundle, other) -> dict:
    """The bundle's corpus record, once ``other`` is known to fit as its partner."""
    from model.errors import StoryError

    if mix.neural is None or mix.ngram is None:
        raise StoryError(f"{bundle.path}: a partner network needs a model with its n-gram and network")
    if str(other.path) == str(bundle.path):
        raise StoryError("the partner is the model itself; give another recipe (e.g. --partner stream)")
    mine, theirs = dict(bundle.info.get("corpus") or {}), dict(other.info.get("corpus") or {})
    same = (
        mine.get("sha256")
        and mine.get("sha256") == theirs.get("sha256")
        and float(bundle.config.valid_fraction or 0) == float(other.config.valid_fraction or 0)
        and bool(bundle.config.keep_case) == bool(other.config.keep_case)
    )
    if not same:
        raise StoryError(f"{other.path}: the partner was not trained on the same text, split and case as {bundle.path}")
    return mine


def attach_partner(mix: Mixture, bundle, other) -> None:
    """Add ``other``'s network to ``mix`` as the ``lstm2`` component and refit every weight
    by EM on the same held-out text as the bundle's own. The refit takes seconds on a book,
    so its weights are kept in ``$STORY_REPL_HOME/partners/`` under a digest of both networks
    and of the bundle's saved components; the next load reads them back (an unreadable file
    is refitted and rewritten).

    Two networks of different recipes (the windowed LSTM and the stream LSTM, say) make
    different errors, so their mixture beats either (``bench/keystrokes.py --partner``)."""
    _check_partner(mix, bundle, other)
    ing = Ingredients(mix.words, networks={PARTNER: _network(other.config, other.weights, other.vocab)})
    mix.add(make_component(PARTNER, ing))
    mix.active = list(mix.names)
    saved = partner_weights_path(bundle, other)
    got = read_weights(saved, mix.names)
    if got is None:
        corpus = bundle.training_corpus(need="to fit the weights of a partner network")
        train, valid = training_split(corpus, bundle.config.valid_fraction)
        heldout, where = heldout_for_weights(train, valid)
        weights = fit_mixture_weights(mix, heldout, where)
        write_weights(saved, weights, mix.params())
    else:
        weights, params = got
        mix.load_params(params)
    mix.weights = weights
    mix.version += 1


def _load_mixture(bundle) -> Mixture:
    saved = read_extras(bundle)
    if saved is not None:
        words, kn, weights, params = saved
        networks = {"lstm": _network(bundle.config, bundle.weights, bundle.vocab)}
        mix = Mixture(words, make_components(Ingredients(words, kn, networks)), weights)
        mix.load_params(params)
        mix.casing = saved_casing(bundle, words)
        return mix
    mix = _rebuild(bundle)
    if mix is not None:
        return mix
    words = Vocab([t for t in bundle.vocab.tokens if t != "<unk>"], [c for t, c in zip(bundle.vocab.tokens, bundle.vocab.counts) if t != "<unk>"])
    networks = {"lstm": _network(bundle.config, bundle.weights, bundle.vocab)}
    return Mixture(words, make_components(Ingredients(words, None, networks)))


def _rebuild(bundle) -> Mixture | None:
    """The components of a bundle saved without them, built in memory from its training text
    when that text is at hand; None when it is not. Nothing is written into the bundle."""
    from model.errors import StoryError

    try:
        corpus = bundle.training_corpus()
    except StoryError:
        return None
    return build_components(corpus, bundle.config, bundle.vocab, bundle.weights)


def missing_parts_note(bundle, mix: Mixture) -> str | None:
    """One line for the user when ``bundle`` came without its n-gram and the LSTM answers alone:
    which text rebuilds it and how to pass it. None when the mixture is whole."""
    if bundle is None or mix.ngram is not None:
        return None
    from model.storage.origin import missing_text
    from model.storage.untrusted import visible

    why = str(missing_text(bundle, "to rebuild them"))
    return f"{visible(bundle.path.name)} has no n-gram (words.json, ngram.npz, mixture.json), so the LSTM answers alone: {why}"
