"""The one exception type for bad evaluation input (the CLI prints it as a single line)."""


class EvalInputError(ValueError):
    """Bad evaluation input: a message naming the file, line and field (or the bad option)."""
