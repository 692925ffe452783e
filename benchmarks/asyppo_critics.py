"""AsyPPO benchmarks (arXiv 2510.01656; docs/asyppo.md).

`memory` (default): the critic side of one training step — every critic's values for the step's
samples, then its update on its shard (rlkit.engines.critic_engine.DeepSpeedCritics, ZeRO-2, one
rank, AdamW) — for (a) one critic the size of the actor (SmolLM2-135M backbone, sees every
sample) and (b) M = 2 mini-critics (a small Qwen2 with SmolLM2's tokenizer, each on half of every
group).  Each runs in its own process; peak memory is the process's peak RSS above its RSS after
imports (CPU) or torch.cuda.max_memory_allocated (GPU).  Prints both numbers and the ratios.

`direction`: AsyPPO vs PPO with one critic vs GRPO on the real stack (vLLM, two DeepSpeed ranks),
same seeds, steps and SFT warm-started tiny actor, on generated a±b problems with a boxed answer;
prints the accuracy curve (reward = exact boxed answer) and the mean of the last 5 steps.

    python benchmarks/asyppo_critics.py [memory|direction] [--steps N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

MINI = {"hidden_size": 256, "num_layers": 4, "num_heads": 4, "intermediate_size": 1024}
PROMPTS, G, PROMPT_LEN, RESP_LEN, TIMED = 2, 4, 32, 96, 3


def critic_cfg(kind: str, tmp: Path):
    from rlkit.config.loader import config_from_dict

    mini = kind == "mini"
    return config_from_dict(
        {
            "model": {"kind": "tiny"},
            "rollout": {"prompts_per_step": PROMPTS, "samples_per_prompt": G},
            "algo": {"advantage": "asyppo" if mini else "gae"},
            "critic": {"enabled": True, "num_critics": 2 if mini else 1, "micro_batch_size": 4,
                       "lr": 5e-6, **({"tiny": MINI} if mini else {})},
            "logging": {"runs_dir": str(tmp), "tensorboard": False},
        }
    )  # fmt: skip


def measure_one(kind: str) -> dict:
    """One critic side in this process: build, then TIMED steps of values + update."""
    import resource
    import time

    import torch

    from rlkit.algos.critic import disjoint_shares
    from rlkit.data.smollm2 import smollm2_folder
    from rlkit.engines.critic_engine import DeepSpeedCritics
    from rlkit.engines.dist_env import free_port
    from rlkit.engines.train_batch import TrainSample
    from rlkit.runtime.actors.critic_group import critic_model_path

    def rss_mb() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    actor = str(smollm2_folder())
    tmp = Path(tempfile.mkdtemp())
    cfg = critic_cfg(kind, tmp)
    path = critic_model_path(cfg, actor)
    base = rss_mb()
    critics = DeepSpeedCritics(0, 1, "127.0.0.1", free_port(), path, cfg)
    params = sum(p.numel() for e in critics.engines for p in e.module.parameters())
    gen = torch.Generator().manual_seed(0)
    n = PROMPTS * G
    samples = [
        TrainSample(
            torch.randint(10, 40000, (PROMPT_LEN,), generator=gen).tolist(),
            torch.randint(10, 40000, (RESP_LEN,), generator=gen).tolist(),
            [0.0] * RESP_LEN,
        )
        for _ in range(n)
    ]
    subsets = disjoint_shares([G] * PROMPTS, critics.plan.num_critics)  # AsyPPO's critic_split
    norms = [{"num_tokens": float(len(s) * RESP_LEN), "num_seqs": float(len(s))} for s in subsets]
    times = []
    for step in range(TIMED + 1):  # step 0 warms up
        t0 = time.perf_counter()
        old = critics.values(samples)
        returns = [[1.0] * RESP_LEN for _ in range(n)]
        critics.train_step(samples, returns, old, subsets, norms)
        if step:
            times.append(time.perf_counter() - t0)
    peak = (
        torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else rss_mb() - base
    )
    critics.shutdown()
    return {"kind": kind, "params": params, "peak_mb": peak, "step_s": sum(times) / len(times)}


def memory() -> None:
    out = {}
    for kind in ("full", "mini"):
        res = subprocess.run(
            [sys.executable, __file__, "--one", kind], capture_output=True, text=True, check=True
        )
        out[kind] = json.loads(res.stdout.strip().splitlines()[-1])
    f, m = out["full"], out["mini"]
    print(f"one full-size critic (SmolLM2-135M): {f['params'] / 1e6:.1f}M params, "
          f"peak {f['peak_mb']:.0f} MB, {f['step_s']:.2f} s/step")  # fmt: skip
    print(f"two mini-critics ({MINI}): {m['params'] / 1e6:.1f}M params in all, "
          f"peak {m['peak_mb']:.0f} MB, {m['step_s']:.2f} s/step")  # fmt: skip
    print(f"peak_memory_ratio (2 mini / 1 full): {m['peak_mb'] / f['peak_mb']:.3f}")
    print(f"step_time_ratio (2 mini / 1 full): {m['step_s'] / f['step_s']:.3f}")


ALGOS = {
    "grpo": ({"advantage": "grpo"}, {"enabled": False}),
    "ppo": ({"advantage": "gae"}, {"enabled": True, "num_critics": 1}),
    "asyppo": (
        {"advantage": "asyppo", "entropy_coef": 1e-3},
        {"enabled": True, "tiny": {"hidden_size": 64, "num_layers": 1, "num_heads": 1,
                                   "intermediate_size": 256}, "head_init_std": 0.01},
    ),
}  # fmt: skip


def direction_recipe(tmp: Path, model: str, name: str, steps: int) -> dict:
    algo, critic = ALGOS[name]
    return {
        "name": name, "seed": 0,
        "model": {"kind": "path", "path": model},
        "data": {"kind": "arithmetic", "num_prompts": 2000, "max_operand": 20, "ops": "+-",
                 "seed": 2},
        "rollout": {"prompts_per_step": 8, "samples_per_prompt": 8, "max_tokens": 12},
        "trainer": {"world_size": 2, "lr": 2e-4, "micro_batch_size": 32, "total_steps": steps},
        "algo": {"policy_loss": "ppo", **algo},
        "critic": {"lr": 1e-3, "micro_batch_size": 32, **critic},
        "async": {"alpha": 1},
        "reward": {"fns": [{"fn": "rewards.math:accuracy",
                            "kwargs": {"fallback_to_text": False}}], "num_workers": 2},
        "logging": {"runs_dir": str(tmp / "runs"), "tensorboard": False, "console": False},
    }  # fmt: skip


def warm_started_actor(tmp: Path) -> str:
    """The quickstart's tiny actor after its SFT warm start (70% unboxed demonstrations)."""
    from rlkit.config.loader import config_from_dict
    from rlkit.runtime import prepare

    cfg = config_from_dict(
        {"name": "sft", "model": {"kind": "tiny"},
         "data": {"kind": "arithmetic", "max_operand": 20, "ops": "+-", "seed": 2},
         "sft": {"steps": 900, "lr": 1e-3, "batch_size": 32, "num_rows": 4000,
                 "unboxed_rate": 0.7},
         "logging": {"runs_dir": str(tmp / "runs")}}
    )  # fmt: skip
    return prepare.prepare_model(cfg, prepare.make_run_dir(cfg), log=lambda *_: None)


def direction(steps: int) -> None:
    import ray

    from rlkit.config.loader import config_from_dict
    from rlkit.runtime.controller.metrics_logger import read_metrics
    from rlkit.runtime.placement.cluster import init_ray, start_rollout_workers
    from rlkit.runtime.run import train

    tmp = Path(tempfile.mkdtemp())
    model = warm_started_actor(tmp)
    init_ray(None, num_cpus=4, object_store_mb=600)
    (worker,) = start_rollout_workers("vllm", model, 1, 1.0, {"max_model_len": 256, "seed": 0})
    finals = {}
    for name in ALGOS:
        cfg = config_from_dict(direction_recipe(tmp, model, name, steps))
        rows = read_metrics(train(cfg, workers=[worker], log=lambda *_: None))
        curve = [round(r["reward/mean"], 3) for r in rows]
        finals[name] = sum(curve[-5:]) / len(curve[-5:])
        last, extra = rows[-1], ""
        if name == "asyppo":
            adv, ent = last["asyppo/adv_masked_frac"], last["asyppo/ent_masked_frac"]
            extra = f" adv_masked={adv:.2f} ent_masked={ent:.2f}"
        print(f"{name} accuracy curve: {curve}{extra}", flush=True)
    ray.kill(worker)
    for name, acc in finals.items():
        print(f"final_accuracy_{name} (mean of last 5 steps): {acc:.3f}")


def build_parser() -> argparse.ArgumentParser:
    """The command line (tests/unit/test_documented_commands.py parses the documented ones)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", nargs="?", default="memory", choices=["memory", "direction"])
    ap.add_argument("--one", choices=["full", "mini"])
    ap.add_argument("--steps", type=int, default=20)
    return ap


def main() -> None:
    args = build_parser().parse_args()
    if args.one:
        print(json.dumps(measure_one(args.one)))
    elif args.mode == "memory":
        memory()
    else:
        direction(args.steps)


if __name__ == "__main__":
    main()
