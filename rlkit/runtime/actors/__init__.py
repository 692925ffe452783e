"""Ray actors of a run other than the rollout workers: the trainer group (with the reference
model), the critic group, the in-training evaluator."""
