"""Keras networks over a context window: embedding -> encoder -> dense logits over the vocabulary.

Input ids are vocabulary ids shifted by one; 0 is padding, masked out, so a short context reads
like a shorter sequence. Encoders: ``lstm`` (one layer, the seed tutorial's model), ``stacked``
(two), ``bilstm`` (forward and backward, final states concatenated) and ``stream`` (two layers,
trained as parallel streams by :mod:`model.training.stream`, the output layer optionally tied to
the embedding: :class:`TiedEmbedding`). The network reads only the context words, never the word
it predicts. Importing this module imports TensorFlow; the REPL does so only to train.
"""
from __future__ import annotations

from model.training.tfload import import_tensorflow

import_tensorflow()

import keras  # noqa: E402
from keras import layers  # noqa: E402

from keras import ops  # noqa: E402

from model.config import Config  # noqa: E402

UNROLL_MAX = 8
PAD = 0  # input id of padding; vocabulary id i is fed as i + 1
CLIPNORM = 1.0  # stream: global gradient norm clip (recurrent nets over long streams can spike)


@keras.saving.register_keras_serializable(package="story_repl", name="TiedEmbedding")
class TiedEmbedding(layers.Layer):
    """An embedding whose transpose is also the output layer (weight tying).

    ``layer(ids)`` embeds (B, T) input ids (0 = padding, masked) to (B, T, D);
    ``layer(h, reverse=True)`` maps (..., D) hidden states to (..., V) logits with
    ``h @ embeddings[1:].T + bias``: row 0 is padding, so logit ``i`` is vocabulary id ``i``,
    exactly like the untied Dense output. One matrix instead of two halves the output
    layer's parameters and lets each word's input and output vectors learn from each other.
    """

    def __init__(self, input_dim: int, output_dim: int, **kwargs):
        super().__init__(**kwargs)
        self.input_dim, self.output_dim = int(input_dim), int(output_dim)

    def build(self, input_shape=None) -> None:
        self.embeddings = self.add_weight(
            shape=(self.input_dim, self.output_dim), initializer=keras.initializers.RandomUniform(-0.1, 0.1), name="embeddings"
        )
        self.bias = self.add_weight(shape=(self.input_dim - 1,), initializer="zeros", name="bias")

    def call(self, inputs, reverse: bool = False):
        if not reverse:
            return ops.take(self.embeddings, inputs, axis=0)
        return ops.matmul(inputs, ops.transpose(self.embeddings[1:])) + self.bias

    def compute_mask(self, inputs, previous_mask=None):
        """Embedding ids: padding is masked, as ``Embedding(mask_zero=True)`` does; logits: no mask."""
        if "int" in str(inputs.dtype):
            return ops.not_equal(inputs, PAD)
        return None

    def compute_output_spec(self, inputs, reverse: bool = False):
        if reverse:
            return keras.KerasTensor(tuple(inputs.shape[:-1]) + (self.input_dim - 1,), dtype=self.compute_dtype)
        return keras.KerasTensor(tuple(inputs.shape) + (self.output_dim,), dtype=self.compute_dtype)

    def get_config(self) -> dict:
        return {**super().get_config(), "input_dim": self.input_dim, "output_dim": self.output_dim}


def is_sequence(config: Config) -> bool:
    """Left-to-right encoders predict the next word after every prefix of the window.

    The state after j words of a window is exactly the state for a j-word context (padding
    is masked), so one pass trains every context length 1..N at once: short contexts at
    inference are then as good as full ones. The bidirectional encoder reads the whole
    window in both directions, so it predicts only after the full window.
    """
    return config.arch in ("lstm", "stacked", "stream")


def build_stream_network(config: Config, vocab_size: int) -> keras.Model:
    """(batch, any length) int32 ids+1 -> (batch, length, vocab) logits, two LSTM layers.

    The LSTM layers also return their final (h, c) state: the functional model ignores it,
    and :mod:`model.training.stream` calls the layers with an initial state to carry it across batches."""
    assert config.embedding_dim is not None and config.units is not None
    inp = keras.Input(shape=(None,), dtype="int32", name="context")
    drop = float(config.dropout or 0.0)
    if config.tie_weights:
        embed = TiedEmbedding(vocab_size + 1, config.embedding_dim, name="embedding")
    else:
        embed = layers.Embedding(vocab_size + 1, config.embedding_dim, mask_zero=True, name="embedding")
    x = embed(inp)
    if drop:
        x = layers.Dropout(drop, name="embedding_dropout")(x)
    x, _, _ = layers.LSTM(config.units, return_sequences=True, return_state=True, name="lstm_1")(x)
    if drop:
        x = layers.Dropout(drop, name="between_dropout")(x)
    x, _, _ = layers.LSTM(config.units, return_sequences=True, return_state=True, name="lstm_2")(x)
    if drop:
        x = layers.Dropout(drop, name="encoder_dropout")(x)
    logits = embed(x, reverse=True) if config.tie_weights else layers.Dense(vocab_size, name="logits")(x)
    return keras.Model(inp, logits, name="story_stream")


def build_network(config: Config, vocab_size: int) -> keras.Model:
    """(batch, context) int32 ids+1 -> logits: (batch, context, vocab) for left-to-right
    encoders (a prediction after each prefix; the last one is the next word), else (batch, vocab)."""
    if config.arch == "stream":
        return build_stream_network(config, vocab_size)
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
    clip = {"global_clipnorm": CLIPNORM} if config.arch == "stream" else {}
    if config.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate=lr, **clip)
    if config.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate=lr, **clip)
    return keras.optimizers.SGD(learning_rate=lr, momentum=0.9, nesterov=True, **clip)


def export_weights(model: keras.Model, config: Config) -> dict:
    """Weights as plain numpy arrays under stable names, for the TensorFlow-free predictor."""
    out = {"embedding": model.get_layer("embedding").get_weights()[0]}

    def lstm(prefix: str, layer) -> None:
        k, r, b = layer.get_weights()
        out[f"{prefix}/kernel"], out[f"{prefix}/recurrent"], out[f"{prefix}/bias"] = k, r, b

    if config.arch == "lstm":
        lstm("lstm", model.get_layer("lstm"))
    elif config.arch in ("stacked", "stream"):
        lstm("lstm_1", model.get_layer("lstm_1"))
        lstm("lstm_2", model.get_layer("lstm_2"))
    else:
        bi = model.get_layer("bilstm")
        lstm("forward", bi.forward_layer)
        lstm("backward", bi.backward_layer)
    if config.arch == "stream" and config.tie_weights:  # the output kernel is embedding[1:].T: not stored twice
        out["logits/bias"] = model.get_layer("embedding").get_weights()[1]
        return out
    w, b = model.get_layer("logits").get_weights()
    out["logits/kernel"], out["logits/bias"] = w, b
    return out
