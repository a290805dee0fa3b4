"""Training throughput on tinyshakespeare, per encoder and context length, against the machine's peak.

For each arch (lstm, stacked, bilstm) and each context (3 and 16 by default) the network of
the corpus's recipe (``model.config.resolve``: 512 units, embedding 256, dropout 0.3) is built
with ``model.network.build_network``, compiled as ``model.train.train`` compiles it, and fed by
``model.data.tf_dataset`` batches of 128 windows. After a few warm-up batches (tracing),
a fixed number of batches is timed; each timed batch is synchronised on its loss.

Figures per run: windows (predicted next words) per second, and achieved FLOP/s from the
network's matmul FLOPs (per window: LSTM input and recurrent matmuls over every step, plus
the output layer; training ~ 3x the forward pass), as a fraction of the float32 matmul peak
measured in this run (best of several large numpy matmuls, before and after the runs;
TensorFlow's own matmul peak is reported too).

``--strategy mirrored`` splits the CPU into two logical devices and compares one replica with
two (tf.distribute.MirroredStrategy, same global batch). ``--objective sampled`` measures
sampled softmax (tf.nn.sampled_softmax_loss over the output layer's weights) in a compiled
custom train step beside full softmax. Output: JSON lines on stdout.
"""
from __future__ import annotations

import argparse
import inspect
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from _common import CORPORA, emit, machine_info, median  # noqa: E402

CORPUS = CORPORA / "tinyshakespeare.txt"


# ---- FLOPs ------------------------------------------------------------------------------
def lstm_flops(steps: int, d_in: int, units: int) -> int:
    """Forward matmul FLOPs of one LSTM layer over ``steps`` steps, one sequence."""
    return steps * (2 * d_in * 4 * units + 2 * units * 4 * units)


def forward_flops(arch: str, context: int, emb: int, units: int, out_positions: int, out_classes: int) -> int:
    """Forward matmul FLOPs per window: the encoder, then the output layer over ``out_classes``
    classes (the vocabulary, or the sampled classes) at ``out_positions`` positions."""
    if arch == "lstm":
        enc, h = lstm_flops(context, emb, units), units
    elif arch == "stacked":
        enc, h = lstm_flops(context, emb, units) + lstm_flops(context, units, units), units
    else:
        enc, h = 2 * lstm_flops(context, emb, units), 2 * units
    return enc + out_positions * 2 * h * out_classes


# ---- peak ---------------------------------------------------------------------------------
def numpy_peak(n: int, repeats: int) -> dict:
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    a @ b  # warm-up (thread pool, page faults)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t)
    flops = 2.0 * n**3
    return {"n": n, "repeats": repeats, "best_flops": flops / min(times), "median_flops": flops / median(times)}


def tf_peak(tf, n: int, repeats: int) -> dict:
    a = tf.random.normal((n, n), dtype=tf.float32, seed=1)
    b = tf.random.normal((n, n), dtype=tf.float32, seed=2)
    mm = tf.function(lambda x, y: tf.reduce_sum(tf.matmul(x, y)))  # the sum forces the product, cheaply
    mm(a, b).numpy()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        mm(a, b).numpy()
        times.append(time.perf_counter() - t)
    flops = 2.0 * n**3
    return {"n": n, "repeats": repeats, "best_flops": flops / min(times), "median_flops": flops / median(times)}


# ---- one measurement --------------------------------------------------------------------------
class Prepared:
    """Corpus ids and the resolved recipe for one context length (the vocabulary is shared)."""

    def __init__(self, corpus, context: int, batch: int):
        from model.config import Config
        from model.train import prepare

        self.cfg, self.vocab, self.ids, _ = prepare(corpus, Config(context=context, batch_size=batch))


def is_sequence(cfg) -> bool:
    import model.network as network

    fn = getattr(network, "is_sequence", None)
    return bool(fn(cfg)) if fn is not None else False


def dataset(tf, prep: Prepared, cfg, batch: int, seq: bool, replicas: int):
    from model.data import tf_dataset

    kw = {"sequence": seq} if "sequence" in inspect.signature(tf_dataset).parameters else {}
    ds = tf_dataset(prep.ids, cfg.context, batch, shuffle=True, seed=cfg.seed, **kw).repeat()
    if replicas > 1:
        opts = tf.data.Options()
        opts.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        ds = ds.with_options(opts)
    return ds


def measure_softmax(tf, keras, strategy, prep: Prepared, arch: str, batch: int, warmup: int, batches: int) -> dict:
    """Keras fit as model.train compiles it; seconds of each timed batch, synchronised on its loss."""
    from model.network import build_network, make_optimizer

    cfg = prep.cfg.replace(arch=arch)
    seq = is_sequence(cfg)
    with strategy.scope():
        model = build_network(cfg, len(prep.vocab))
        model.compile(
            optimizer=make_optimizer(cfg),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        )
        model.optimizer.build(model.trainable_variables)
    stamps: list[float] = []

    class Clock(keras.callbacks.Callback):
        def on_train_batch_end(self, i, logs=None):
            float((logs or {}).get("loss", 0.0))  # waits for this batch to finish
            stamps.append(time.perf_counter())

    ds = dataset(tf, prep, cfg, batch, seq, strategy.num_replicas_in_sync)
    t0 = time.perf_counter()
    model.fit(ds, epochs=1, steps_per_epoch=warmup + batches, callbacks=[Clock()], verbose=0, shuffle=False)
    per_batch = [b - a for a, b in zip(stamps[warmup - 1 : -1], stamps[warmup:])]
    out_positions = cfg.context if len(model.output.shape) == 3 else 1
    return {
        "cfg": cfg,
        "seq": seq,
        "first_batches_seconds": stamps[warmup - 1] - t0,
        "per_batch": per_batch,
        "out_positions": out_positions,
        "out_classes": len(prep.vocab),
        "params": int(model.count_params()),
    }


def measure_sampled(tf, keras, strategy, prep: Prepared, arch: str, batch: int, warmup: int, batches: int) -> dict:
    """Sampled softmax over the output layer's weights, in a compiled custom train step."""
    from model.network import build_network, make_optimizer

    cfg = prep.cfg.replace(arch=arch, objective="sampled")
    seq = is_sequence(cfg)
    vocab = len(prep.vocab)
    num_sampled = min(int(cfg.num_sampled), vocab - 1)
    with strategy.scope():
        model = build_network(cfg, vocab)
        dense = model.get_layer("logits")
        encoder = keras.Model(model.input, dense.input)
        optimizer = make_optimizer(cfg)
        optimizer.build(model.trainable_variables)
    variables = model.trainable_variables

    def replica_step(x, y):
        with tf.GradientTape() as tape:
            h = encoder(x, training=True)
            h = tf.reshape(h, (-1, h.shape[-1]))
            labels = tf.reshape(tf.cast(y, tf.int64), (-1, 1))
            per = tf.nn.sampled_softmax_loss(
                weights=tf.transpose(dense.kernel),
                biases=dense.bias,
                labels=labels,
                inputs=h,
                num_sampled=num_sampled,
                num_classes=vocab,
            )
            loss = tf.reduce_sum(per) / tf.cast(tf.shape(per)[0] * strategy.num_replicas_in_sync, tf.float32)
        grads = tape.gradient(loss, variables)
        optimizer.apply_gradients(zip(grads, variables))
        return loss

    @tf.function
    def step(it):
        x, y = next(it)
        per = strategy.run(replica_step, args=(x, y))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per, axis=None)

    ds = dataset(tf, prep, cfg, batch, seq, strategy.num_replicas_in_sync)
    it = iter(strategy.experimental_distribute_dataset(ds))
    t0 = time.perf_counter()
    stamps = []
    for _ in range(warmup + batches):
        float(step(it))
        stamps.append(time.perf_counter())
    per_batch = [b - a for a, b in zip(stamps[warmup - 1 : -1], stamps[warmup:])]
    return {
        "cfg": cfg,
        "seq": seq,
        "first_batches_seconds": stamps[warmup - 1] - t0,
        "per_batch": per_batch,
        "out_positions": cfg.context if seq else 1,
        "out_classes": num_sampled + 1,
        "params": int(model.count_params()),
    }


def record(m: dict, arch: str, objective: str, batch: int, replicas: int) -> dict:
    cfg = m["cfg"]
    sec = median(m["per_batch"])
    fwd = forward_flops(arch, int(cfg.context), int(cfg.embedding_dim), int(cfg.units), m["out_positions"], m["out_classes"])
    train_flops = 3 * fwd * batch
    achieved = train_flops / sec
    return {
        "bench": "throughput",
        "figure": "train",
        "arch": arch,
        "context": cfg.context,
        "objective": objective,
        "replicas": replicas,
        "batch_size": batch,
        "units": cfg.units,
        "embedding_dim": cfg.embedding_dim,
        "dropout": cfg.dropout,
        "vocab_size": m.get("vocab_size"),
        "params": m["params"],
        "targets_per_window": m["out_positions"],
        "timed_batches": len(m["per_batch"]),
        "seconds_per_batch_median": round(sec, 5),
        "seconds_per_batch_min": round(min(m["per_batch"]), 5),
        "warmup_seconds": round(m["first_batches_seconds"], 3),
        "tokens_per_s": round(batch / sec, 1),
        "tokens_per_s_best": round(batch / min(m["per_batch"]), 1),
        # Left-to-right encoders are trained on the next word after every prefix of the window.
        "predictions_per_s": round(batch * m["out_positions"] / sec, 1),
        "gflop_per_batch": round(train_flops / 1e9, 3),
        "achieved_gflops": round(achieved / 1e9, 2),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--archs", default="lstm,stacked,bilstm")
    p.add_argument("--contexts", default="3,16")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--batches", type=int, default=30, help="timed batches per run")
    p.add_argument("--warmup", type=int, default=3, help="untimed batches first (tracing)")
    p.add_argument("--strategy", choices=("default", "mirrored"), default="default")
    p.add_argument("--objective", choices=("softmax", "sampled"), default="softmax",
                   help="sampled: measure sampled softmax beside full softmax")
    p.add_argument("--matmul", type=int, default=4096, help="size of the peak-measuring matmul")
    p.add_argument("--quick", action="store_true", help="a fast smoke run: few batches, small matmul")
    args = p.parse_args(argv)
    if args.quick:
        args.batches, args.warmup, args.matmul = 3, 1, 2048
    archs = [a for a in args.archs.split(",") if a]
    contexts = [int(c) for c in args.contexts.split(",") if c]

    # Logical devices must be configured before anything initialises TensorFlow's runtime.
    import tensorflow as tf

    if args.strategy == "mirrored":
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
        )
    from model.tfload import import_tensorflow

    import_tensorflow()
    import keras

    from model.config import Config
    from model.corpus import read_corpus

    if args.objective == "sampled" and "objective" not in {f for f in Config.__dataclass_fields__}:
        emit({"bench": "throughput", "figure": "skipped", "objective": "sampled", "reason": "Config has no objective field"})
        args.objective = "softmax"

    emit(machine_info("throughput", logical_cpus=[d.name for d in tf.config.list_logical_devices("CPU")]))
    repeats = 3 if args.quick else 5
    peak_np = numpy_peak(args.matmul, repeats)
    peak_tf = tf_peak(tf, args.matmul, repeats)
    emit({"bench": "throughput", "figure": "matmul_peak", "dtype": "float32", "numpy": peak_np, "tensorflow": peak_tf})

    t = time.perf_counter()
    corpus = read_corpus(CORPUS)
    preps = {c: Prepared(corpus, c, args.batch_size) for c in contexts}
    vocab_size = len(next(iter(preps.values())).vocab)
    emit({"bench": "throughput", "figure": "data", "corpus": CORPUS.name, "tokens": len(corpus.tokens),
          "vocab_size": vocab_size, "prepare_seconds": round(time.perf_counter() - t, 2)})

    if args.strategy == "mirrored":
        devices = [d.name for d in tf.config.list_logical_devices("CPU")][:2]
        strategies = [(1, tf.distribute.MirroredStrategy(devices=devices[:1])), (2, tf.distribute.MirroredStrategy(devices=devices))]
    else:
        strategies = [(1, tf.distribute.get_strategy())]
    objectives = ["softmax", "sampled"] if args.objective == "sampled" else ["softmax"]

    results = []
    for context in contexts:
        for arch in archs:
            for objective in objectives:
                for replicas, strat in strategies:
                    keras.utils.set_random_seed(0)
                    fn = measure_sampled if objective == "sampled" else measure_softmax
                    m = fn(tf, keras, strat, preps[context], arch, args.batch_size, args.warmup, args.batches)
                    m["vocab_size"] = vocab_size
                    rec = record(m, arch, objective, args.batch_size, replicas)
                    rec["loop"] = "keras fit" if objective == "softmax" else "custom tf.function"
                    if objective == "sampled":
                        rec["num_sampled"] = m["out_classes"] - 1
                    results.append(rec)
                    emit(rec)
                    keras.backend.clear_session()
    # Measured again after the runs; the better of the two is the peak (the machine may be shared).
    np_again = numpy_peak(args.matmul, repeats)
    tf_again = tf_peak(tf, args.matmul, repeats)
    emit({"bench": "throughput", "figure": "matmul_peak_after", "dtype": "float32", "numpy": np_again, "tensorflow": tf_again})
    peak = max(peak_np["best_flops"], np_again["best_flops"])
    tf_best = max(peak_tf["best_flops"], tf_again["best_flops"])
    emit({"bench": "throughput", "figure": "peak", "numpy_matmul_gflops": round(peak / 1e9, 2),
          "tf_matmul_gflops": round(tf_best / 1e9, 2), "matmul_n": args.matmul})
    for rec in results:
        achieved = rec["achieved_gflops"] * 1e9
        emit({
            **{k: rec[k] for k in ("bench", "arch", "context", "objective", "replicas", "tokens_per_s", "achieved_gflops")},
            "figure": "train_vs_peak",
            "peak_gflops": round(peak / 1e9, 2),
            "fraction_of_peak": round(achieved / peak, 4),
            "fraction_of_tf_matmul_peak": round(achieved / tf_best, 4),
        })
    if len(strategies) > 1:
        by = {(r["arch"], r["context"], r["objective"], r["replicas"]): r for r in results}
        for (arch, ctx, obj, rep), r in by.items():
            if rep == 2 and (arch, ctx, obj, 1) in by:
                one = by[(arch, ctx, obj, 1)]
                emit({"bench": "throughput", "figure": "mirrored_speedup", "arch": arch, "context": ctx, "objective": obj,
                      "tokens_per_s_1_replica": one["tokens_per_s"], "tokens_per_s_2_replicas": r["tokens_per_s"],
                      "speedup": round(r["tokens_per_s"] / one["tokens_per_s"], 3)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
