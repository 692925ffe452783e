"""Asynchronous (alpha = 2) vs synchronous (alpha = 0) training at an equal number of samples.

Runs the real controller, a vLLM rollout worker and a two-rank DeepSpeed trainer group on a tiny
model; only the environment latency of scenario (b) is simulated (benchmarks/env_rewards.py).
(a) prompts whose response lengths are long-tailed (Pareto budgets, EOS ignored);
(b) a verifier whose latency is long-tailed (log-normal, median 0.15 s, capped at 6 s).
For each scenario the synchronous loop is also run once to measure its stage times
(rollout G, reward tail R, train T per step); the ideal bound of full overlap is
(G + R + T) / max(G, T, L), with L the reward work per step spread over the reward workers.
Prints one line per number; the last line is `speedup_env: X.XX`.
"""

from __future__ import annotations

import json
import os
import random
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

STEPS, PROMPTS, SAMPLES, REWARD_WORKERS = 8, 8, 4, 32


def base_recipe(
    tmp: Path, model: str, name: str, mode: str, alpha: int, steps: int = STEPS
) -> dict:
    """The tiny-model recipe both benchmarks share: 8 prompts x 4 samples, a two-rank ZeRO-2
    trainer, `steps` steps in `mode` with staleness bound `alpha`; no data or reward yet."""
    return {
        "name": name,
        "seed": 0,
        "model": {"kind": "path", "path": model},
        "rollout": {
            "prompts_per_step": PROMPTS,
            "samples_per_prompt": SAMPLES,
            "max_tokens": 12,
            "max_model_len": 256,
        },
        "trainer": {
            "world_size": 2,
            "zero_stage": 2,
            "lr": 1e-4,
            "micro_batch_size": 16,
            "total_steps": steps,
        },
        "async": {"mode": mode, "alpha": alpha},
        "logging": {"runs_dir": str(tmp / "runs"), "tensorboard": False, "console": False},
    }


def recipe(tmp: Path, model: str, name: str, mode: str, alpha: int, scenario: str) -> dict:
    base = base_recipe(tmp, model, name, mode, alpha)
    if scenario == "lengths":
        base["data"] = {"kind": "file", "path": str(tmp / "long_tail.jsonl")}
        base["reward"] = {
            "fns": [{"fn": "benchmarks/env_rewards.py:digit_fraction"}],
            "mode": "thread",
            "num_workers": 2,
        }
    else:
        base["data"] = {"kind": "arithmetic", "num_prompts": 500}
        base["reward"] = {
            "fns": [{"fn": "benchmarks/env_rewards.py:slow_verifier"}],
            "mode": "process",
            "num_workers": REWARD_WORKERS,
            "timeout_s": 30,
        }
    return base


def write_long_tail_data(path: Path, n: int = 400) -> None:
    rng = random.Random(0)
    with open(path, "w") as f:
        for i in range(n):
            budget = min(200, int(6 * rng.paretovariate(1.1)))
            f.write(
                json.dumps({"prompt": f"{i % 50}+{i % 7}=", "answer": "0", "max_tokens": budget})
                + "\n"
            )


def train_rows(recipe_dict: dict, worker) -> list[dict]:
    """Train `recipe_dict` with the real controller on `worker`; its metrics.jsonl rows."""
    from rlkit.config.loader import config_from_dict
    from rlkit.runtime.controller.metrics_logger import read_metrics
    from rlkit.runtime.run import train

    cfg = config_from_dict(recipe_dict)
    return read_metrics(train(cfg, workers=[worker], log=lambda *_: None))


def run(tmp: Path, model: str, worker, scenario: str, mode: str, alpha: int) -> list[dict]:
    name = f"{scenario}_{mode}_a{alpha}"
    return train_rows(recipe(tmp, model, name, mode, alpha, scenario), worker)


def start_stack(tmp: Path) -> tuple[str, object]:
    """A tiny Qwen2 model under `tmp`, Ray on 4 logical CPUs, and one vLLM rollout worker that
    every run of a benchmark shares (its weights are reloaded by each run)."""
    import ray

    from rlkit.data.tiny_model import build_tiny_model
    from rlkit.runtime.placement.cluster import init_ray, start_rollout_workers

    model = str(build_tiny_model(tmp / "model", seed=0))
    init_ray(None, num_cpus=4, object_store_mb=600)
    (worker,) = start_rollout_workers("vllm", model, 1, 1.0, {"max_model_len": 256, "seed": 0})
    ray.get(worker.version.remote())
    return model, worker


def mean(rows: list[dict], key: str) -> float:
    return sum(r[key] for r in rows) / len(rows)


def scenario_numbers(tmp: Path, model: str, worker, scenario: str, reward_work: float) -> dict:
    sync = run(tmp, model, worker, scenario, "sync", 0)
    a0 = run(tmp, model, worker, scenario, "async", 0)
    a2 = run(tmp, model, worker, scenario, "async", 2)
    g, r, t = (mean(sync, k) for k in ("time/rollout_s", "time/reward_tail_s", "time/train_s"))
    total = lambda rows: sum(x["time/step_s"] for x in rows)  # noqa: E731
    return {
        "alpha0_s": total(a0),
        "alpha2_s": total(a2),
        "sync_s": total(sync),
        "speedup": total(a0) / total(a2),
        "bound": (g + r + t) / max(g, t, reward_work),
        "stages": (g, r, t),
        "max_staleness": max(x["staleness/max"] for x in a2),
    }


def main() -> None:
    import ray

    from benchmarks.env_rewards import mean_latency

    tmp = Path(tempfile.mkdtemp(prefix="rlkit_bench_"))
    write_long_tail_data(tmp / "long_tail.jsonl")
    model, worker = start_stack(tmp)
    lengths = scenario_numbers(tmp, model, worker, "lengths", 0.0)
    env_work = mean_latency() * PROMPTS * SAMPLES / REWARD_WORKERS
    env = scenario_numbers(tmp, model, worker, "env", env_work)
    for label, res in (("lengths", lengths), ("env", env)):
        g, r, t = res["stages"]
        print(
            f"{label}: alpha0 {res['alpha0_s']:.2f}s  alpha2 {res['alpha2_s']:.2f}s  "
            f"sync-loop {res['sync_s']:.2f}s  stages/step rollout {g:.2f}s reward-tail "
            f"{r:.2f}s train {t:.2f}s  max staleness {res['max_staleness']}"
        )
        print(f"bound_{label}: {res['bound']:.2f}")
        print(f"speedup_{label}: {res['speedup']:.2f}")
    ray.shutdown()
    print(f"speedup_env: {env['speedup']:.2f}")


if __name__ == "__main__":
    main()
