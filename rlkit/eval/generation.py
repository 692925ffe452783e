"""Settings, prompt encoding and batched engine calls with a progress bar.

Prompt encoding: when the tokenizer has a chat template (and `chat_template` is not False) the
prompt text is the single user message of `apply_chat_template(..., add_generation_prompt=True)`;
otherwise it is the plain text followed by a newline. Either way it is tokenised without adding
special tokens again, so the engine sees exactly what a chat server would.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from rlkit.data.progress import progress_bar
from rlkit.eval.errors import EvalInputError

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class EvalSettings:
    """Knobs of one evaluation run (the CLI flags; also `run_suite(settings=...)`).

    `max_tokens` None means the suite kind's default: 1024 for math, 64 for rec.
    temperature 0 = greedy only; temperature > 0 = one greedy pass (pass@1) plus `n` samples.
    """

    n: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int | None = None
    num_beams: int = 20
    limit: int | None = None
    seed: int = 0
    batch_size: int = 32
    chat_template: bool | None = None  # None: use it when the tokenizer has one
    response_prefix: str = ""
    progress: bool = True

    @classmethod
    def from_any(cls, value: EvalSettings | dict[str, Any] | None) -> EvalSettings:
        """Accept an EvalSettings, a dict of its fields (unknown keys are an error) or None."""
        if value is None:
            return cls()
        if isinstance(value, EvalSettings):
            return value
        unknown = set(value) - set(cls.__dataclass_fields__)
        if unknown:
            raise EvalInputError(f"unknown eval settings: {sorted(unknown)}")
        return cls(**value)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def tokens_for(self, kind: str) -> int:
        """max_tokens, or the kind's default."""
        if self.max_tokens is not None:
            return self.max_tokens
        return 1024 if kind == "math" else 64


def encode_prompts(
    tokenizer: Any, texts: Sequence[str], chat_template: bool | None = None
) -> list[list[int]]:
    """Token ids of each prompt text (chat template when available and not disabled)."""
    use_chat = bool(getattr(tokenizer, "chat_template", None)) and chat_template is not False
    out = []
    for text in texts:
        if use_chat:
            text = tokenizer.apply_chat_template(
                [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
            )
        else:
            text = text + "\n"
        out.append(list(tokenizer.encode(text, add_special_tokens=False)))
    return out


def batched(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Consecutive slices of at most `size` items."""
    for i in range(0, len(items), max(1, size)):
        yield items[i : i + size]


def run_batched(
    items: Sequence[T],
    fn: Callable[[Sequence[T]], list[R]],
    *,
    size: int,
    desc: str,
    progress: bool = True,
) -> list[R]:
    """fn over batches of `items`, concatenated, with a tqdm bar (or nothing) on stderr."""
    bar = progress_bar(len(items), desc) if progress else None
    out: list[R] = []
    for chunk in batched(items, size):
        out.extend(fn(chunk))
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()
    return out
