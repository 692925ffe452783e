"""Ray actors and the controller: rollout workers, trainer group, reference model, sample queue."""
