"""Keras networks over a context window: embedding -> encoder -> dense logits over the vocabulary.

Input ids are vocabulary ids shifted by one; 0 is padding, masked out, so a context shorter
than the window is read exactly like a shorter sequence. The encoder is one of

- ``lstm``: one LSTM layer (the seed tutorial's model);
- ``stacked``: two LSTM layers (the seed's "improved LSTM");
- ``bilstm``: forward and backward LSTMs over the context words, final states concatenated.

The network only ever reads the context words, never the word it predicts.
Importing this module imports TensorFlow; the REPL only does so when it must train.
"""
from __future__ import annotations

from model.tfload import import_tensorflow

import_tensorflow()

import keras  # noqa: E402
from keras import layers  # noqa: E402

from model.config import Config  # noqa: E402

UNROLL_MAX = 8
PAD = 0  # input id of padding; vocabulary id i is fed as i + 1


def is_sequence(config: Config) -> bool:
    """Left-to-right encoders predict the next word after every prefix of the window.

    The state after j words of a window is exactly the state for a j-word context (padding
    is masked), so one pass trains every context length 1..N at once: short contexts at
    inference are then as good as full ones. The bidirectional encoder reads the whole
    window in both directions, so it predicts only after the full window.
    """
    return config.arch in ("lstm", "stacked")


def build_network(config: Config, vocab_size: int) -> keras.Model:
    """(batch, context) int32 ids+1 -> logits: (batch, context, vocab) for left-to-right
    encoders (a prediction after each prefix; the last one is the next word), else (batch, vocab)."""
    assert config.context is not None and config.embedding_dim is not None
    inp = keras.Input(shape=(config.context,), dtype="int32", name="context")
    x = layers.Embedding(vocab_size + 1, config.embedding_dim, mask_zero=True, name="embedding")(inp)
    drop = float(config.dropout or 0.0)
    unroll = config.context <= UNROLL_MAX  # short windows: an unrolled graph is faster than a loop
    if drop:
        x = layers.Dropout(drop, name="embedding_dropout")(x)
    if config.arch == "lstm":
        x = layers.LSTM(config.units, return_sequences=True, unroll=unroll, name="lstm")(x)
    elif config.arch == "stacked":
        x = layers.LSTM(config.units, return_sequences=True, unroll=unroll, name="lstm_1")(x)
        if drop:
            x = layers.Dropout(drop, name="between_dropout")(x)
        x = layers.LSTM(config.units, return_sequences=True, unroll=unroll, name="lstm_2")(x)
    elif config.arch == "bilstm":
        x = layers.Bidirectional(layers.LSTM(config.units, unroll=unroll), merge_mode="concat", name="bilstm")(x)
    else:  # pragma: no cover - Config validates arch
        raise ValueError(config.arch)
    if drop:
        x = layers.Dropout(drop, name="encoder_dropout")(x)
    logits = layers.Dense(vocab_size, name="logits")(x)
    return keras.Model(inp, logits, name=f"story_{config.arch}")


def last_logits(model: keras.Model, ids, training: bool = False):
    """(batch, vocab) logits for the word after the full window."""
    out = model(ids, training=training)
    return out[:, -1, :] if len(out.shape) == 3 else out


def make_optimizer(config: Config) -> keras.optimizers.Optimizer:
    lr = float(config.lr)
    if config.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate=lr)
    if config.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate=lr)
    return keras.optimizers.SGD(learning_rate=lr, momentum=0.9, nesterov=True)


def export_weights(model: keras.Model, config: Config) -> dict:
    """Weights as plain numpy arrays under stable names, for the TensorFlow-free predictor."""
    out = {"embedding": model.get_layer("embedding").get_weights()[0]}

    def lstm(prefix: str, layer) -> None:
        k, r, b = layer.get_weights()
        out[f"{prefix}/kernel"], out[f"{prefix}/recurrent"], out[f"{prefix}/bias"] = k, r, b

    if config.arch == "lstm":
        lstm("lstm", model.get_layer("lstm"))
    elif config.arch == "stacked":
        lstm("lstm_1", model.get_layer("lstm_1"))
        lstm("lstm_2", model.get_layer("lstm_2"))
    else:
        bi = model.get_layer("bilstm")
        lstm("forward", bi.forward_layer)
        lstm("backward", bi.backward_layer)
    w, b = model.get_layer("logits").get_weights()
    out["logits/kernel"], out["logits/bias"] = w, b
    return out
