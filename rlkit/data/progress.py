"""Progress on the console for long loops (SFT steps, evaluation batches): a tqdm bar on
stderr, or one plain line when tqdm is missing."""

from __future__ import annotations

import sys
from typing import Any


def progress_bar(total: int, desc: str) -> Any:
    """A tqdm bar on stderr, or a minimal console line when tqdm is missing."""
    try:
        from tqdm import tqdm
    except ImportError:
        return _Line(total, desc)
    return tqdm(total=total, desc=desc, file=sys.stderr, mininterval=1.0)


class _Line:
    """`n/total` progress on one console line (tqdm's update/set_postfix_str/close subset)."""

    def __init__(self, total: int, desc: str) -> None:
        self.total, self.desc, self.n, self.postfix = total, desc, 0, ""

    def update(self, k: int) -> None:
        self.n += k
        line = f"\r{self.desc}: {self.n}/{self.total} {self.postfix}".rstrip()
        print(line, end="", file=sys.stderr, flush=True)

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        self.postfix = text

    def close(self) -> None:
        print(file=sys.stderr)
