"""Agentic rollouts, asynchronous (alpha = 2) vs synchronous (alpha = 0), through the real
controller: a vLLM rollout worker, a two-rank DeepSpeed ZeRO-2 trainer group and the
`multi_turn` strategy on a tiny model (the shape of benchmarks/async_vs_sync.py, whose helpers
it uses).

The environment (benchmarks/agentic_env.py) is the only simulated part: each step sleeps a
log-normal latency (median 0.1 s x scale, sigma 1.2, capped at 5 s x scale) and a trajectory
lasts floor(Pareto(1.2)) turns (1..8), all drawn with a fixed seed.  alpha = 0 is the synchronous
loop (`async.mode: sync`, which `async, alpha 0` reproduces request for request: docs/async.md);
its stage times per step (rollout G, reward tail R, train T) give the stage-overlap bound
(G + R + T) / max(G, T).  Seconds per step are the mean over the steps after the first (the
first one includes warm-up).  ROLL Flash reports 2.72x on agentic tasks.

Prints one line per number; the last line is `speedup_agentic: X.XX`.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

ROLL_FLASH_AGENTIC = 2.72
ENV = f"{Path(__file__).resolve().parent / 'agentic_env.py'}:LongTailEnv"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=6, help="training steps per run (>= 2)")
    p.add_argument("--latency-scale", type=float, default=1.0, help="multiplies env latencies")
    p.add_argument("--seed", type=int, default=0, help="seed of the environment's draws")
    p.add_argument("--env-workers", type=int, default=128, help="environment pool threads")
    return p


def agentic_recipe(tmp: Path, model: str, args: argparse.Namespace, alpha: int) -> dict:
    """The shared tiny-model recipe with the multi_turn strategy on the long-tailed env."""
    from benchmarks.agentic_env import CAP_S, MAX_TURNS
    from benchmarks.async_vs_sync import base_recipe

    mode = "sync" if alpha == 0 else "async"
    rec = base_recipe(tmp, model, f"agentic_a{alpha}", mode, alpha, steps=args.steps)
    rec["data"] = {"kind": "arithmetic", "num_prompts": 500}
    rec["reward"] = {"fns": [{"fn": "env_reward"}], "mode": "thread", "num_workers": 2}
    rec["rollout"].update(
        strategy="multi_turn",
        strategy_kw={
            "max_turns": MAX_TURNS,
            "env_workers": args.env_workers,
            "env_timeout_s": 2 * CAP_S * args.latency_scale + 10,  # above the latency cap
        },
        env=ENV,
        env_kw={"seed": args.seed, "latency_scale": args.latency_scale},
    )
    return rec


def per_step(rows: list[dict], key: str) -> float:
    """Mean of `key` over the steps after the first (the first includes warm-up)."""
    rest = rows[1:] or rows
    return sum(r.get(key, 0.0) for r in rest) / len(rest)


def summary(rows: list[dict]) -> str:
    """What explains a run's time: turns, env latency, aborted/dropped groups, busy shares."""
    last = rows[-1]
    return (
        f"{per_step(rows, 'time/step_s'):.2f} s/step  turns/traj "
        f"{per_step(rows, 'env/turns_mean'):.2f}  env step p50/p95 "
        f"{per_step(rows, 'env/step_latency_p50_s'):.2f}/"
        f"{per_step(rows, 'env/step_latency_p95_s'):.2f} s  env timeouts "
        f"{sum(r.get('env/timeouts', 0) for r in rows)}  aborted/dropped groups "
        f"{last.get('rollout/aborted_groups', 0)}/{last.get('rollout/dropped_groups', 0)}  "
        f"max staleness {max(r.get('staleness/max', 0) for r in rows)}  busy rollout/train "
        f"{per_step(rows, 'perf/rollout_busy_frac'):.2f}/"
        f"{per_step(rows, 'perf/train_busy_frac'):.2f}"
    )


def main(argv: list[str] | None = None) -> None:
    import ray

    from benchmarks.async_vs_sync import start_stack, train_rows
    from rlkit.agents.env import load_env

    args = build_parser().parse_args(argv)
    if args.steps < 2:
        raise SystemExit("--steps must be >= 2 (the first step is left out of the means)")
    tmp = Path(tempfile.mkdtemp(prefix="rlkit_agentic_"))
    model, worker = start_stack(tmp)
    runs = {}
    for alpha in (0, 2):
        load_env(ENV).restart()  # the same seed gives both runs the same environment draws
        runs[alpha] = train_rows(agentic_recipe(tmp, model, args, alpha), worker)
    ray.shutdown()
    a0, a2 = runs[0], runs[2]
    g, r, t = (per_step(a0, k) for k in ("time/rollout_s", "time/reward_tail_s", "time/train_s"))
    bound = (g + r + t) / max(g, t)
    speedup = per_step(a0, "time/step_s") / per_step(a2, "time/step_s")
    print(f"alpha0: {summary(a0)}")
    print(f"alpha2: {summary(a2)}")
    print(f"stages/step (alpha0): rollout {g:.2f}s reward-tail {r:.2f}s train {t:.2f}s")
    print(f"bound_agentic: {bound:.2f}")
    print(f"roll_flash_agentic: {ROLL_FLASH_AGENTIC:.2f}")
    print(f"speedup_agentic: {speedup:.2f}")


if __name__ == "__main__":
    main()
