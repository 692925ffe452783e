"""Reward functions as users read and copy them (see docs/rewards.md).

``rewards.math``, ``rewards.format`` and ``rewards.length`` re-export the library's shipped
rewards (``rlkit/rewards/builtin/``) under the paths recipes use (``rewards.math:accuracy``);
their registered short names (``math_accuracy``, ...) work without this package.  Your own
reward is a plain function in a file of yours, named in the recipe as ``path/to/file.py:fn``.
Submodules are imported on demand; none imports torch.
"""
