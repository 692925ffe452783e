"""GRPO vs GRPO-VPS at CPU scale: does segment credit shorten reasoning at equal accuracy?

Task (synthetic, multi-step): "a+b-c+d=" answered line by line ("a+b=x", "x-c=y", "y+d=z",
each line followed by a blank line) and then "\\boxed{z}". The SFT demonstrations waste steps
with probability WASTE per step: the previous line repeated, or an irrelevant line ("3+3=6") —
the "overthinking" VPS is meant to remove (docs/algorithms.md §3). A tiny char-level Qwen2 is
warm-started on them, then trained from recipes/vps_cpu.yaml twice with the same seeds and steps:
`algo.advantage: grpo` and `grpo_vps`, sharing one vLLM rollout worker. Printed: final accuracy
(mean reward over the last LAST steps, rewards.math:accuracy) and mean response length of both,
`length_ratio` = VPS / GRPO. `--prepare DIR` only writes DIR/train.jsonl and DIR/sft_model.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

WASTE, N_ROWS, SFT_STEPS, LAST = 0.3, 4000, 600, 5


def task_row(rng: random.Random, waste: float) -> dict[str, str]:
    """One problem with its step-by-step demonstration (some steps wasted)."""
    nums = [rng.randint(1, 9) for _ in range(4)]
    ops = ["+", "-", "+"]
    lines, acc = [], nums[0]
    for op, x in zip(ops, nums[1:]):
        new = acc + x if op == "+" else acc - x
        lines.append(f"{acc}{op}{x}={new}")
        if rng.random() < waste:  # a wasted step: repeat the line, or an irrelevant one
            k = rng.randint(1, 4)
            lines.append(lines[-1] if rng.random() < 0.5 else f"{k}+{k}={2 * k}")
        acc = new
    prompt = f"{nums[0]}+{nums[1]}-{nums[2]}+{nums[3]}="
    target = "\n\n".join(lines) + "\n\n\\boxed{" + str(acc) + "}"
    return {"prompt": prompt, "answer": str(acc), "target": target}


def prepare(out: Path, seed: int = 0) -> tuple[Path, Path]:
    """DIR/train.jsonl (prompt, answer) and DIR/sft_model (tiny Qwen2 SFT on the demos)."""
    from rlkit.data.arithmetic import write_jsonl
    from rlkit.data.sft import sft_warm_start
    from rlkit.data.tiny_model import build_tiny_model

    rng = random.Random(seed)
    rows = [task_row(rng, WASTE) for _ in range(N_ROWS)]
    data = write_jsonl(
        [{"prompt": r["prompt"], "answer": r["answer"]} for r in rows], out / "train.jsonl"
    )
    model = out / "sft_model"
    if not (model / "config.json").is_file():
        base = build_tiny_model(out / "base_model", hidden_size=128, num_layers=2, seed=seed)
        sft_warm_start(
            base, rows, steps=SFT_STEPS, lr=1e-3, batch_size=32, seed=seed, out_dir=model, log=None
        )
    return data, model


def run_pair(task_dir: Path, steps: int) -> dict[str, dict]:
    """Train GRPO and GRPO-VPS from recipes/vps_cpu.yaml on one shared rollout worker."""
    from rlkit.config.loader import load_recipe
    from rlkit.runtime.placement.cluster import init_ray, start_rollout_workers
    from rlkit.runtime.run import train

    init_ray(None, num_cpus=4, object_store_mb=600)
    engine_kw = {"max_model_len": 256, "kv_cache_gib": 1, "seed": 0}
    (worker,) = start_rollout_workers("vllm", str(task_dir / "sft_model"), 1, 1.0, engine_kw)
    out = {}
    for adv in ("grpo", "grpo_vps"):
        cfg = load_recipe(
            ROOT / "recipes" / "vps_cpu.yaml",
            [
                f"name=bench_{adv}",
                f"algo.advantage={adv}",
                f"trainer.total_steps={steps}",
                f"model.path={task_dir / 'sft_model'}",
                f"data.path={task_dir / 'train.jsonl'}",
                f"logging.runs_dir={task_dir / 'runs'}",
                "logging.console=false",
            ],
        )
        run_dir = train(cfg, workers=[worker], log=lambda *_: None)
        rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
        out[adv] = summarize(rows)
    return out


def summarize(rows: list[dict]) -> dict:
    tail = rows[-LAST:]
    mean = lambda k, rs=tail: sum(r[k] for r in rs) / len(rs)  # noqa: E731
    return {
        "acc_first": mean("reward/mean", rows[:LAST]),
        "acc_final": mean("reward/mean"),
        "len_first": mean("response_length/mean", rows[:LAST]),
        "len_final": mean("response_length/mean"),
        "step_s": mean("time/train_s"),
    }


def build_parser() -> argparse.ArgumentParser:
    """The command line (tests/unit/test_documented_commands.py parses the documented ones)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--prepare", type=Path, help="only write the task data and SFT model here")
    ap.add_argument("--steps", type=int, default=30)
    return ap


def main() -> None:
    args = build_parser().parse_args()
    if args.prepare:
        print(prepare(args.prepare))
        return
    task_dir = Path(tempfile.mkdtemp(prefix="vps_vs_grpo_"))
    prepare(task_dir)
    res = run_pair(task_dir, args.steps)
    for adv, r in res.items():
        print(f"{adv}: " + "  ".join(f"{k} {v:.3f}" for k, v in r.items()))
    g, v = res["grpo"], res["grpo_vps"]
    print(f"acc_grpo: {g['acc_final']:.3f}")
    print(f"acc_vps: {v['acc_final']:.3f}")
    print(f"length_ratio: {v['len_final'] / g['len_final']:.3f}")


if __name__ == "__main__":
    main()
