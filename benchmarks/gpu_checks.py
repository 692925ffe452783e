"""The GPU checks that need only torch + transformers (the device image has neither vLLM, DeepSpeed
nor Ray, and a vLLM wheel is larger than what may be carried there):

1. GRPO-VPS beliefs, naive vs packed, on SmolLM2-135M's architecture (4 responses x 256 tokens,
   K = 8): equal to 1e-4 and the packed speedup (docs/vps.md).
2. Constrained beam search on the HF engine vs transformers `generate` with
   `prefix_allowed_tokens_fn`, ML-100K catalogue, USERS users x BEAMS beams: identical beams and
   `speedup_vs_hf` (docs/rere.md).

Weights are random (the 540 MB SmolLM2 folder cannot travel): speed and equality do not depend on
them. `--model-files DIR` holds SmolLM2's config and tokenizer files; `--data DIR` the ML-100K
atomic files. Each section prints its own lines; a failing section prints its error and the
next one runs.  Usage: python benchmarks/gpu_checks.py --model-files F --data D [--device cuda]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def random_model(files: Path, out: Path, layers: int | None) -> Path:
    """SmolLM2's config and tokenizer with freshly initialised weights, saved as an HF folder."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.from_pretrained(files)
    if layers:
        cfg.num_hidden_layers = layers
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    model.save_pretrained(out)
    for f in files.iterdir():
        if f.is_file() and not f.name.endswith(".safetensors") and f.name != "config.json":
            shutil.copy2(f, out / f.name)
    return out


def synced(device: str):
    import torch

    return torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)


def vps_section(model_dir: Path, device: str) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from benchmarks.vps_probes import SUFFIX, hf_beliefs, make_batch, segments

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).to(device).eval()
    batch, sync = make_batch(tok), synced(device)
    ends, suffix = segments(tok, batch), tok(SUFFIX)["input_ids"]
    times, beliefs = {}, {}
    for method in ("naive", "packed", "naive", "packed"):  # second round timed (warm)
        sync()
        t0 = time.perf_counter()
        beliefs[method] = hf_beliefs(model, batch, ends, suffix, method)
        sync()
        times[method] = time.perf_counter() - t0
    diff = max(
        abs(a - b)
        for ra, rb in zip(beliefs["naive"], beliefs["packed"])
        for a, b in zip(ra, rb, strict=True)
    )
    probes = sum(len(e) + 1 for e in ends)
    print(f"vps_probes: {probes} probes over {len(ends)} responses of 256 tokens on {device}")
    print(f"vps_naive_s: {times['naive']:.4f}  vps_packed_s: {times['packed']:.4f}")
    print(f"vps_max_abs_diff: {diff:.2e}")
    print(f"vps_packed_vs_naive: {times['naive'] / times['packed']:.2f}")


def beam_section(model_dir: Path, data: Path, device: str, users: int, beams: int) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from benchmarks.constrained_beam import compare
    from rlkit.engines.hf_engine import HFEngine
    from rlkit.eval.generation import encode_prompts
    from rlkit.eval.runner import _ml100k_rows
    from rlkit.eval.suites import rec_prompt_text
    from rlkit.methods.rere.beam_search import beam_search, transformers_reference
    from rlkit.methods.rere.item_trie import ItemTrie

    tok = AutoTokenizer.from_pretrained(model_dir)
    rows, catalogue = _ml100k_rows(str(data), None)
    prompts = encode_prompts(tok, [rec_prompt_text(r["history"]) for r in rows[:users]])
    trie = ItemTrie.from_tokenizer(tok, catalogue)
    sync, max_tokens = synced(device), 64
    engine = HFEngine(str(model_dir), device=device, max_batch_tokens=1 << 18)
    beam_search(engine, prompts[:1], 2, 4, allowed_sequences=trie)  # warm-up
    sync()
    t0 = time.perf_counter()
    ours = beam_search(engine, prompts, beams, max_tokens, allowed_sequences=trie)
    sync()
    t_ours = time.perf_counter() - t0
    ours = [[(b.token_ids, b.score) for b in row] for row in ours]
    del engine
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).to(device).eval()
    transformers_reference(model, prompts[0], trie, 2, 4)  # warm-up
    sync()
    t0 = time.perf_counter()
    ref = [transformers_reference(model, p, trie, beams, max_tokens) for p in prompts]
    sync()
    t_hf = time.perf_counter() - t0
    same, off = compare(ours, ref)
    print(f"beam: {len(trie)} items, {len(prompts)} users x {beams} beams on {device}")
    print(f"rlkit_hf_engine_s: {t_ours:.2f}  hf_generate_s: {t_hf:.2f}")
    print(f"identical_beams: {same}/{len(prompts)} users (score > 1e-4 off: {off})")
    print(f"speedup_vs_hf: {t_hf / t_ours:.2f}")


def build_parser() -> argparse.ArgumentParser:
    """The command line (tests/unit/test_documented_commands.py parses the documented ones)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model-files", required=True, type=Path)
    p.add_argument("--data", required=True, type=Path)
    p.add_argument("--device", default="cuda")
    p.add_argument("--layers", type=int, default=None, help="fewer layers (CPU smoke runs)")
    p.add_argument("--users", type=int, default=32)
    p.add_argument("--beams", type=int, default=16)
    p.add_argument("--out", type=Path, default=Path("/tmp/rlkit_gpu_model"))
    p.add_argument("--only", choices=["vps", "beam"], default=None)
    return p


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    import torch

    name = torch.cuda.get_device_name() if a.device.startswith("cuda") else "cpu"
    print(f"torch {torch.__version__} on {name}", flush=True)
    model_dir = random_model(a.model_files, a.out, a.layers)
    sections = {
        "vps": lambda: vps_section(model_dir, a.device),
        "beam": lambda: beam_section(model_dir, a.data, a.device, a.users, a.beams),
    }
    for key, run in sections.items():
        if a.only and key != a.only:
            continue
        try:
            run()
        except Exception:
            print(f"{key}: FAILED\n{traceback.format_exc()}")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
