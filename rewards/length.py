"""Length rewards under their recipe path ``rewards.length:overlong_penalty``.

The code lives in the library, ``rlkit/rewards/builtin/length.py`` (DAPO's soft overlong
punishment); this module only re-exports it for recipes that name
``rewards.length:overlong_penalty``.  Writing your own reward: docs/rewards.md.
"""

from rlkit.rewards.builtin.length import overlong_penalty, soft_overlong

__all__ = ["overlong_penalty", "soft_overlong"]
