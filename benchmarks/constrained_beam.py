"""rlkit's constrained beam search (vLLM engine) vs transformers `generate` with
`prefix_allowed_tokens_fn` on SmolLM2-135M-Instruct and the MovieLens-100K catalogue (ReRe,
arXiv 2510.12211; docs/rere.md).

    python -m benchmarks.constrained_beam [--users 32] [--beams 16] [--block-size 32]

Both sides decode the same prompts (the `rlkit eval` rec prompt of the first N test rows) under
the same item trie; the beams must be identical (token ids; scores to 1e-4). Timed: rlkit's
`beam_search` for all users in one call (engine start excluded) and transformers `generate`
user by user (the contract's reference; engine load excluded). Also reported: trie build time
and memory for 50,000 synthetic titles. The last line is `speedup_vs_hf: X`.

Data: `--data DIR` with ml-100k.inter/.item, else `$RLKIT_CACHE/ml-100k` (default
~/.cache/rlkit/ml-100k), fetched once from the PyPI recbole==1.2.1 wheel with pip.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
import tracemalloc
import zipfile
from pathlib import Path


def ml100k_dir(path: str | None) -> Path:
    """A folder with ml-100k.inter/.item: `path`, or the cache (fetched from recbole's wheel)."""
    from rlkit.data.smollm2 import cache_root

    target = Path(path) if path else cache_root() / "ml-100k"
    if (target / "ml-100k.item").is_file():
        return target
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "recbole==1.2.1", "-d", tmp]
        subprocess.run(cmd, check=True, capture_output=True)
        (wheel,) = Path(tmp).glob("recbole-*.whl")
        target.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheel) as zf:
            for name in ("ml-100k.inter", "ml-100k.item", "ml-100k.user"):
                (target / name).write_bytes(zf.read(f"recbole/dataset_example/ml-100k/{name}"))
    return target


def synthetic_trie_stats(tokenizer, n: int = 50_000) -> dict[str, float]:
    """Build time (tokenising included / excluded) and memory of a trie of n random titles."""
    from rlkit.methods.rere.item_trie import ItemTrie

    rng = random.Random(0)
    words = [
        f"{a}{b}"
        for a in ("st", "gr", "bl", "tr", "m", "k", "sh", "p")
        for b in ("ar", "one", "ix", "ead", "ow", "ing", "ust", "elm", "ore", "ank")
    ]
    titles = [
        " ".join(rng.choice(words).title() for _ in range(rng.randint(1, 6)))
        + f" ({rng.randint(1930, 2024)})"
        for _ in range(n)
    ]
    t0 = time.perf_counter()
    trie = ItemTrie.from_tokenizer(tokenizer, titles)
    total = time.perf_counter() - t0
    seqs = trie.sequences()
    tracemalloc.start()
    t0 = time.perf_counter()
    again = ItemTrie.from_sequences(seqs, tokenizer.eos_token_id)
    build = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {
        "items": len(again),
        "build_with_tokenise_s": total,
        "build_from_ids_s": build,
        "trie_mib": again.nbytes / 2**20,
        "build_peak_mib": peak / 2**20,
    }


def cpu_seconds() -> float:
    """CPU time of this process and its live children (vLLM's EngineCore and workers)."""
    import psutil

    me = psutil.Process()
    total = sum(me.cpu_times()[:2])
    for child in me.children(recursive=True):
        try:
            total += sum(child.cpu_times()[:2])
        except psutil.Error:
            pass
    return total


def hf_reference(model_dir: str, prompts, trie, beams: int, max_tokens: int):
    """transformers generate per user; returns (beams per user, wall s, cpu s)."""
    import torch
    from transformers import AutoModelForCausalLM

    from rlkit.methods.rere.beam_search import transformers_reference

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    t0, c0 = time.perf_counter(), cpu_seconds()
    out = [transformers_reference(model, p, trie, beams, max_tokens) for p in prompts]
    return out, time.perf_counter() - t0, cpu_seconds() - c0


def rlkit_vllm(model_dir: str, prompts, trie, beams: int, max_tokens: int, block_size):
    """rlkit's beam search on the vLLM engine; returns (beams per user, wall s, cpu s)."""
    from rlkit.engines import make_rollout_engine
    from rlkit.methods.rere.beam_search import beam_search

    longest = max(len(p) for p in prompts) + max_tokens
    eng = make_rollout_engine(
        "vllm", model_dir, max_model_len=longest + 8, block_size=block_size, seed=0
    )
    beam_search(eng, prompts[:1], 2, 4, allowed_sequences=trie)  # warm-up (kernels, caches)
    eng.llm.reset_prefix_cache()
    t0, c0 = time.perf_counter(), cpu_seconds()
    out = beam_search(eng, prompts, beams, max_tokens, allowed_sequences=trie)
    seconds, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    eng.llm.llm_engine.engine_core.shutdown()
    return [[(b.token_ids, b.score) for b in row] for row in out], seconds, cpu


def compare(ours, ref) -> tuple[int, int]:
    """(users with identical beams, users with the same ids but a score off by > 1e-4)."""
    same = score_off = 0
    for a, b in zip(ours, ref, strict=True):
        if [i for i, _ in a] == [i for i, _ in b]:
            same += 1
            score_off += any(abs(x - y) > 1e-4 for (_, x), (_, y) in zip(a, b))
    return same, score_off


def build_parser() -> argparse.ArgumentParser:
    """The command line (tests/unit/test_documented_commands.py parses the documented ones)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=None, help="default: SmolLM2-135M-Instruct (cached)")
    p.add_argument("--data", default=None, help="ml-100k folder (default: cache / recbole)")
    p.add_argument("--users", type=int, default=32)
    p.add_argument("--beams", type=int, default=16)
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--block-size", type=int, default=32, help="vLLM KV block size (CPU: 32k)")
    return p


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)

    from transformers import AutoTokenizer

    from rlkit.data.smollm2 import smollm2_folder
    from rlkit.eval.generation import encode_prompts
    from rlkit.eval.runner import _ml100k_rows
    from rlkit.eval.suites import rec_prompt_text
    from rlkit.methods.rere.item_trie import ItemTrie

    model_dir = a.model or str(smollm2_folder())
    tok = AutoTokenizer.from_pretrained(model_dir)
    rows, catalogue = _ml100k_rows(str(ml100k_dir(a.data)), None)
    prompts = encode_prompts(tok, [rec_prompt_text(r["history"]) for r in rows[: a.users]])
    t0 = time.perf_counter()
    trie = ItemTrie.from_tokenizer(tok, catalogue)
    print(
        f"ml-100k: {len(trie)} items, trie {time.perf_counter() - t0:.3f}s; "
        f"{len(prompts)} users, prompts {min(map(len, prompts))}-{max(map(len, prompts))} tok"
    )
    for key, val in synthetic_trie_stats(tok).items():
        print(f"trie_50k_{key}: {val:.3f}" if isinstance(val, float) else f"trie_50k_{key}: {val}")

    ours, t_ours, c_ours = rlkit_vllm(model_dir, prompts, trie, a.beams, a.max_tokens, a.block_size)
    print(f"rlkit_vllm_s: {t_ours:.1f} wall, {c_ours:.1f} cpu", flush=True)
    ref, t_hf, c_hf = hf_reference(model_dir, prompts, trie, a.beams, a.max_tokens)
    print(f"hf_generate_s: {t_hf:.1f} wall, {c_hf:.1f} cpu")
    same, off = compare(ours, ref)
    print(f"identical_beams: {same}/{len(prompts)} users (score > 1e-4 off: {off})")
    hits = sum(trie.decode_item(b[0][0]) == r["target"] for b, r in zip(ours, rows) if b)
    print(f"top1_hits: {hits}/{len(prompts)}")
    print(f"cpu_time_ratio_hf_over_rlkit: {c_hf / c_ours:.2f}")
    print(f"speedup_vs_hf: {t_hf / t_ours:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
