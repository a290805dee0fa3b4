"""Looking at the model: ``:info``, ``:history``, ``:eval``, ``:score``, ``:vocab``."""
from __future__ import annotations

import math

from model.errors import StoryError
from repl import render
from repl.handlers.components import components_line


class InspectCommands:
    def do_info(self, arg) -> None:
        self.show_info()

    def do_history(self, arg) -> None:
        self.out(render.history_charts(self.last_history))

    def do_eval(self, arg) -> None:
        from repl.analysis import run_command

        run_command(self, "eval", arg)

    def do_score(self, arg) -> None:
        from repl.analysis import run_command

        run_command(self, "score", arg)

    def do_vocab(self, arg) -> None:
        from repl.analysis import run_command

        run_command(self, "vocab", arg)

    def show_info(self) -> None:
        b = self.bundle
        if b is None:
            raise StoryError("no model is loaded yet")
        pred_words = self.predictor.mixture.corpus_size if self.predictor is not None else len(b.vocab)
        m = b.metrics
        acc = m.get("accuracy")
        ceil = m.get("ceiling")
        cfg = b.config
        rows = [
            ("corpus", f"{b.corpus_name} ({b.info.get('corpus', {}).get('tokens', '?')} tokens, sha256 {b.corpus_sha256[:12]})"),
            ("vocabulary", f"{pred_words} words completable (every training word); the LSTM's own: {len(b.vocab)}"),
            ("components", components_line(self.predictor)),
            ("model", f"{cfg.arch}, context {cfg.context}, {cfg.units} units, embedding {cfg.embedding_dim}, dropout {cfg.dropout}"),
            ("parameters", f"{b.parameter_count():,}"),
            ("training", f"{cfg.optimizer} lr {cfg.lr:g}, batch {cfg.batch_size or 'whole text'}, {m.get('epochs', '?')} epochs, {m.get('stop_reason', '')}"),
            ("accuracy", "?" if acc is None else f"{acc:.4f} (ceiling {ceil:.4f})" if ceil is not None else f"{acc:.4f}"),
            ("where", str(b.path)),
        ]
        if m.get("val_loss") is not None:
            rows.insert(6, ("validation", f"loss {m['val_loss']:.4f}, perplexity {math.exp(m['val_loss']):.1f}"))
        self.out(render.info_panel(rows))
