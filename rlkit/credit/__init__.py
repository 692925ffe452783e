"""Credit assignment, controller side: finished groups -> training samples with per-token streams.

A credit pipeline is a short list of stages (rlkit.credit.stages), each one small job on a
`CreditBatch`: fetch reference log-probs, fetch critic values, shape the reward with KL, compute
advantages with the registered estimator, start the critic update.  Stages say what they need
from the cluster through `Services`; a method is one more stage (GRPO-VPS adds its probes, AsyPPO
its masks: rlkit.methods) registered with `register_credit_stage` or named by path in
`algo.credit`.  The
pipeline runs off the rollout loop's thread, so reference, critic and probe calls never stall
generation (rlkit.runtime.controller.trainer_dispatch).
"""

from rlkit.credit.base import CREDIT_STAGES, CreditBatch, Services, register_credit_stage
from rlkit.credit.pipeline import CreditPipeline, build_pipeline

__all__ = [
    "CREDIT_STAGES",
    "CreditBatch",
    "CreditPipeline",
    "Services",
    "build_pipeline",
    "register_credit_stage",
]
