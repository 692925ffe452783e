"""The shipped reward functions: math answers, output format, response length, code tests.

Each module registers its rewards by short name with ``@reward("name")`` (``math_accuracy``,
``boxed_format``, ``think_answer_format``, ``think_closed_format``, ``overlong_penalty``,
``code_tests``); the
modules are listed in ``rlkit.plugins.BUILTIN_MODULES``, which the reward loader imports on the
first name it does not know, so a recipe may write ``fn: math_accuracy``.  The top-level
``rewards/`` package re-exports them under their historical paths (``rewards.math:accuracy``).
How to write your own reward: docs/rewards.md.
"""
