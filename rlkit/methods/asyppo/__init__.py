"""AsyPPO (arXiv 2510.01656, "Asymmetric PPO: mini-critics boost LLM reasoning"; docs/asyppo.md).

- `advantage`: the `asyppo` estimator (GAE on the mean of M critics) with what it declares
  (critics needed, their count and split), and the uncertainty masks from the critics' spread;
- `stage`: the `asyppo_masks` credit stage that turns the masks into per-token streams.
"""

from rlkit.methods.asyppo.advantage import asyppo_advantage, asyppo_masks, asyppo_metrics

__all__ = ["asyppo_advantage", "asyppo_masks", "asyppo_metrics"]
