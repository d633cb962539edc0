"""Expected errors: the CLI turns these into one line on stderr and a non-zero exit."""


class ChurnlabError(Exception):
    """An expected, user-facing error whose message says what is wrong and how to fix it."""
