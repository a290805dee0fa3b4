"""Sampled softmax training: a cheaper objective when the vocabulary is large.

The full softmax costs O(vocab) per predicted word, forward and backward: at 10,000+ words
it dominates training. Sampled softmax scores the true word against ``num_sampled`` words
drawn from a log-uniform (Zipfian) distribution over frequency-ranked ids, which matches
the vocabulary's order. Only training uses it; the saved network is unchanged and
prediction, evaluation and validation loss use the full softmax.
"""
from __future__ import annotations

ACC_ROWS = 128  # predictions per batch used for the running accuracy


def fit_sampled(model, config, train_data, steps: int, epochs: int, callbacks: list, val_data=None) -> int:
    """Train ``model`` with sampled softmax, driving ``callbacks`` as ``fit`` would. Returns epochs run."""
    import keras
    import tensorflow as tf

    from model.training.callbacks import drive_epochs

    dense = model.get_layer("logits")
    encoder = keras.Model(model.input, dense.input)  # ids -> hidden states feeding the output layer
    vocab = int(dense.units)
    num_sampled = max(1, min(int(config.num_sampled), vocab - 1))
    optimizer = model.optimizer
    variables = model.trainable_variables

    @tf.function(reduce_retracing=True)
    def step(x, y):
        with tf.GradientTape() as tape:
            h = encoder(x, training=True)  # (B, C, U) or (B, U)
            units = tf.shape(h)[-1]
            h2 = tf.reshape(h, (-1, units))
            labels = tf.reshape(tf.cast(y, tf.int64), (-1, 1))
            loss = tf.reduce_mean(
                tf.nn.sampled_softmax_loss(
                    weights=tf.transpose(dense.kernel),  # (vocab, units)
                    biases=dense.bias,
                    labels=labels,
                    inputs=h2,
                    num_sampled=num_sampled,
                    num_classes=vocab,
                    remove_accidental_hits=True,
                    seed=config.seed,
                )
            )
        grads = tape.gradient(loss, variables)
        optimizer.apply_gradients(zip(grads, variables))
        # Running accuracy on a slice of the batch: the full output layer is what sampling avoids.
        logits = h2[:ACC_ROWS] @ dense.kernel + dense.bias
        acc = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, -1), labels[:ACC_ROWS, 0]), tf.float32))
        return loss, acc

    it = iter(train_data)

    def validate() -> float:
        return float(model.evaluate(val_data, verbose=0, return_dict=True)["loss"])

    return drive_epochs(model, callbacks, epochs, lambda epoch: range(steps), lambda _: step(*next(it)),
                        validate if val_data is not None else None)
