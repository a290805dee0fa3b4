"""Training speed on belling_the_cat: the seed tutorial's recipe against story-repl's default.

Reference: the training loop of the tutorial "LSTM by Example using TensorFlow", re-implemented
in TensorFlow 2 / Keras 3 with a compiled (tf.function) train step:

- vocabulary: the whitespace-split words ranked by frequency (``Counter.most_common``), 112 words;
- input: three word ids fed as floats, no embedding, shape (1, 3, 1);
- network: one 512-unit LSTM (TF1 ``BasicLSTMCell``: Glorot-uniform weights over the stacked
  input+recurrent kernel, zero bias plus forget bias 1.0), then a dense layer to 112 logits
  whose weights and bias are drawn from N(0, 1) like the tutorial's ``tf.random_normal``;
- loss: softmax cross-entropy; optimizer: RMSProp, lr 0.001, with TF1's update rule by default
  (mean-square accumulator started at 1.0, epsilon 1e-10 inside the square root);
- the train step is one plain-graph tf.function, run once per step as the tutorial's
  ``session.run`` was (--jit compiles it with XLA, which the tutorial did not);
- one 3-word window per step; ``offset += n_input + 1`` after each step, and
  ``if offset > len(training_data) - end_offset: offset = random.randint(0, n_input + 1)``;
- accuracy of each step is measured on the step's own forward pass (before its update) and
  averaged over blocks of 1,000 steps.

It runs until the first 1,000-step average accuracy reaches 0.88 (capped at 50,000 steps).

Ours: ``model.training.train.train`` with the default ``Config()``; ``TrainResult.train_seconds`` is the
training loop only, until the accuracy ceiling (199 of 201 windows) is reached.

Output: JSON lines on stdout (machine, reference, ours, ratio).
"""
from __future__ import annotations

from _common import CORPORA, emit, machine_info, median  # first: sets sys.path, BLAS, TF logging

import argparse
import collections
import math
import random
import sys
import time

CORPUS = CORPORA / "belling_the_cat.txt"
N_INPUT = 3
N_HIDDEN = 512
LR = 0.001
DISPLAY_STEP = 1000
TARGET = 0.88


def read_data(path) -> list[str]:
    """The tutorial's ``read_data``: every line stripped and split on whitespace, flattened."""
    with open(path, encoding="utf-8") as fh:
        content = [x.strip() for x in fh.readlines()]
    return [w for line in content for w in line.split()]


def build_dataset(words: list[str]) -> dict[str, int]:
    """The tutorial's ``build_dataset``: word -> rank in ``Counter.most_common()``."""
    dictionary: dict[str, int] = {}
    for word, _ in collections.Counter(words).most_common():
        dictionary[word] = len(dictionary)
    return dictionary


def reference(max_steps: int, seed: int, jit: bool, optimizer: str) -> dict:
    from model.training.tfload import import_tensorflow

    tf = import_tensorflow()
    import keras
    import numpy as np

    random.seed(seed)
    keras.utils.set_random_seed(seed)
    training_data = read_data(CORPUS)
    dictionary = build_dataset(training_data)
    vocab_size = len(dictionary)
    data = np.asarray([dictionary[w] for w in training_data], dtype=np.int32)

    # TF1 initialised the cell's single (input + units, 4 units) kernel with Glorot-uniform.
    limit = math.sqrt(6.0 / (1 + N_HIDDEN + 4 * N_HIDDEN))
    uni = keras.initializers.RandomUniform(-limit, limit, seed=seed)
    model = keras.Sequential(
        [
            keras.Input(shape=(N_INPUT, 1)),
            keras.layers.LSTM(
                N_HIDDEN,
                kernel_initializer=uni,
                recurrent_initializer=keras.initializers.RandomUniform(-limit, limit, seed=seed + 1),
                unit_forget_bias=True,  # zero bias + forget bias 1.0, as BasicLSTMCell
                unroll=True,
            ),
            keras.layers.Dense(
                vocab_size,
                kernel_initializer=keras.initializers.RandomNormal(stddev=1.0, seed=seed + 2),
                bias_initializer=keras.initializers.RandomNormal(stddev=1.0, seed=seed + 3),
            ),
        ]
    )
    variables = model.trainable_variables

    if optimizer == "tf1":
        # tf.compat.v1.train.RMSPropOptimizer(0.001): decay 0.9, momentum 0, epsilon 1e-10,
        # ms slot initialised to ones; ms += (g^2 - ms) * (1 - decay); var -= lr * g / sqrt(ms + eps)
        slots = [tf.Variable(tf.ones(v.shape, tf.float32), trainable=False) for v in variables]

        def apply(grads):
            for v, g, ms in zip(variables, grads, slots):
                ms.assign_add((tf.square(g) - ms) * 0.1)
                v.assign_sub(LR * g / tf.sqrt(ms + 1e-10))

    else:
        opt = keras.optimizers.RMSprop(learning_rate=LR)
        opt.build(variables)

        def apply(grads):
            opt.apply_gradients(zip(grads, variables))

    @tf.function(jit_compile=jit)
    def train_step(x, y):
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
        grads = tape.gradient(loss, variables)
        apply(grads)
        correct = tf.equal(tf.argmax(logits, 1, output_type=tf.int32), y)
        return loss, tf.reduce_mean(tf.cast(correct, tf.float32))

    # ---- the tutorial's loop -------------------------------------------------------------
    step = 0
    offset = random.randint(0, N_INPUT + 1)
    end_offset = N_INPUT + 1
    acc_total = 0.0
    loss_total = 0.0
    blocks: list[float] = []
    block_losses: list[float] = []
    reached_at = None
    first_step_s = None
    t0 = time.perf_counter()
    while step < max_steps:
        if offset > (len(training_data) - end_offset):
            offset = random.randint(0, N_INPUT + 1)
        x = data[offset : offset + N_INPUT].astype(np.float32).reshape(1, N_INPUT, 1)
        y = data[offset + N_INPUT : offset + N_INPUT + 1]
        loss, acc = train_step(x, y)
        if first_step_s is None:
            first_step_s = time.perf_counter() - t0
        loss_total += float(loss)
        acc_total += float(acc)
        if (step + 1) % DISPLAY_STEP == 0:
            blocks.append(acc_total / DISPLAY_STEP)
            block_losses.append(loss_total / DISPLAY_STEP)
            acc_total = 0.0
            loss_total = 0.0
            if blocks[-1] >= TARGET:
                reached_at = step + 1
                step += 1
                break
        step += 1
        offset += N_INPUT + 1
    seconds = time.perf_counter() - t0
    return {
        "bench": "train_speed",
        "figure": "reference",
        "recipe": "seed tutorial: raw ids (1,3,1), LSTM 512, dense softmax, RMSProp lr 0.001, one window per step",
        "optimizer_rule": "tf1 RMSProp (ms init 1, eps 1e-10)" if optimizer == "tf1" else "keras RMSprop",
        "jit_compile": jit,
        "vocab_size": vocab_size,
        "n_words": len(training_data),
        "target_block_accuracy": TARGET,
        "reached": reached_at is not None,
        "steps": step,
        "max_steps": max_steps,
        "seconds": round(seconds, 3),
        "first_step_seconds": round(first_step_s or 0.0, 3),
        "ms_per_step": round(1000 * seconds / max(step, 1), 4),
        "final_block_accuracy": round(blocks[-1], 4) if blocks else None,
        "block_accuracies": [round(a, 3) for a in blocks],
        "block_losses": [round(v, 3) for v in block_losses],
    }


def ours(repeats: int) -> dict:
    from model.config import Config
    from model.text.corpus import read_corpus
    from model.training.train import train

    corpus = read_corpus(CORPUS)
    runs = []
    for _ in range(repeats):
        result = train(corpus, Config())
        n = len(corpus.tokens) - int(result.config.context)
        runs.append(
            {
                "train_seconds": round(result.train_seconds, 3),
                "epochs": result.epochs,
                "correct": int(round(result.accuracy * n)),
                "windows": n,
                "ceiling_correct": int(round(result.ceiling * n)),
                "reached_ceiling": result.accuracy >= result.ceiling - 1e-9,
                "stop_reason": result.stop_reason,
            }
        )
    cfg = result.config
    return {
        "bench": "train_speed",
        "figure": "ours",
        "recipe": f"Config() -> {cfg.arch}, context {cfg.context}, units {cfg.units}, embedding {cfg.embedding_dim}, "
        f"{cfg.optimizer} lr {cfg.lr:g}, batch {'whole text' if cfg.batch_size is None else cfg.batch_size}, "
        f"max {cfg.epochs} epochs",
        "vocab_size": len(result.vocab),
        "repeats": repeats,
        "train_seconds": median(r["train_seconds"] for r in runs),
        "reached_ceiling": all(r["reached_ceiling"] for r in runs),
        "runs": runs,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--max-steps", type=int, default=50_000, help="cap on reference steps (default 50000)")
    p.add_argument("--ours-only", action="store_true", help="skip the reference")
    p.add_argument("--reference-only", action="store_true", help="skip ours")
    p.add_argument("--repeats", type=int, default=1, help="runs of ours (the median is reported)")
    p.add_argument("--seed", type=int, default=0, help="seed of the reference run")
    p.add_argument(
        "--jit",
        dest="jit",
        action="store_true",
        help="XLA-compile the reference train step (default: a plain graph, as the tutorial ran it)",
    )
    p.add_argument(
        "--optimizer",
        choices=("tf1", "keras"),
        default="tf1",
        help="reference RMSProp update: TF1's (default, as the tutorial ran) or Keras 3's",
    )
    args = p.parse_args(argv)

    from model.training.tfload import import_tensorflow

    import_tensorflow()
    emit(machine_info("train_speed"))
    ref = None
    if not args.ours_only:
        ref = reference(args.max_steps, args.seed, args.jit, args.optimizer)
        emit(ref)
    mine = None
    if not args.reference_only:
        mine = ours(max(1, args.repeats))
        emit(mine)
    if ref is not None and mine is not None:
        emit(
            {
                "bench": "train_speed",
                "figure": "ratio",
                "reference_seconds": ref["seconds"],
                "ours_seconds": mine["train_seconds"],
                "reference_over_ours": round(ref["seconds"] / max(mine["train_seconds"], 1e-9), 2),
                "reference_reached_target": ref["reached"],
                "ours_reached_ceiling": mine["reached_ceiling"],
                # A reference that stopped at the step cap never reached its target: the ratio is a lower bound.
                "ratio_is_lower_bound": not ref["reached"],
            }
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
