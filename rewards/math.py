"""Math rewards under their recipe path ``rewards.math:accuracy`` (registered: ``math_accuracy``).

The code lives in the library, ``rlkit/rewards/builtin/math.py`` (last ``\\boxed{}`` answer,
math-verify equivalence, the boxed-format reward); this module only re-exports it so that
recipes, docs and benchmarks keep naming ``rewards.math:accuracy``.  To write your own reward,
add a plain function ``fn(prompt, completion, **fields) -> float | dict`` in a file of your own
and name it in the recipe as ``path/to/file.py:fn`` (docs/rewards.md).
"""

from rlkit.rewards.builtin.math import accuracy, boxed_format, extract_boxed, fast_verdict

__all__ = ["accuracy", "boxed_format", "extract_boxed", "fast_verdict"]
