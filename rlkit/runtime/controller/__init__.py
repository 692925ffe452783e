"""The controller: the loops and the components they compose (rollout scheduling, staleness,
training dispatch, weight publishing, the step record, worker restarts).  See `spine`."""
