"""Shipped reward functions, plain Python (see docs/rewards.md).

Name them in a recipe by path (``rewards.math:accuracy``) or by registered short name
(``math_accuracy``). Submodules are imported on demand; none imports torch, and
``rewards.math`` imports math-verify only on its first non-trivial call.
"""
