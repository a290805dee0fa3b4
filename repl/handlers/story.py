"""The story: Enter on a line, ``:accept``, ``:retry``, ``:more``, ``:undo``, ``:redo``, ``:alts``,
``:take``, ``:tree``, ``:goto``, ``:story``, ``:new``, ``:stories``.

Enter keeps the line as the user's text and offers a continuation, a *proposal*, that is not
part of the story until it is accepted (``:accept``, Alt-A, or Enter on an empty line, which
also asks for the next one). Only what is kept reaches the caches. The state lives in
:class:`repl.story_state.StoryState` (``self.story``).
"""
from __future__ import annotations

import math

from rich.text import Text

from model.errors import StoryError
from model.text.tokenize import detokenize
from model.text.writing import continuation, line_tail
from repl import render
from repl.story_state import Proposal, db_failure
from repl.story_view import Stream, alternatives_table, proposal_info, stories_table, story_end, story_text, story_tree

MAX_ALTS = 9  # Alt-T 1 … Alt-T 9
SEED_WORDS = 12  # words of the story shown before a proposal
LOGP_FLOOR = math.log(1e-300)
MAX_WIDTH = 64  # beams searched at most for a retry


def _short(word: str, limit: int = 40) -> str:
    return word if len(word) <= limit else word[: limit - 1] + "…"


class StoryCommands:
    # ---- the story in step with the model ------------------------------------------------------
    def story_sync(self) -> None:
        """Before each line: the story of the corpus in use, its path the predictor's context."""
        if self.predictor is None:
            return
        note = self.story.sync(self.predictor, self.corpus_label(), self.journal.corpus_sha256)
        if note:
            self.out(render.notice(note, "dim"))

    def story_start(self) -> None:
        """Before the first prompt: open the story (a failure is one line; the REPL goes on)."""
        try:
            self.story_sync()
        except StoryError as e:
            self.error(str(e))

    def story_prime(self, pred, corpus_sha256: str) -> None:
        """A new predictor of the corpus in use continues the story before it answers."""
        try:
            self.story.prime(pred, corpus_sha256)
        except StoryError as e:
            self.error(str(e))

    def story_ids(self) -> list[int]:
        """The ids every prediction reads before the current line: the story's last words."""
        return self.predictor.encode(list(self.story.context.tokens()))[0]

    @property
    def keys_hint(self) -> str:
        """The story's keys, for the toolbar."""
        story = getattr(self, "story", None)
        if story is None or not story.on:
            return ""
        if story.alternatives:
            return f"Alt-T 1…{len(story.alternatives)} take  Alt-U undo"
        if story.proposal is not None:
            return "Alt-A keep  Alt-R retry  ⏎ more  Alt-U undo"
        return "Alt-U undo  Alt-Y redo"

    def take_pending_text(self) -> str:
        """The line a story key left, put back on the next prompt."""
        text, self.pending_text = getattr(self, "pending_text", ""), ""
        return text

    def _story_model(self) -> dict:
        """The model as a node records it: the bundle's weights digest, arch and context, the parts."""
        pred, b = self.predictor, self.bundle
        files = b.info.get("files") if b is not None and isinstance(b.info, dict) else None
        cfg = getattr(pred, "config", None) or self.config
        return {
            "bundle": files.get("weights.npz") if isinstance(files, dict) else None,
            "arch": cfg.arch,
            "context": cfg.context,
            "components": list(pred.components()),
        }

    def _writing(self):
        """The predictor, when the story can be written now (else one line)."""
        if not self.story.on:
            raise StoryError("the story is off (every line stands alone); :story on writes into it again")
        if self.predictor is None:
            raise StoryError("no model is loaded yet; wait for training or :load a model")
        return self.predictor

    # ---- Enter ----------------------------------------------------------------------------------
    def story_line(self, line: str) -> None:
        """A typed line: kept as the user's text, then the next-word table and a proposal."""
        pred = self._writing()
        tokens = pred.tokenize(line)
        if not tokens:
            return
        _, unknown = pred.encode(tokens)
        if unknown:
            from repl.hanzi import script_hint

            shown = ", ".join(_short(w) for w in unknown[:8]) + ("…" if len(unknown) > 8 else "")
            hint = script_hint(unknown, lambda w: w in pred.vocab.index)  # simplified typed against a traditional text
            self.out(render.notice(f"unknown to this model: {shown}; predicting from the known context (remembered: offered from now on)"
                                   + (f"; {hint}" if hint else "")))
        self.story.add_user(line.strip(), tokens)
        self.remember_line(line, tokens)
        self.story_sync()
        ids = self.story_ids()
        ctx = pred.vocab.decode(ids[-pred.context :])
        title = f"next word after “{detokenize([_short(w) for w in ctx])}”" if ctx else "first word"
        self.out(render.topk_table(pred.top_k(ids, min(self.k, len(pred.vocab))), title=title))
        self._offer()

    def story_empty_line(self) -> None:
        """Enter on an empty line: :more, once there is a story or a proposal."""
        story = self.story
        if story.on and self.predictor is not None and (story.proposal is not None or story.path):
            self.do_more(None)

    # ---- proposals ------------------------------------------------------------------------------
    def _written(self, before: str, tokens: list[str]) -> str:
        """``tokens`` written after the text ``before`` as generated words are (cased, spaced),
        with the space that joins them, if any."""
        return continuation(before, tokens, getattr(self.predictor, "casing", None))[1]

    def _stream(self) -> Stream:
        return Stream(self, self.story.text_tail(), getattr(self.predictor, "casing", None))

    def _offer(self, avoid: frozenset = frozenset()) -> Proposal | None:
        """A proposal from the story's end, shown word by word as it is made (Ctrl-C stops it)."""
        pred = self.predictor
        ids = self.story_ids()
        seed = int(self.rng.integers(2**31))
        view = self._stream()
        gen: list[int] = []
        stopped = False
        try:
            for i in pred.generate_ids(ids, self.length, seed=seed, decoding=self.decoding):
                gen.append(int(i))
                view.add(pred.vocab.tokens[int(i)])
        except KeyboardInterrupt:
            stopped = True
        p = self._proposal(ids, gen, self.decoding.label(), {"seed": seed}, stopped)
        self._show_end(view, p)
        if p is not None and tuple(p.tokens) in avoid:
            self.out(render.notice("the same text as an earlier proposal: the model is sure of it; :sample with a higher T, or :decode p=1, varies it", "dim"))
        return p

    def _proposal(self, ids: list[int], gen: list[int], label: str, extra: dict, stopped: bool = False) -> Proposal | None:
        """The generated ids ``gen`` (after ``ids``) as a proposal written to the story."""
        if not gen:
            return None
        pred = self.predictor
        logprobs, hist = [], list(ids)
        for i in gen:
            p = float(pred.distribution(hist)[i])
            logprobs.append(max(LOGP_FLOOR, math.log(p)) if p > 0 else LOGP_FLOOR)
            hist.append(i)
        tokens = pred.vocab.decode(gen)
        decoding = dict(self.decoding.to_dict(), **extra)
        text = self._written(self.story.text_tail(), tokens).strip()
        p = Proposal(0, None, tokens, logprobs, label, text, self.copied_run(tokens), stopped, self._story_model(), decoding)
        return self.story.add_proposal(p)

    def _show_end(self, view: Stream, p: Proposal | None) -> None:
        if p is None:
            view.end("", Text("  (nothing generated)", style="dim"))
            return
        self.story.proposal = p
        view.end(self._written(self.story.text_tail(), p.tokens), proposal_info(p.label, p.copied, len(p.tokens), p.stopped))

    def _keep(self, p: Proposal, n: int | None = None) -> None:
        """Keep ``p`` (its first ``n`` words): the caches learn it; the rest stays on offer."""
        pred = self.predictor
        part = n is not None and n < len(p.tokens)
        before = self.story.text_tail()
        text = self._written(before, p.tokens[:n]).strip() if part else None
        node = self.story.accept(p, n, text)
        pred.observe(list(node.tokens), self.story.context.tokens())  # read after the story before it
        rest = None
        if part:
            rest_text = self._written(self.story.text_tail(), p.tokens[n:]).strip()
            rest = Proposal(0, None, p.tokens[n:], p.logprobs[n:], p.label, rest_text, None, p.stopped, p.model, p.decoding)
            rest.copied = self.copied_run(rest.tokens)
            self.story.proposal = self.story.add_proposal(rest)
        self.story_sync()
        self.out(Text("kept: ", style="green") + story_text([node]) + Text(f"  (node {node.id})", style="dim"))
        if rest is not None:
            self.out(Text("still proposed: ", style="dim") + Text(render.safe(rest.text), style="dim italic"))

    # ---- commands -------------------------------------------------------------------------------
    def do_accept(self, arg) -> None:
        self._writing()
        p = self.story.proposal
        if p is None:
            more = " (:take K keeps one of the alternatives)" if self.story.alternatives else ""
            raise StoryError(f"no proposal to accept{more}; Enter on a line, or :more, makes one")
        if arg is not None and not 1 <= arg <= len(p.tokens):
            raise StoryError(f"the proposal has {len(p.tokens)} words; :accept 1 to {len(p.tokens)}, or :accept for all of it")
        self._keep(p, None if arg is None else int(arg))

    def do_more(self, arg) -> None:
        self._writing()
        if self.story.proposal is not None:
            self._keep(self.story.proposal)
        self._offer()

    def do_retry(self, arg) -> None:
        self._writing()
        earlier = frozenset(tuple(n.tokens) for n in self.story.children() if n.author == "model")
        if self.decoding.greedy:
            self._next_beam(earlier)
        else:
            self._offer(avoid=earlier)

    def _next_beam(self, earlier: frozenset) -> None:
        """Greedy or beam decoding: the best beam of a wider search that is no earlier proposal."""
        pred = self.predictor
        ids = self.story_ids()
        width = min(MAX_WIDTH, self.decoding.beam + max(1, len(earlier)))
        while True:
            beams = pred.beams(ids, self.length, self.decoding, width)
            pick = next(((r, gen) for r, (_, gen) in enumerate(beams) if tuple(pred.vocab.decode(gen)) not in earlier), None)
            if pick is not None or width >= MAX_WIDTH or len(beams) < width:
                break
            width = min(MAX_WIDTH, 2 * width)
        if pick is None:
            raise StoryError("no other continuation here: every beam is an earlier proposal; :sample tries others")
        rank, gen = pick
        view = self._stream()
        p = self._proposal(ids, gen, f"beam {width}, #{rank + 1}", {"beam_width": width, "beam_rank": rank + 1})
        self._show_end(view, p)

    def do_alts(self, arg) -> None:
        pred = self._writing()
        n = 3 if arg is None else int(arg)
        if not 1 <= n <= MAX_ALTS:
            raise StoryError(f":alts expects a number of alternatives from 1 to {MAX_ALTS}, got {n}")
        ids = self.story_ids()
        alts: list[Proposal] = []
        try:
            if self.decoding.greedy:
                width = max(n, self.decoding.beam)
                for rank, (_, gen) in enumerate(pred.beams(ids, self.length, self.decoding, width)[:n]):
                    alts.append(self._proposal(ids, gen, f"beam {width}, #{rank + 1}", {"beam_width": width, "beam_rank": rank + 1}))
            else:
                for _ in range(n):
                    seed = int(self.rng.integers(2**31))
                    gen = [int(i) for i in pred.generate_ids(ids, self.length, seed=seed, decoding=self.decoding)]
                    alts.append(self._proposal(ids, gen, self.decoding.label(), {"seed": seed}))
        except KeyboardInterrupt:
            self.out(render.notice(f"stopped after {len(alts)} alternatives"))
        alts = [a for a in alts if a is not None]
        if not alts:
            raise StoryError("no alternative was generated; :len sets how many words to generate")
        self.story.proposal, self.story.alternatives = None, alts
        self.out(alternatives_table(alts, line_tail(self.story.text_tail(), SEED_WORDS)))
        self.out(render.notice(f":take K (or Alt-T then K) keeps alternative K of {len(alts)}", "dim"))

    def do_take(self, arg) -> None:
        self._writing()
        alts = self.story.alternatives
        if not alts:
            raise StoryError("no alternatives to take; :alts N offers N of them")
        if not 1 <= arg <= len(alts):
            raise StoryError(f"there are {len(alts)} alternatives; :take 1 to {len(alts)}")
        self._keep(alts[arg - 1])

    def do_undo(self, arg) -> None:
        self._writing()
        self._moved_to(self.story.undo(), "back to")

    def do_redo(self, arg) -> None:
        self._writing()
        self._moved_to(self.story.redo(), "forward to")

    def do_goto(self, arg) -> None:
        self._writing()
        self._moved_to(self.story.goto(int(arg)), "at")

    def _moved_to(self, node, how: str) -> None:
        self.story_sync()
        where = f"node {node.id}" if node is not None else "the beginning"
        self.out(Text(f"{how} {where}: ", style="green") + story_end(self.story.path))

    def do_tree(self, arg) -> None:
        story = self.story
        if story.story is None:
            raise StoryError("the story is empty: type a line to begin it")
        self.out(story_tree(story.story, story.tree(), story.node))

    def do_story(self, arg) -> None:
        if arg is None or not str(arg).strip():
            s = self.story
            head = f"story {s.story.id} “{s.story.title}”" if s.story is not None else "a new story"
            state = "" if s.on else " (off: every line stands alone; :story on)"
            self.out(Text(render.safe(head + state), style="bold underline"), story_text(s.path))
            return
        word = str(arg).strip().lower()
        if word not in ("on", "off"):
            raise StoryError(f":story expects on or off (or nothing, to show the story), got {str(arg).strip()[:40]!r}")
        self.story.context.switch(self.predictor, word == "on")
        self.out(render.notice("the story is the context: each line continues it" if word == "on"
                               else "story off: every line stands alone and nothing is written into the story", "green"))

    def do_new(self, arg) -> None:
        self.story.new(arg.strip() if isinstance(arg, str) and arg.strip() else None)
        self.story_sync()
        self.out(render.notice("a new story begins with your next line", "green"))

    def do_stories(self, arg) -> None:
        try:
            listings = self.story.open_db().list_stories()
        except StoryError as e:
            if not db_failure(e):
                raise
            raise StoryError(f"cannot list the stories: {e}") from None
        if not listings:
            self.out(render.notice("no stories yet: type a line to begin one", "dim"))
            return
        self.out(stories_table(listings, self.story.story.id if self.story.story else None))
