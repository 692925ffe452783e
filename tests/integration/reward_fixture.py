"""A reward that varies on a random tiny model (fraction of digit characters), so that group
advantages and hence losses are non-zero in the end-to-end tests."""


def digit_fraction(prompt: str, completion: str, **fields) -> float:
    return sum(c.isdigit() for c in completion) / max(1, len(completion))
