"""The ``:command`` handlers, one mixin class per area; :class:`repl.session.Session` inherits them all.

Each ``do_<name>`` method answers the row ``<name>`` of :data:`repl.commands.COMMANDS` and gets
the parsed argument; it prints through ``self.out`` and raises :class:`model.errors.StoryError`
for a one-line error. The mixins use the session's state (predictor, bundle, menu, decoding…).
"""
