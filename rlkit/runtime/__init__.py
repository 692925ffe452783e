"""The runtime, split by job:

    placement/   where processes go: CPU threads, GPU shares, the reference model, core lending,
                 the hybrid engine, Ray set-up, rank groups
    controller/  the loops and the components they compose (rollout scheduling, staleness,
                 prompt stream, training dispatch, weight publishing, the step record)
    actors/      the trainer group (with the reference model), critic group, evaluator
    run, prepare, resume, checkpoints   the run lifecycle (`rlkit train`)

The rollout worker and its engine loop, and the rollout strategies, are here too for now.
"""
