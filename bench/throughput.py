"""Training throughput on tinyshakespeare, per encoder and context length, against the machine's peak.

For each arch (lstm, stacked, bilstm) and each context (3 and 16 by default) the network of
the corpus's recipe (``model.config.resolve``: 512 units, embedding 256, dropout 0.3) is built
with ``model.training.network.build_network``, compiled as ``model.training.train.train`` compiles it, and fed by
the pipeline ``model.training.train`` uses (``model.training.distribute.train_dataset``), batches of 128 windows.
After a few warm-up batches (tracing), a fixed number of batches is timed; each timed batch
is synchronised on its loss.

Figures per run: windows (predicted next words) per second, and achieved FLOP/s from the
network's matmul FLOPs (per window: LSTM input and recurrent matmuls over every step, plus
the output layer; training ~ 3x the forward pass; the sampled objective's loop also computes
full logits, forward only, for its running accuracy), as a fraction of the float32 matmul peak
measured in this run (best of several large numpy matmuls, before and after the runs;
TensorFlow's own matmul peak is reported too).

``--strategy mirrored`` splits the CPU into two logical devices and compares one replica with
two (tf.distribute.MirroredStrategy, same global batch). ``--objective sampled`` measures
sampled softmax beside full softmax, with the loop model.training.train uses for it
(``model.training.sampled.fit_sampled``, one device). Output: JSON lines on stdout.
"""
from __future__ import annotations

from _common import CORPORA, emit, machine_info, median  # first: sets sys.path, BLAS, TF logging

import argparse
import inspect
import sys
import time

CORPUS = CORPORA / "tinyshakespeare.txt"


# ---- FLOPs ------------------------------------------------------------------------------
def lstm_flops(steps: int, d_in: int, units: int) -> int:
    """Forward matmul FLOPs of one LSTM layer over ``steps`` steps, one sequence."""
    return steps * (2 * d_in * 4 * units + 2 * units * 4 * units)


def train_flops_per_window(arch: str, context: int, emb: int, units: int, out_positions: int,
                           out_classes: int, extra_forward_classes: int = 0) -> int:
    """Training matmul FLOPs per window: 3x the forward pass of the encoder and of the output
    layer (over ``out_classes`` classes at ``out_positions`` positions), plus forward-only
    output work over ``extra_forward_classes`` classes (e.g. full logits for a running accuracy)."""
    if arch == "lstm":
        enc, h = lstm_flops(context, emb, units), units
    elif arch == "stacked":
        enc, h = lstm_flops(context, emb, units) + lstm_flops(context, units, units), units
    else:
        enc, h = 2 * lstm_flops(context, emb, units), 2 * units
    out = out_positions * 2 * h * out_classes
    extra = out_positions * 2 * h * extra_forward_classes
    return 3 * (enc + out) + extra


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
        from model.training.train import prepare

        self.cfg, self.vocab, self.ids, _ = prepare(corpus, Config(context=context, batch_size=batch))


def is_sequence(cfg) -> bool:
    import model.training.network as network

    fn = getattr(network, "is_sequence", None)
    return bool(fn(cfg)) if fn is not None else False


def dataset(tf, prep: Prepared, cfg, batch: int, seq: bool, replicas: int):
    """The training pipeline model.training.train uses for this recipe (mini-batches of windows)."""
    import model.training.data as data

    try:
        from model.training.distribute import train_dataset

        ds = train_dataset(prep.ids, cfg.context, batch, cfg.seed, sequence=seq)
    except ImportError:
        kw = {"sequence": seq} if "sequence" in inspect.signature(data.tf_dataset).parameters else {}
        ds = data.tf_dataset(prep.ids, cfg.context, batch, shuffle=True, seed=cfg.seed, **kw).repeat()
    truncate = getattr(data, "truncate_randomly", None)
    if not seq and truncate is not None:  # as model.training.train: short contexts for the bidirectional encoder
        ds = ds.map(lambda a, b: (truncate(a, cfg.seed), b))
    if replicas > 1:
        opts = tf.data.Options()
        opts.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        ds = ds.with_options(opts)
    return ds


def sampled_loop():
    """model.training.sampled.fit_sampled, or None where this version has no sampled-softmax training."""
    try:
        from model.training.sampled import fit_sampled
    except ImportError:
        return None
    return fit_sampled


def measure(tf, keras, strategy, prep: Prepared, arch: str, objective: str, batch: int, warmup: int, batches: int) -> dict:
    """Train as model.training.train does (Keras fit for softmax, model.training.sampled.fit_sampled for sampled
    softmax); seconds of each timed batch, synchronised on its loss."""
    from model.training.network import build_network, make_optimizer

    cfg = prep.cfg.replace(arch=arch, objective=objective)
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
    steps = warmup + batches
    t0 = time.perf_counter()
    vocab = len(prep.vocab)
    if objective == "sampled":
        sampled_loop()(model, cfg, ds, steps, 1, [Clock()])
        num_sampled = max(1, min(int(cfg.num_sampled), vocab - 1))
        # The sampled loss trains over the true word and the sampled ones; the loop also
        # computes full logits (forward only) for its running accuracy.
        out_classes, extra = num_sampled + 1, vocab
    else:
        model.fit(ds, epochs=1, steps_per_epoch=steps, callbacks=[Clock()], verbose=0, shuffle=False)
        out_classes, extra = vocab, 0
    per_batch = [b - a for a, b in zip(stamps[warmup - 1 : -1], stamps[warmup:])]
    out_positions = cfg.context if len(model.output.shape) == 3 else 1
    flops = train_flops_per_window(
        arch, int(cfg.context), int(cfg.embedding_dim), int(cfg.units), out_positions, out_classes, extra
    )
    return {
        "cfg": cfg,
        "seq": seq,
        "first_batches_seconds": stamps[warmup - 1] - t0,
        "per_batch": per_batch,
        "out_positions": out_positions,
        "train_flops_per_window": flops,
        "params": int(model.count_params()),
        "num_sampled": out_classes - 1 if objective == "sampled" else None,
    }


def record(m: dict, arch: str, objective: str, batch: int, replicas: int) -> dict:
    cfg = m["cfg"]
    sec = median(m["per_batch"])
    train_flops = m["train_flops_per_window"] * batch
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
    from model.training.tfload import import_tensorflow

    import_tensorflow()
    import keras

    from model.config import Config
    from model.text.corpus import read_corpus

    if args.objective == "sampled":
        reason = None
        if "objective" not in Config.__dataclass_fields__:
            reason = "Config has no objective field"
        elif sampled_loop() is None:
            reason = "this version has no sampled-softmax training loop (model.training.sampled)"
        if reason:
            emit({"bench": "throughput", "figure": "skipped", "objective": "sampled", "reason": reason})
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
                runs = strategies
                if objective == "sampled":
                    # model.training.train runs sampled softmax on one device only (--strategy default).
                    runs = [(1, tf.distribute.get_strategy())]
                    if len(strategies) > 1:
                        emit({"bench": "throughput", "figure": "skipped", "arch": arch, "context": context,
                              "objective": objective, "replicas": 2,
                              "reason": "model.training.train trains the sampled objective on one device only"})
                for replicas, strat in runs:
                    keras.utils.set_random_seed(0)
                    m = measure(tf, keras, strat, preps[context], arch, objective, args.batch_size, args.warmup, args.batches)
                    m["vocab_size"] = vocab_size
                    rec = record(m, arch, objective, args.batch_size, replicas)
                    rec["loop"] = "keras fit" if objective == "softmax" else "model.training.sampled.fit_sampled"
                    if objective == "sampled":
                        rec["num_sampled"] = m["num_sampled"]
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
            # From the fastest timed batch: less sensitive to other work on a shared machine.
            "fraction_of_peak_best_batch": round(rec["gflop_per_batch"] * 1e9 / rec["seconds_per_batch_min"] / peak, 4),
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
