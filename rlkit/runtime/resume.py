"""Exact resume: `rlkit train RECIPE --resume runs/NAME` (or `resume: auto` in the recipe).

What a checkpoint restores (rlkit.runtime.checkpoints writes it):
    trainer    model, optimizer, LR scheduler, RNG (DeepSpeed state of every rank)
    critics    the same, for each value model
    controller step = policy version, the prompt stream's position, staleness and accounting
               counters, worker restarts: `Spine.state_dict()`, composed of the components'
               own (RolloutScheduler, StalenessManager, PromptStream, WorkerRestarts,
               StepRecorder)
    queue      the buffered and running groups, pending rewards, trained group ids
               (`queue.pkl`, rlkit.runtime.controller.queue_state)
    metrics    `metrics.jsonl` / `eval.jsonl` keep the records up to the checkpoint's step and
               go on appending; TensorBoard purges the later steps (`purge_step`)
The rollout workers start from the initial model and receive the restored trainer's weights as
version `step` through the normal weight publication, as after any step of an unbroken run.
The reference model stays the run's initial model.

Groups buffered or in flight at the checkpoint (possible only with alpha > 0) are saved and put
back with their ids and versions: finished samples and rewards are kept, pending rewards are
computed again, requests in flight are generated again with their seeds (from their start, at
the resumed weights: counted in `resume/regenerated_requests`), and too-stale groups are aborted
by the staleness rule and counted.  The first record after a resume says what came back
(`resume/groups_lost`, 0 unless the checkpoint predates the saved queue).  At alpha = 0 there are
none at a step boundary, and a resumed run repeats the uninterrupted run's remaining steps
exactly.

A weight-only checkpoint (`trainer.save_optimizer: false`, no `trainer_state/`) resumes too, but
not exactly: the trainer ranks are rebuilt from its HF files with a fresh optimizer (Adam's
moments from zero) and RNG, the LR schedule advanced to the step.  The console says so in one
line, the first metrics record after the resume has `resume/exact` = 0, and the recorder's
state (in every later checkpoint) counts such resumes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rlkit.config import ConfigError, RecipeConfig


def resume_point(cfg: RecipeConfig, resume: str | None) -> Path | None:
    """The checkpoint to resume from: the newest resumable one of `resume` (a run folder), or
    of this recipe's own run folder when the recipe says `resume: auto` (none there: a fresh
    start).  An explicit folder without one is an error naming it."""
    from rlkit.runtime.checkpoints import latest_resumable
    from rlkit.runtime.prepare import run_dir_of

    if resume:
        found = latest_resumable(Path(resume) / "checkpoints")
        if found is None:
            raise ConfigError(
                "--resume",
                f"no resumable checkpoint under {resume}/checkpoints (a folder step_<n>/ with "
                "run_state.json; trainer.save_every writes them)",
            )
        return found
    if cfg.resume == "auto":
        return latest_resumable(run_dir_of(cfg) / "checkpoints")
    return None


def trim_records(run_dir: Path, step: int) -> None:
    """Drop records of steps after `step` from metrics.jsonl / eval.jsonl (a crashed run may
    have logged steps past its last checkpoint): the resumed run logs them again, once."""
    for name in ("metrics.jsonl", "eval.jsonl"):
        path = run_dir / name
        if not path.is_file():
            continue
        kept = [
            line
            for line in path.read_text().splitlines()
            if line.strip() and json.loads(line).get("step", 0) <= step
        ]
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(line + "\n" for line in kept))
        tmp.replace(path)


def resume_from(spine: Any, checkpoint: Path, log=print) -> None:
    """Load the trainer's and critics' state and the controller's (each component's own
    `load_state_dict`, composed by `Spine.load_state_dict`), then send the workers the
    restored weights as version `step` (after the components are ready)."""
    from rlkit.runtime.checkpoints import has_trainer_state, read_run_state

    exact = has_trainer_state(checkpoint)
    spine.trainer.load_state(str(checkpoint))
    if spine.critic is not None:
        spine.critic.load_state(str(checkpoint))
    queue = spine.load_state_dict(read_run_state(checkpoint))
    spine.publisher.publish(spine.step)
    spine.recorder.mark_resumed(spine.step, str(checkpoint), exact)
    spine.recorder.resume_note.update(queue or {})
    log(f"[rlkit] resumed from {checkpoint} at step {spine.step}" + ("" if exact else NOT_EXACT))


NOT_EXACT = (
    ": NOT exact, a weight-only checkpoint (trainer.save_optimizer: false): the optimizer"
    " starts fresh (Adam moments, RNG), the LR schedule from the step"
)
