"""Stories: what the user and the model wrote, kept as a tree in one SQLite file
(``db``: the API; ``schema``: the file and its migrations; ``text``: joining the nodes' texts;
``export`` and ``validate``: the story as a file, and the checks of an imported one)."""
