"""Model rewards under their recipe path ``rewards.judge:<name>``.

The code lives in the library, ``rlkit/rewards/builtin/judge.py``: a judge's verdict
(``judge_verdict``), a classifier reward model's score (``rm_score``) and one judge call per
group (``judge_group``), each calling ``ctx.models[name]`` (docs/rewards.md, "Model rewards").
"""

from rlkit.rewards.builtin.judge import judge_group, judge_verdict, rm_score

__all__ = ["judge_group", "judge_verdict", "rm_score"]
