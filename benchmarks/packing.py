"""Padding-free packing vs padding: trainer forward + backward tokens/s and peak memory.

One micro-batch of `--seqs` rows (prompt ⊕ response) with long-tailed response lengths
(log-normal, median `--median`, σ `--sigma`, each row capped at `--max-len` tokens), through
exactly the trainer's forward (`rlkit.engines.logprobs.micro_batch_forward`: the chunked
log-prob pass, packed or padded) and a token-mean policy-gradient loss, then backward:

- ``padded``: the [b, L] right-padded batch (L = longest row), 2-D attention mask;
- ``packed``: one [1, Σ n_i] row, position ids restarting per sequence, attention
  block-diagonal (transformers derives it from the position ids: the varlen flash kernel with
  ``flash_attention_2``, a 4-D mask with sdpa; ``--packed-mask explicit`` passes our own
  additive 4-D mask instead, sdpa/eager only).

Model: ``smollm2-config`` = a LlamaForCausalLM with SmolLM2-135M's shape (30 layers, hidden
576, 9 heads / 3 kv heads, intermediate 1536, vocab 49152, tied embeddings) and random weights,
built from the hard-coded config (no files); ``--layers N`` shrinks it for CPU.  CUDA: bf16 and
``flash_attention_2`` when transformers can load it, else sdpa for the padded variant and, for
the packed one, torch's own flash varlen kernel (``torch.nn.attention.varlen``, registered as the
``torch_varlen`` attention function) when this torch has it (printed).  CPU: float32, sdpa.

Tokens/s counts the *real* tokens (Σ n_i) for both variants, so their ratio is the step-time
ratio.  Time: wall (CUDA synchronised), the minimum over `--reps` interleaved runs after a
warm-up.  Peak memory: CUDA ``max_memory_allocated`` growth over the step; CPU the growth of the
process's peak RSS (``/proc/self/clear_refs`` resets VmHWM; the script re-execs itself with
MALLOC_MMAP_THRESHOLD_=65536 so freed tensors leave the RSS), max over runs.  Both include the
parameter gradients (equal in both variants).  The two losses are compared as a check.

Imports torch, transformers and rlkit.engines (micro_batches, logprobs) only (no deepspeed /
ray / vllm).

    python benchmarks/packing.py --device cpu --layers 2 --max-len 512
    python benchmarks/packing.py --device cuda            # 30 layers, 16 rows, max 1024
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from rlkit.engines.logprobs import forward_logprobs, micro_batch_forward  # noqa: E402
from rlkit.engines.micro_batches import block_causal_mask, build, pack, unpack  # noqa: E402
from rlkit.engines.train_batch import TrainSample, collate  # noqa: E402

SMOLLM2_135M = dict(  # HuggingFaceTB/SmolLM2-135M config.json
    vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
    num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
    rms_norm_eps=1e-5, rope_theta=100000.0, tie_word_embeddings=True, hidden_act="silu",
    bos_token_id=0, eos_token_id=0, pad_token_id=0,
)  # fmt: skip


def build_model(layers: int, device: str, attn: str):
    """SmolLM2-135M's architecture with random weights (bf16 on CUDA, float32 on CPU)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(**{**SMOLLM2_135M, "num_hidden_layers": layers})
    cfg._attn_implementation = attn
    torch.manual_seed(0)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    return LlamaForCausalLM(cfg).to(device=device, dtype=dtype).train()


def pick_attention(device: str, requested: str) -> str:
    """`requested` unless "auto": flash_attention_2 on CUDA when its kernel loads, else sdpa."""
    if requested != "auto":
        return requested
    if device == "cuda":
        try:
            from transformers.utils import is_flash_attn_2_available

            if is_flash_attn_2_available():
                return "flash_attention_2"
        except ImportError:
            pass
    return "sdpa"


def register_torch_varlen() -> str | None:
    """Register ``torch_varlen``: torch's own flash varlen kernel
    (``torch.nn.attention.varlen.varlen_attn``, CUDA) as a transformers attention function for
    packed rows, the sequence boundaries (cu_seqlens) taken from the position-id restarts.  The
    name is unknown to transformers' mask builders, so no N x N mask is made.  None when this
    torch has no such kernel."""
    import inspect

    try:
        from torch.nn.attention.varlen import varlen_attn
        from transformers import AttentionInterface
    except ImportError:
        return None
    params = inspect.signature(varlen_attn).parameters
    causal = {"window_size": (-1, 0)} if "window_size" in params else {"is_causal": True}

    def attend(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kw):
        pos = kw["position_ids"].reshape(-1)  # [1, N] packed row
        starts = (pos == 0).nonzero().reshape(-1).to(torch.int32)
        n = torch.tensor([pos.numel()], dtype=torch.int32, device=pos.device)
        cu = torch.cat([starts, n])
        max_len = int(cu.diff().max())
        q, k, v = (t[0].transpose(0, 1) for t in (query, key, value))  # [N, H, D]
        if k.shape[1] != q.shape[1]:  # GQA: repeat the kv heads
            rep = q.shape[1] // k.shape[1]
            k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
        out = varlen_attn(q, k, v, cu, cu, max_len, max_len, scale=scaling, **causal)
        return out[None], None  # [1, N, H, D]

    AttentionInterface.register("torch_varlen", attend)
    return "torch_varlen"


def make_samples(args: argparse.Namespace, vocab: int) -> list[TrainSample]:
    """Rows of `--prompt` tokens + a log-normal response length, capped at `--max-len`."""
    rng = random.Random(args.seed)
    out = []
    for _ in range(args.seqs):
        n = int(rng.lognormvariate(math.log(args.median), args.sigma))
        n = max(1, min(n, args.max_len - args.prompt))
        ids = [rng.randrange(1, vocab) for _ in range(args.prompt + n)]
        out.append(TrainSample(ids[: args.prompt], ids[args.prompt :], [0.0] * n, 1.0))
    return out


def step(model, samples: list[TrainSample], variant: str, explicit_mask: bool, attn: dict) -> float:
    """Forward (the trainer's log-prob pass) + token-mean PG loss + backward; returns the loss.
    `attn[variant]`: the attention implementation this variant runs with."""
    model.config._attn_implementation = attn[variant]
    model.zero_grad(set_to_none=True)
    dev = next(model.parameters()).device
    if variant == "packed" and explicit_mask:
        p = pack(samples)
        mask = block_causal_mask(p.seq_lens, next(model.parameters()).dtype, dev)
        lp, _, _ = forward_logprobs(
            model, p.input_ids.to(dev), mask, position_ids=p.position_ids.to(dev)
        )
        batch, logp = collate(samples), unpack(lp, p.seq_lens)
    else:
        mb = build(samples, 0, packing=variant == "packed")
        batch, (logp, _, _) = mb.batch, micro_batch_forward(model, mb)
    m = batch["response_mask"].to(dev)
    loss = -(logp * m * batch["advantages"].to(dev)).sum() / m.sum()
    loss.backward()
    return float(loss.detach())


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def measure(fn, device: str) -> tuple[float, float, float]:
    """(wall_s, peak_growth_mib, fn's value) of one call of `fn`."""
    import gc

    gc.collect()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
        base = _status_kib("VmRSS") * 1024
    t0 = time.perf_counter()
    value = fn()
    if device == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = _status_kib("VmHWM") * 1024
    return time.perf_counter() - t0, (peak - base) / 2**20, value


def run(args: argparse.Namespace) -> None:
    attn = pick_attention(args.device, args.attn)
    model = build_model(args.layers, args.device, attn)
    packed_attn = attn
    if args.device == "cuda" and attn == "sdpa" and args.packed_mask == "native":
        packed_attn = register_torch_varlen() or attn  # sdpa's N x N mask otherwise
    impl = {"padded": attn, "packed": packed_attn}
    samples = make_samples(args, SMOLLM2_135M["vocab_size"])
    lens = [len(s.prompt_ids) + len(s.response_ids) for s in samples]
    real, padded = sum(lens), len(lens) * max(lens)
    packed_how = "explicit 4-D additive mask" if args.packed_mask == "explicit" else (
        "flash varlen kernel (cu_seqlens from the position ids)" if packed_attn != "sdpa"
        else "4-D block-diagonal mask built by transformers from the position ids"
    )  # fmt: skip
    print(f"device {args.device}  dtype {next(model.parameters()).dtype}  attention {attn}")
    print(f"packed attention: {packed_attn}, {packed_how}")
    print(f"model smollm2-config layers {args.layers}; {len(lens)} rows, lengths {sorted(lens)}")
    print(f"tokens: real {real}, padded {padded} ({padded / real:.2f}x)")
    variants = ("padded", "packed")
    for v in variants:  # warm-up (kernels, allocator)
        step(model, samples, v, args.packed_mask == "explicit", impl)
    best = {v: math.inf for v in variants}
    mem = {v: 0.0 for v in variants}
    loss = {}
    for _ in range(args.reps):
        for v in variants:
            wall, peak, loss[v] = measure(
                lambda v=v: step(model, samples, v, args.packed_mask == "explicit", impl),
                args.device,
            )
            best[v], mem[v] = min(best[v], wall), max(mem[v], peak)
    for v in variants:
        print(
            f"{v:7s} step {best[v]:.3f} s  {real / best[v]:9.1f} tokens/s  "
            f"peak +{mem[v]:.0f} MiB  loss {loss[v]:.6f}"
        )
    print(f"loss |packed - padded| = {abs(loss['packed'] - loss['padded']):.2e}")
    print(
        f"packed_vs_padded tokens_per_s: {best['padded'] / best['packed']:.2f} "
        f"peak_mem: {mem['packed'] / max(mem['padded'], 1e-9):.2f}"
    )


def build_parser() -> argparse.ArgumentParser:
    """The command line (tests/unit/test_documented_commands.py parses the documented ones)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--model", choices=["smollm2-config"], default="smollm2-config")
    ap.add_argument("--layers", type=int, default=SMOLLM2_135M["num_hidden_layers"])
    ap.add_argument("--seqs", type=int, default=16)
    ap.add_argument("--max-len", type=int, default=1024)
    ap.add_argument("--prompt", type=int, default=64, help="prompt tokens per row")
    ap.add_argument("--median", type=float, default=150.0, help="median response length")
    ap.add_argument("--sigma", type=float, default=1.0, help="log-normal σ of response length")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--attn", default="auto", help="auto | sdpa | eager | flash_attention_2")
    ap.add_argument("--packed-mask", choices=["native", "explicit"], default="native")
    return ap


def main() -> None:
    args = build_parser().parse_args()
    if args.device == "cpu" and os.environ.get("MALLOC_MMAP_THRESHOLD_") != "65536":
        os.environ.update(MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
        os.execv(sys.executable, [sys.executable, *sys.argv])
    run(args)


if __name__ == "__main__":
    main()
