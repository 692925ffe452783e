"""Rollout dumps: `rollout.dump: true` writes `runs/NAME/rollouts/step_N.jsonl`, one JSON row
per sample trained at step N (docs/recipes.md, "Rollout dumps").

Every per-token list has the length of `token_ids` (prompt ⊕ response, as trained) and is 0 on
the prompt.  A row:

    group_id, sample       the group and the sample's index in it
    prompt_index           the dataset row (the prompt stream's index)
    version                policy version the sample's generation started under (its first turn)
    turns, finish_reason   model turns in the response; why it stopped
    reward, components     the trained reward (before any KL shaping) and its components
    reward_failed          a reward function failed and the fallback was used
    prompt_len             tokens of the prompt: token_ids[prompt_len:] is the response
    token_ids, loss_mask   loss_mask 1 on model tokens, 0 on prompt and environment tokens
    advantages             the sample's advantage on each model token, 0 elsewhere
    logprobs               the rollout engine's log-prob of each model token, 0 elsewhere
    streams                every other per-token stream the trainer received (ref_logprobs,
                           adv_mask, entropy_mask, method streams), raw values on the response
                           (on environment tokens: whatever the stage left, e.g. 0 for
                           ref_logprobs, which are computed on model tokens only)
    estimator_inputs       the advantage estimator's per-sample extra inputs (GRPO-VPS: beliefs
                           and segment_ends, offsets into the response)
    prompt_text, text      the prompt and the response as the engine decoded them

The rows are built on the training thread (`dump_text`, while the trainer ranks run the step)
and written by the step recorder once the step number is known (`write_dump`): into a temporary
file of the same folder, then renamed, so a reader never sees half a file.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

# The key under which the training thread hands the dump to the step recorder (popped there).
DUMP_KEY = "_rollout_dump"


def sample_row(group: Any, sample: Any, trained: Any, extra: dict[str, Any]) -> dict[str, Any]:
    """One dumped row: `group` and `sample` from the controller (rlkit.runtime.controller.groups),
    `trained` the TrainSample built from them (its streams filled by the credit stages)."""
    c = sample.completion
    n_prompt = len(trained.prompt_ids)
    mask = trained.trained_mask()
    streams = {k: _per_token(v, len(mask)) for k, v in trained.streams.items()}
    adv = streams.pop("advantages")
    return {
        "group_id": group.group_id,
        "sample": sample.index,
        "prompt_index": group.prompt.index,
        "version": sample.start_version,
        "turns": c.turns,
        "finish_reason": c.finish_reason,
        "reward": sample.reward,
        "components": dict(sample.components),
        "reward_failed": sample.reward_failed,
        "prompt_len": n_prompt,
        "token_ids": [*trained.prompt_ids, *trained.response_ids],
        "loss_mask": [0] * n_prompt + mask,
        "advantages": _prompted(n_prompt, [a * m for a, m in zip(adv, mask)]),
        "logprobs": _prompted(n_prompt, [lp * m for lp, m in zip(trained.behavior_logprobs, mask)]),
        "streams": {k: _prompted(n_prompt, v) for k, v in sorted(streams.items())},
        "estimator_inputs": extra,
        "prompt_text": group.prompt.text,
        "text": c.text,
    }


def batch_rows(batch: Any) -> list[dict[str, Any]]:
    """The rows of a credit batch (rlkit.credit.CreditBatch), in training order."""
    n = len(batch.samples)
    per_sample = {
        k: v for k, v in batch.estimator_kw.items() if isinstance(v, (list, tuple)) and len(v) == n
    }
    rows = []
    for i, ((group, sample), trained) in enumerate(zip(batch.flat, batch.samples)):
        extra = {k: _jsonable(v[i]) for k, v in per_sample.items()}
        rows.append(sample_row(group, sample, trained, extra))
    return rows


def dump_text(batch: Any) -> str:
    """The JSON lines of a credit batch's rows."""
    return "".join(json.dumps(row) + "\n" for row in batch_rows(batch))


def write_dump(folder: str | Path, step: int, text: str) -> Path:
    """Write `folder/step_<step>.jsonl` atomically (temporary file, fsync, rename)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"step_{step}.jsonl"
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".step_{step}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return final


def _per_token(value: Any, n: int) -> list[float]:
    """A stream as one value per response token (a float broadcasts)."""
    if isinstance(value, (int, float)):
        return [float(value)] * n
    return [float(x) for x in value]


def _prompted(n_prompt: int, response: list[float]) -> list[float]:
    return [0.0] * n_prompt + list(response)


def _jsonable(value: Any) -> Any:
    """`value` if JSON can hold it, else its tensor/array list form, else its repr."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
    return value
