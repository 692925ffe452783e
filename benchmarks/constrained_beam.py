"""rlkit's constrained beam search (HF and vLLM engines) vs transformers `generate` with
`prefix_allowed_tokens_fn` on SmolLM2-135M-Instruct and the MovieLens-100K catalogue or 50,000
synthetic titles (ReRe, arXiv 2510.12211; docs/rere.md).

    python -m benchmarks.constrained_beam [--users 32] [--beams 16] [--catalogue ml100k]
        [--engines hf,vllm] [--hf-batch 8] [--skip-per-user] [--block-size 32]

Both sides decode the same prompts (the `rlkit eval` rec prompt of the first N test rows) under
the same item trie; the beams must be identical (token ids; scores to 1e-4). Timed: rlkit's
`beam_search` for all users in one call on each engine of `--engines` (engine start
excluded), and transformers `generate` two ways: `--hf-batch` users per call (left-padded) and
user by user (the contract's reference for identical beams; engine load excluded).
`speedup_vs_hf` = the faster transformers time / the faster rlkit engine's time. Also
reported: trie build time and memory for 50,000 synthetic titles. The last line is
`speedup_vs_hf: X (engine, ...)`.

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


def synthetic_titles(n: int = 50_000) -> list[str]:
    """n random movie-like titles (seeded): the large catalogue of the benchmark."""
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
    return titles


def synthetic_trie_stats(tokenizer, n: int = 50_000) -> dict[str, float]:
    """Build time (tokenising included / excluded) and memory of a trie of n random titles."""
    from rlkit.methods.rere.item_trie import ItemTrie

    titles = synthetic_titles(n)
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


def hf_batched(model_dir: str, prompts, trie, beams: int, max_tokens: int, batch: int):
    """transformers generate over `batch` users at a time (left-padded); returns (beams per
    user as (response ids, score), wall s, cpu s)."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    eos, out = trie.eos_token_id, []
    t0, c0 = time.perf_counter(), cpu_seconds()
    for start in range(0, len(prompts), batch):
        group = prompts[start : start + batch]
        width = max(map(len, group))
        ids = torch.zeros(len(group), width, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for r, p in enumerate(group):
            ids[r, width - len(p) :], mask[r, width - len(p) :] = torch.tensor(p), 1

        def allowed(_batch_id: int, seq, width=width):
            return trie.allowed(seq[width:].tolist()) or [eos]

        with torch.no_grad():
            gen = model.generate(
                ids, attention_mask=mask, num_beams=beams, num_return_sequences=beams,
                do_sample=False, length_penalty=0.0, prefix_allowed_tokens_fn=allowed,
                max_new_tokens=max_tokens, pad_token_id=eos, output_scores=True,
                return_dict_in_generate=True,
            )  # fmt: skip
        for u in range(len(group)):
            rows = range(u * beams, (u + 1) * beams)
            res = []
            for r in rows:
                n = int((gen.beam_indices[r] != -1).sum())
                if gen.sequences_scores[r].item() > -1e8:
                    res.append(
                        (
                            gen.sequences[r, width : width + n].tolist(),
                            gen.sequences_scores[r].item(),
                        )
                    )
            out.append(res)
    return out, time.perf_counter() - t0, cpu_seconds() - c0


def rlkit_hf(model_dir: str, prompts, trie, beams: int, max_tokens: int):
    """rlkit's beam search on the HF engine (KV cache kept between steps)."""
    from rlkit.engines.hf_engine import HFEngine
    from rlkit.methods.rere.beam_search import beam_search

    eng = HFEngine(model_dir)
    t0, c0 = time.perf_counter(), cpu_seconds()
    out = beam_search(eng, prompts, beams, max_tokens, allowed_sequences=trie)
    seconds, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    return [[(b.token_ids, b.score) for b in row] for row in out], seconds, cpu


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
    p.add_argument(
        "--catalogue", choices=["ml100k", "synthetic"], default="ml100k",
        help="beams over the ML-100K titles or 50,000 synthetic ones (same ML-100K prompts)",
    )  # fmt: skip
    p.add_argument("--engines", default="hf,vllm", help="rlkit engines to time (hf, vllm)")
    p.add_argument("--hf-batch", type=int, default=8, help="users per batched generate call")
    p.add_argument("--skip-per-user", action="store_true", help="no one-user-at-a-time run")
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
    if a.catalogue == "synthetic":
        catalogue = synthetic_titles()
    t0 = time.perf_counter()
    trie = ItemTrie.from_tokenizer(tok, catalogue)
    print(
        f"{a.catalogue}: {len(trie)} items, trie {time.perf_counter() - t0:.3f}s; "
        f"{len(prompts)} users, prompts {min(map(len, prompts))}-{max(map(len, prompts))} tok"
    )
    for key, val in synthetic_trie_stats(tok).items():
        print(f"trie_50k_{key}: {val:.3f}" if isinstance(val, float) else f"trie_50k_{key}: {val}")

    runs = {}
    for name in a.engines.split(","):
        if name == "vllm":
            runs[name] = rlkit_vllm(model_dir, prompts, trie, a.beams, a.max_tokens, a.block_size)
        else:
            runs[name] = rlkit_hf(model_dir, prompts, trie, a.beams, a.max_tokens)
        print(f"rlkit_{name}_s: {runs[name][1]:.1f} wall, {runs[name][2]:.1f} cpu", flush=True)
    refs = {"batched": hf_batched(model_dir, prompts, trie, a.beams, a.max_tokens, a.hf_batch)}
    print(f"hf_generate_batched_s: {refs['batched'][1]:.1f} wall, {refs['batched'][2]:.1f} cpu "
          f"({a.hf_batch} users a call)", flush=True)  # fmt: skip
    if not a.skip_per_user:
        refs["per_user"] = hf_reference(model_dir, prompts, trie, a.beams, a.max_tokens)
        print(f"hf_generate_per_user_s: {refs['per_user'][1]:.1f} wall, "
              f"{refs['per_user'][2]:.1f} cpu", flush=True)  # fmt: skip
    ref = refs.get("per_user", refs["batched"])[0]  # the contract: one user at a time
    same, off = compare(refs["batched"][0], ref)
    print(f"hf_batched_vs_reference: {same}/{len(prompts)} users identical (score off: {off})")
    best_hf = min(r[1] for r in refs.values())
    for name, (ours, t_ours, _c) in runs.items():
        same, off = compare(ours, ref)
        print(f"{name}_identical_beams: {same}/{len(prompts)} users (score > 1e-4 off: {off})")
        hits = sum(trie.decode_item(b[0][0]) == r["target"] for b, r in zip(ours, rows) if b)
        print(f"{name}_top1_hits: {hits}/{len(prompts)}")
        print(f"{name}_speedup_vs_hf: {best_hf / t_ours:.2f}")
    best = min(runs, key=lambda n: runs[n][1])
    print(f"speedup_vs_hf: {best_hf / runs[best][1]:.2f} ({best} engine, vs the faster "
          f"transformers side)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
