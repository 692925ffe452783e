"""Attention-based credit (arXiv 2510.13554): cost of the signals in a training step, and the
direction of the effect at CPU scale (docs/attention_credit.md, issue targets: ≤ 1.05x time).

``--part step`` (default): one policy training step on SmolLM2-135M (Llama, 30 layers, 9 heads
of 64; float32, sdpa; default layers [10, 12, 15, 18, 20]) for a batch of 1 row of N tokens
(64 prompt + N−64 response), three variants interleaved in the same process:

- ``plain``: ``token_logprobs`` forward + the ``policy`` loss term (ppo, token-mean) + backward;
- ``hook``:  the same inside ``attention_credit.capture`` + ``streams`` (γ into the loss), i.e.
  exactly what DeepSpeedPolicyTrainer._micro_step runs, minus DeepSpeed (too heavy for 2 cores);
- ``naive``: a second copy of the model with eager attention, ``output_attentions=True`` in the
  training forward, signals computed from the returned maps of the same layers, then loss and
  backward (what one would write without the q/k capture).

Time: process CPU time (one thread unless OMP_NUM_THREADS says otherwise; robust to other
processes on a shared machine) and wall time, minimum over REPS interleaved runs after a
warm-up. On a loaded machine the direct ratio is noisy, so the signal pass's own wall time
(``attn_credit/signal_s``) is printed as well, with 1 + signal/plain. Peak memory: the step's
growth of the process's peak RSS (``/proc/self/clear_refs`` resets VmHWM before each run; Linux
only; the script re-execs itself with MALLOC_MMAP_THRESHOLD_=65536 so freed tensors leave the
RSS), max over runs. Ratios are between variants of this run.

``--part effect``: ``coupled`` vs plain GRPO with the same seeds and steps, each a full
``rlkit.runtime.run.train`` run of recipes/attention_credit_cpu.yaml on a multi-step arithmetic
task (``a+b-c=``, answered with its two steps, e.g. ``7+8=15,15-3=12 \\boxed{12}``). The tiny
model is SFT-warm-started once on chain-of-steps targets (half of them unboxed, so the reward
starts low); final accuracy = greedy exact boxed answer on 200 held-out problems with the final
checkpoint, plus the training reward of the last 5 steps. Each run writes curves.png.

    .venv/bin/python benchmarks/attention_credit.py --part step --lengths 512 1024
    .venv/bin/python benchmarks/attention_credit.py --part effect --steps 16 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

ROOT = Path(__file__).resolve().parents[1]
PROMPT_LEN = 64


# ---------------------------------------------------------------- memory and time probes
def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def measure(fn) -> tuple[float, float, float]:
    """(cpu_s, wall_s, peak_growth_mib) of one call of ``fn``."""
    import gc

    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    rss0 = _status_kib("VmRSS")
    c0, w0 = time.process_time(), time.perf_counter()
    fn()
    c1, w1 = time.process_time(), time.perf_counter()
    return c1 - c0, w1 - w0, (_status_kib("VmHWM") - rss0) / 1024


# ---------------------------------------------------------------- training-step variants
def _batch(n: int, vocab: int, seed: int = 0) -> dict:
    from rlkit.engines.train_batch import TrainSample, collate

    rng = random.Random(seed)
    ids = [rng.randrange(100, vocab) for _ in range(n)]
    resp = n - PROMPT_LEN
    return collate([TrainSample(ids[:PROMPT_LEN], ids[PROMPT_LEN:], [-1.0] * resp, 1.0)])


def _loss_backward(model, batch: dict, logp, logits) -> None:
    from rlkit.algos.loss_terms import LossContext, LossTerm, total_loss

    batch = {**batch, "behavior_logprobs": logp.detach()}
    norms = {"num_tokens": float(batch["response_mask"].sum()), "num_seqs": 1.0, "max_len": 1.0}
    ctx = LossContext(batch, logp, logits, "token-mean", norms)
    loss, _ = total_loss([LossTerm("policy")], ctx)
    loss.backward()
    model.zero_grad(set_to_none=True)


def step_plain(model, batch: dict) -> None:
    from rlkit.engines.logprobs import token_logprobs

    logp, logits = token_logprobs(model, batch["input_ids"], batch["attention_mask"])
    _loss_backward(model, batch, logp, logits)


def step_hook(model, batch: dict, hook) -> None:
    from rlkit.engines.logprobs import token_logprobs

    with hook.capture(model):
        logp, logits = token_logprobs(model, batch["input_ids"], batch["attention_mask"])
    batch = {**batch, **hook.streams(batch)}
    _loss_backward(model, batch, logp, logits)


def naive_signals(maps, start: int, window=10, lo=10, hi=100, frac=0.3):
    """WAAD / FAI of one row from full maps [H, N, N] (the definitions, vectorised)."""
    import torch

    h, n, _ = maps.shape
    lag = (torch.arange(n)[:, None] - torch.arange(n)[None, :]).float()
    d = (maps * lag.clamp(min=0)).sum(-1)[:, start:].mean(-1)
    k = max(1, int(frac * h))
    loc = torch.sort(d, stable=True).indices[:k]
    glob = torch.sort(d, descending=True, stable=True).indices[:k]
    waad = (maps[loc].mean(0) * lag.clamp(0, window)).sum(-1)
    band = ((lag >= lo) & (lag <= hi)).float()
    counts = band.sum(0).clamp(min=1)
    return waad, (maps[glob].mean(0) * band).sum(0) / counts


def step_naive(model, batch: dict, layers: list[int], strategy: str = "coupled") -> None:
    import torch

    from rlkit.methods.attention_credit import attention_gammas, input_frame

    out = model(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
        output_attentions=True,
    )  # fmt: skip
    logits = out.logits[:, :-1].float()
    logp = torch.log_softmax(logits, -1).gather(-1, batch["input_ids"][:, 1:, None])[..., 0]
    resp, starts = input_frame(batch)
    with torch.no_grad():
        maps = torch.cat([out.attentions[i][0] for i in layers]).detach()
        waad, fai = naive_signals(maps, starts[0])
        gam = attention_gammas(waad[None], fai[None], resp, strategy)
    del out, maps
    _loss_backward(model, {**batch, "adv_weight": gam[:, 1:]}, logp, logits)


def run_step_bench(lengths: list[int], reps: int) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    from rlkit.data.smollm2 import smollm2_folder
    from rlkit.methods.attention_credit import attention_credit, default_layers

    path = smollm2_folder()
    load = dict(dtype=torch.float32)
    model = AutoModelForCausalLM.from_pretrained(path, attn_implementation="sdpa", **load).train()
    eager = AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager", **load).train()
    layers = default_layers(model.config.num_hidden_layers)
    hook = attention_credit("coupled")
    print(f"SmolLM2-135M fp32, {torch.get_num_threads()} threads, layers {layers}, B=1")
    print(f"{'N':>5} {'variant':>7} {'cpu_s':>7} {'wall_s':>7} {'peak_MiB':>9}")
    for n in lengths:
        batch = _batch(n, model.config.vocab_size)
        variants = {
            "plain": lambda b=batch: step_plain(model, b),
            "hook": lambda b=batch: step_hook(model, b, hook),
            "naive": lambda b=batch: step_naive(eager, b, layers),
        }
        for fn in variants.values():
            fn()  # warm-up
        res = {k: [] for k in variants}
        signal_s = []
        for _ in range(reps):
            for k, fn in variants.items():
                res[k].append(measure(fn))
            signal_s.append(hook.metrics()["attn_credit/signal_s"])
        best = {k: (min(r[0] for r in v), min(r[1] for r in v), max(r[2] for r in v))
                for k, v in res.items()}  # fmt: skip
        for k, (c, w, m) in best.items():
            print(f"{n:>5} {k:>7} {c:7.2f} {w:7.2f} {m:9.1f}")
        (pc, pw, pm), (hc, hw, hm), (_, _, nm) = best["plain"], best["hook"], best["naive"]
        sig = min(signal_s)
        print(
            f"N={n}: time hook/plain {hc / pc:.3f}x cpu, {hw / pw:.3f}x wall; signal pass "
            f"{sig:.3f}s wall -> 1 + signal/plain = {1 + sig / pw:.3f}x; peak memory "
            f"hook/plain {hm / pm:.3f}x, hook/output_attentions {hm / nm:.3f}x"
        )


# ---------------------------------------------------------------- direction of effect
def chain_rows(n: int, seed: int, unboxed_rate: float = 0.0) -> list[dict]:
    """`a+b-c=` problems (operands 0..9, answer >= 0) with two-step chain targets."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a, b = rng.randint(0, 9), rng.randint(0, 9)
        c = rng.randint(0, a + b)
        s, y = a + b, a + b - c
        tail = f"{y}" if rng.random() < unboxed_rate else "\\boxed{" + str(y) + "}"
        rows.append({"prompt": f"{a}+{b}-{c}=", "answer": str(y),
                     "target": f"{a}+{b}={s},{s}-{c}={y} {tail}"})  # fmt: skip
    return rows


def greedy_accuracy(model_dir: str, rows: list[dict]) -> float:
    """Exact boxed answer with greedy decoding (HF generate, batch of all rows)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    hits = 0
    for r in rows:
        ids = tok(r["prompt"], return_tensors="pt", add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            eos = tok.eos_token_id
            out = model.generate(
                ids, max_new_tokens=32, do_sample=False, eos_token_id=eos, pad_token_id=eos
            )
        text = tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
        hits += ("\\boxed{" + r["answer"] + "}") in text
    return hits / max(1, len(rows))


def _warm_start(work: Path, sft_steps: int) -> Path:
    from rlkit.data.arithmetic import write_jsonl
    from rlkit.data.sft import sft_warm_start
    from rlkit.data.tiny_model import build_tiny_model

    out = work / "sft_model"
    write_jsonl(chain_rows(2000, seed=1), work / "prompts.jsonl")
    if not (out / "config.json").is_file():
        base = build_tiny_model(work / "base", seed=0)
        rows = chain_rows(4000, seed=7, unboxed_rate=0.6)
        t0 = time.perf_counter()
        sft_warm_start(base, rows, steps=sft_steps, lr=1e-3, batch_size=32, seed=0, out_dir=out,
                       log=None)  # fmt: skip
        print(f"SFT warm start: {sft_steps} steps in {time.perf_counter() - t0:.0f}s")
    return out


def _effect_run(name: str, hook: str, seed: int, steps: int, sft: Path, work: Path, held_out):
    """One rlkit.runtime.run.train run of the CPU recipe; (greedy acc, last-5 train reward)."""
    import json

    from rlkit.config.loader import load_recipe
    from rlkit.runtime.run import train

    overrides = [
        f"name=effect_{name}_s{seed}", f"seed={seed}", f"trainer.seed={seed}",
        "model.kind=path", f"model.path={sft}", "sft.steps=0", "data.kind=file",
        f"data.path={work / 'prompts.jsonl'}", "rollout.max_tokens=32",
        f"trainer.total_steps={steps}", f"algo.token_hook={hook}",
        f"logging.runs_dir={work / 'runs'}", "logging.console=false",
    ]  # fmt: skip
    cfg = load_recipe(ROOT / "recipes" / "attention_credit_cpu.yaml", overrides)
    t0 = time.perf_counter()
    run_dir = Path(train(cfg, log=lambda *_: None))
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    ckpt = max((run_dir / "checkpoints").glob("step_*"), key=lambda p: int(p.name[5:]))
    acc = greedy_accuracy(str(ckpt), held_out)
    first = sum(r["reward/mean"] for r in rows[:5]) / len(rows[:5])
    last = sum(r["reward/mean"] for r in rows[-5:]) / len(rows[-5:])
    print(
        f"{name:>8} seed {seed}: greedy acc {acc:.3f} | train reward first5 {first:.3f} -> "
        f"last5 {last:.3f} | {time.perf_counter() - t0:.0f}s | {run_dir / 'curves.png'}"
    )
    if hook != "null":
        keys = ("frac_amplified", "mean_gamma", "preplan_anchor_jaccard", "signal_over_forward")
        print("   ", {k: round(rows[-1][f"attn_credit/{k}"], 3) for k in keys})
    return acc, last


def run_effect(steps: int, sft_steps: int, work: Path, seeds: list[int]) -> None:
    sft = _warm_start(work, sft_steps)
    held_out = chain_rows(200, seed=99)
    print(f"SFT model greedy accuracy: {greedy_accuracy(str(sft), held_out):.3f}")
    res: dict[str, list] = {"grpo": [], "coupled": []}
    for seed in seeds:
        for name, hook in (("grpo", "null"), ("coupled", "attention_credit")):
            res[name].append(_effect_run(name, hook, seed, steps, sft, work, held_out))
    for name, vals in res.items():
        accs, lasts = [v[0] for v in vals], [v[1] for v in vals]
        print(
            f"{name:>8}: mean greedy acc {sum(accs) / len(accs):.3f} {accs} | mean last5 "
            f"train reward {sum(lasts) / len(lasts):.3f}"
        )


def _exact_rss_malloc() -> None:
    """Re-exec with glibc returning every block >= 64 KiB to the OS on free (mmap), so the RSS
    peak of a step is its tensors' peak, not what earlier steps left in the heap."""
    if os.environ.get("MALLOC_MMAP_THRESHOLD_") != "65536":
        os.environ.update(MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
        os.environ.setdefault("OMP_NUM_THREADS", "1")  # no spin-waiting threads in the CPU time
        os.execv(sys.executable, [sys.executable, *sys.argv])


def build_parser() -> argparse.ArgumentParser:
    """The command line (tests/unit/test_documented_commands.py parses the documented ones)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--part", choices=["step", "effect", "all"], default="step")
    ap.add_argument("--lengths", type=int, nargs="+", default=[512, 1024])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--sft-steps", type=int, default=500)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "bench_attention_credit")
    return ap


def main() -> None:
    args = build_parser().parse_args()
    if args.part in ("step", "all"):
        _exact_rss_malloc()
        run_step_bench(args.lengths, args.reps)
    if args.part in ("effect", "all"):
        args.work.mkdir(parents=True, exist_ok=True)
        run_effect(args.steps, args.sft_steps, args.work, args.seeds)


if __name__ == "__main__":
    main()
