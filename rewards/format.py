"""Format rewards under their recipe path ``rewards.format:<name>``.

The code lives in the library, ``rlkit/rewards/builtin/format.py`` (R1-style
``<think>…</think><answer>…</answer>`` checks); this module only re-exports it for recipes that
name ``rewards.format:think_answer_format``.  Writing your own reward: docs/rewards.md.
"""

from rlkit.rewards.builtin.format import think_answer_format, think_closed_format

__all__ = ["think_answer_format", "think_closed_format"]
