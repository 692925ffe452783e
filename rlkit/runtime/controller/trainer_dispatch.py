"""Training dispatch: the credit pipeline and the trainer step, off the rollout loop's thread.

`submit(groups)` returns at once; a single background thread turns the groups into samples
(reference, critic and probe calls included), starts the trainer group's step and any refs the
credit stages started (the critic update), and waits for them.  The rollout loop keeps stepping
the workers meanwhile.  One step at a time: steps stay in order, so alpha = 0 stays exact.
With `rollout.dump` the step's rows (rlkit.runtime.controller.rollout_dump) are built here while
the ranks train, and handed to the step recorder, which writes them under the step's number.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from rlkit.runtime.actors.trainer_group import merge_rank_metrics
from rlkit.runtime.controller.rollout_dump import DUMP_KEY, dump_text


class TrainerDispatch:
    def __init__(self, pipeline: Any, trainer: Any, switch: Any = None, dump: bool = False):
        """`switch`: the HybridSwitch of a GPU colocated run (rlkit.runtime.placement.hybrid);
        `dump`: hand every step's trained samples to the recorder (`rollout.dump`)."""
        self.pipeline, self.trainer, self.switch, self.dump = pipeline, trainer, switch, dump
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rlkit-train")

    def submit(self, groups: list, stats: dict) -> Future:
        """Start credit + train for `groups`; the Future gives the step's metrics."""
        return self._pool.submit(self._run, groups, dict(stats))

    def _run(self, groups: list, stats: dict) -> dict:
        import ray

        t0 = time.perf_counter()
        batch = self.pipeline(groups)
        stats.update(batch.stats)
        side = list(batch.extra_refs)  # e.g. the critic update, running beside the policy's
        if self.switch is not None:  # after the credit stages: probes need awake workers
            self.switch.to_train()
        refs = side + self.trainer.train_step_async(batch.samples)
        t_dump = time.perf_counter()
        dump = dump_text(batch) if self.dump else None  # while the ranks train
        t_dump = time.perf_counter() - t_dump
        results = ray.get(refs)
        if self.switch is not None:  # before the publication: loading needs awake workers
            self.switch.to_rollout()
        metrics = merge_rank_metrics(results[len(side) :])
        if side:
            per = results[: len(side)]
            metrics.update({k: sum(r[k] for r in per) / len(per) for k in per[0]})
        metrics["time/train_s"] = time.perf_counter() - t0
        if dump is not None:
            metrics.update({DUMP_KEY: dump, "time/dump_s": t_dump})
        return {**stats, **metrics}

    def close(self) -> None:
        self._pool.shutdown(wait=True)
