"""GRPO step time: rlkit (sync and async) vs TRL's GRPOTrainer on the same machine.

Same model (SmolLM2-135M-Instruct, rlkit.data.smollm2), same prompts (rlkit's arithmetic stream
with the chat template, answers checked by `rewards.math:accuracy`), same group size, max new
tokens, temperature, learning rate, no KL, float32, and the same cores (TRL: one process with
every core's thread; rlkit: `placement` auto, i.e. colocated threads in sync mode and each stage
its reserved CPUs in async mode, the trainer borrowing the rollout's while it idles, see
rlkit.runtime.placement.threads and rlkit.runtime.placement.core_lease).  `async_vs_bound`
compares the async step with the bound of perfect overlap on these cores: the sync run's
rollout + train times.

TRL is a bench-only optional dependency (`pip install trl`); without it the script measures
rlkit's sync and async loops only and says so.  Every configuration runs in its own process;
the first step of each is warm-up and is left out of the mean.  Prints one line per
configuration and `speedup_vs_trl: X` (TRL s/step over rlkit sync s/step) on the last line.

    python benchmarks/grpo_vs_trl.py [--steps 3] [--prompts 8] [--samples 8] [--max-tokens 64]
    python benchmarks/grpo_vs_trl.py --defaults [--steps 3]

`--defaults` runs the recipe as a user writes it (`defaults_recipe`): the task, the group shape,
the learning rate and the async mode, raw prompts (no chat template), every other key at
rlkit's defaults (trainer world size, ZeRO stage, micro-batches, placement, Ray CPUs, context
length); TRL gets the same raw prompts and its own defaults but for the shared settings.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
for _k, _v in {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "TOKENIZERS_PARALLELISM": "false",
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "HF_HUB_OFFLINE": "1",
    "RAY_USAGE_STATS_ENABLED": "0",
}.items():
    os.environ.setdefault(_k, _v)

TEMPLATE = "Compute {prompt} Put the final answer in \\boxed{}."
# the prompts of every configuration: rlkit's arithmetic stream
DATA = {
    "kind": "arithmetic",
    "num_prompts": 2000,
    "max_operand": 50,
    "ops": "+-",
    "prompt_template": TEMPLATE,
}


def recipe(a: argparse.Namespace, tmp: str, mode: str, alpha: int) -> dict:
    """The rlkit recipe of one configuration (`mode`: sync or async)."""
    return {
        "name": f"bench_{mode}_a{alpha}",
        "seed": 0,
        "model": {"kind": "smollm2", "chat_template": True},
        "data": dict(DATA),
        "rollout": {
            "engine": "vllm",
            "prompts_per_step": a.prompts,
            "samples_per_prompt": a.samples,
            "max_tokens": a.max_tokens,
            "temperature": a.temperature,
            "max_model_len": 512,
        },
        "trainer": {
            "world_size": a.world,
            "zero_stage": 2,
            "lr": a.lr,
            "micro_batch_size": a.micro,
            "micro_batch_tokens": a.micro_tokens,
            "total_steps": a.steps,
        },
        "algo": {"advantage": "grpo", "policy_loss": "ppo", "agg": "token-mean"},
        "async": {"mode": mode, "alpha": alpha},
        "reward": {"fns": [{"fn": "rewards.math:accuracy"}], "mode": "thread"},
        "ray": {"num_cpus": a.cores},
        "placement": a.placement,
        "logging": {"runs_dir": f"{tmp}/runs", "tensorboard": False, "console": False},
    }


def defaults_recipe(a: argparse.Namespace, tmp: str, mode: str, alpha: int) -> dict:
    """A recipe as a user writes it (`--defaults`): only what the task needs is set."""
    return {
        "name": f"bench_defaults_{mode}_a{alpha}",
        "model": {"kind": "smollm2"},
        "data": dict(DATA),
        "rollout": {
            "prompts_per_step": a.prompts,
            "samples_per_prompt": a.samples,
            "max_tokens": a.max_tokens,
        },
        "trainer": {"lr": a.lr, "total_steps": a.steps},
        "algo": {"advantage": "grpo"},
        "async": {"mode": mode, "alpha": alpha},
        "reward": {"fns": [{"fn": "rewards.math:accuracy"}]},
        "logging": {"runs_dir": f"{tmp}/runs", "tensorboard": False, "console": False},
    }


def bench_recipe(a: argparse.Namespace, tmp: str, mode: str, alpha: int) -> dict:
    return (defaults_recipe if a.defaults else recipe)(a, tmp, mode, alpha)


def one_rlkit(a: argparse.Namespace, mode: str, alpha: int) -> dict:
    from rlkit.config.loader import config_from_dict
    from rlkit.runtime.controller.metrics_logger import read_metrics
    from rlkit.runtime.run import train

    with tempfile.TemporaryDirectory(prefix="rlkit_trl_bench_") as tmp:
        rows = read_metrics(train(config_from_dict(bench_recipe(a, tmp, mode, alpha)), log=print))
    keep = rows[1:] or rows
    mean = lambda k: sum(r.get(k, 0.0) for r in keep) / len(keep)  # noqa: E731
    keys = (
        "time/step_s",
        "time/rollout_s",
        "time/train_s",
        "perf/rollout_busy_frac",
        "perf/train_busy_frac",
        "perf/train_borrowed_frac",
        "throughput/tokens_per_s",
        "reward/mean",
    )
    return {k: mean(k) for k in keys} | {"steps": [r["time/step_s"] for r in rows]}


def prompts_and_answers(a: argparse.Namespace, n: int) -> list[tuple[str, str]]:
    """The first `n` prompts of rlkit's stream for the same recipe (text, answer)."""
    from rlkit.config.loader import config_from_dict
    from rlkit.data.smollm2 import smollm2_folder
    from rlkit.runtime.prepare import prompt_stream

    cfg = config_from_dict(bench_recipe(a, tempfile.gettempdir(), "sync", 0))
    stream = prompt_stream(cfg, str(smollm2_folder()))
    return [(p.text, str(p.fields["answer"])) for p, _ in zip(stream, range(n))]


def one_trl(a: argparse.Namespace) -> dict:
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from rewards.math import accuracy
    from rlkit.data.smollm2 import smollm2_folder

    torch.set_num_threads(a.cores)
    rows = prompts_and_answers(a, a.prompts * a.steps)
    chat = not a.defaults  # raw prompts (plain-text completions) as the defaults recipe
    data = Dataset.from_list(
        [
            {"prompt": [{"role": "user", "content": t}] if chat else t, "answer": ans}
            for t, ans in rows
        ]
    )

    def reward(prompts, completions, answer, **_):
        texts = [c[0]["content"] if chat else c for c in completions]
        return [accuracy("", t, g) for t, g in zip(texts, answer)]

    times: list[float] = []

    class Clock(TrainerCallback):
        def on_step_begin(self, *args, **kw):
            self.t0 = time.perf_counter()

        def on_step_end(self, *args, **kw):
            times.append(time.perf_counter() - self.t0)

    with tempfile.TemporaryDirectory(prefix="trl_bench_") as tmp:
        conf = GRPOConfig(
            output_dir=tmp,
            per_device_train_batch_size=a.prompts * a.samples,
            gradient_accumulation_steps=1,
            num_generations=a.samples,
            max_completion_length=a.max_tokens,
            temperature=a.temperature,
            top_p=1.0,
            learning_rate=a.lr,
            beta=0.0,
            max_steps=a.steps,
            logging_steps=1,
            save_strategy="no",
            report_to="none",
            use_cpu=True,
            bf16=False,
            seed=0,
            lr_scheduler_type="constant",
            max_grad_norm=1.0,
            model_init_kwargs={"dtype": torch.float32},
        )
        trainer = GRPOTrainer(
            model=str(smollm2_folder()),
            reward_funcs=reward,
            args=conf,
            train_dataset=data,
            callbacks=[Clock()],
        )
        trainer.train()
    keep = times[1:] or times
    return {"time/step_s": sum(keep) / len(keep), "steps": times}


def spawn(a: argparse.Namespace, which: str) -> dict | None:
    """Run one configuration in a fresh process; its result, or None if it failed."""
    argv = [sys.executable, __file__, "--one", which] + [
        f"--{k.replace('_', '-')}={v}"
        for k, v in vars(a).items()
        if k not in ("one", "defaults") and v is not None
    ]
    argv += ["--defaults"] if a.defaults else []
    load0 = os.getloadavg()[0]
    out = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT)
    print(f"[{which}] load average (1 min) {load0:.1f} -> {os.getloadavg()[0]:.1f}", flush=True)
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    text = out.stdout + out.stderr
    causes = [ln for ln in text.splitlines() if "Error" in ln or "Killed" in ln][-8:]
    print(f"[{which}] failed (rc {out.returncode}):\n" + "\n".join(causes) + text[-1500:])
    return None


def have_trl() -> bool:
    try:
        import trl  # noqa: F401
    except ImportError:
        return False
    return True


def build_parser() -> argparse.ArgumentParser:
    """The command line (tests/unit/test_documented_commands.py parses the documented ones)."""
    p = argparse.ArgumentParser()
    p.add_argument("--one", default=None)
    for name, default in (
        ("steps", 3),
        ("prompts", 8),
        ("samples", 8),
        ("max-tokens", 64),
        ("world", 1),
        ("micro", 16),
        ("micro-tokens", 0),
        ("cores", 2),
    ):
        p.add_argument(f"--{name}", type=int, default=default)
    p.add_argument("--lr", type=float, default=1e-6)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--placement", default="auto", help="auto | colocated | disaggregated")
    p.add_argument(
        "--defaults",
        action="store_true",
        help="run the recipe as a user writes it: rlkit's defaults but for the task (see above)",
    )
    return p


def main() -> None:
    a = build_parser().parse_args()
    if a.one:
        res = one_trl(a) if a.one == "trl" else one_rlkit(a, *_mode(a.one))
        print("RESULT " + json.dumps(res))
        return
    print(f"load average at start: {os.getloadavg()}")
    res = {}
    if have_trl():
        res["trl"] = spawn(a, "trl")
    else:
        print("trl not installed (bench-only: `pip install trl`): measuring rlkit only")
    for which in ("sync", "async1"):
        res[which] = spawn(a, which)
    for which, r in res.items():
        if r is not None:
            extra = {k: round(v, 3) for k, v in r.items() if k not in ("steps", "time/step_s")}
            steps = [round(s, 2) for s in r["steps"]]
            print(f"{which}: {r['time/step_s']:.2f} s/step (steps {steps}) {extra}")
    print(f"load average at end: {os.getloadavg()}")
    base = res.get("trl")
    for which in ("async1", "sync"):
        if base and res.get(which):
            print(f"speedup_{which}_vs_trl: {base['time/step_s'] / res[which]['time/step_s']:.2f}")
    if res.get("sync") and res.get("async1"):
        # the bound of an overlapped step: every stage's compute on all cores, one after the
        # other, i.e. the synchronous stage times (rollout + train, each with every core)
        bound = res["sync"]["time/rollout_s"] + res["sync"]["time/train_s"]
        print(f"async_vs_bound: {res['async1']['time/step_s'] / bound:.2f} (bound {bound:.2f} s)")
    if base and res.get("sync"):
        print(f"speedup_vs_trl: {base['time/step_s'] / res['sync']['time/step_s']:.2f}")
    else:
        print("speedup_vs_trl: n/a")


def _mode(which: str) -> tuple[str, int]:
    return ("sync", 0) if which == "sync" else ("async", int(which.removeprefix("async")))


if __name__ == "__main__":
    main()
