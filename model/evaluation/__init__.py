"""Measuring a model: perplexity beside Kneser-Ney (:mod:`.evaluate`), keystroke savings of a
simulated typist (:mod:`.keystrokes`, with Presage in :mod:`.presage`), per-word scores and
corpus counts (:mod:`.analysis`), copied runs (:mod:`.memorize`), and the texts they are
measured on (:mod:`.texts`). No UI here: the REPL renders the results."""
