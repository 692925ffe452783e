"""Supervised warm start: plain single-process torch SFT of a small HF model on (prompt, target).

Why: GRPO needs a policy that already produces the answer format and is sometimes right, so
that groups have reward variance (an all-zero group has advantage 0 and teaches nothing). The
quickstart's random-init tiny model gets there with a few hundred SFT steps on the arithmetic
task; stopping early keeps sampled accuracy low enough that GRPO visibly raises it.

Loss: mean next-token cross-entropy over completion tokens only (target + EOS); prompt and
padding positions get label -100. Deterministic given `seed` (and the thread count).
The output folder appears atomically: everything is written to a sibling temporary folder that
is renamed into place only once complete, so a crash never leaves a half-written model.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rlkit.data.arithmetic import format_target, sft_target
from rlkit.data.progress import progress_bar

SFT_INFO_FILE = "sft_info.json"


def _encode(
    tok, rows: Sequence[dict[str, Any]], target_fn: Callable
) -> list[tuple[list[int], list[int]]]:
    """(prompt ids + target ids, 1 per trained position) per row, prompt and target tokenised
    separately.  The target is target_fn(row) + EOS, or, for a row with "target_ids" (a
    multi-turn demonstration, rlkit.agents.demos), those ids as they are, trained where
    "target_mask" is 1 (model turns) and not where it is 0 (environment turns)."""
    out = []
    for row in rows:
        p = tok(row["prompt"], add_special_tokens=False)["input_ids"]
        if "target_ids" in row:
            t, trained = list(row["target_ids"]), [int(m) for m in row["target_mask"]]
        else:
            t = tok(target_fn(row), add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
            trained = [1] * len(t)
        out.append((p + t, [0] * len(p) + trained))
    return out


def _collate(examples: Sequence[tuple[list[int], list[int]]], pad_id: int):
    """Right-padded input_ids, attention_mask, and labels (-100 where not trained)."""
    import torch

    width = max(len(ids) for ids, _ in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    labels = torch.full_like(ids, -100)
    for i, (seq, trained) in enumerate(examples):
        row = torch.tensor(seq)
        ids[i, : len(seq)] = row
        mask[i, : len(seq)] = 1
        labels[i, : len(seq)] = torch.where(torch.tensor(trained, dtype=torch.bool), row, -100)
    return ids, mask, labels


def completion_loss(model, ids, mask, labels):
    """Mean cross-entropy of next-token predictions at positions whose label is not -100."""
    import torch.nn.functional as F

    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
    target = labels[:, 1:]
    return F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100
    )


def greedy_accuracy(model, tok, rows: Sequence[dict[str, Any]], max_new_tokens: int = 12) -> float:
    """Fraction of rows whose greedy completion is exactly format_target(row) then EOS."""
    import torch

    enc = tok([r["prompt"] for r in rows], return_tensors="pt", padding=True, padding_side="left")
    with torch.no_grad():
        out = model.generate(
            **enc, do_sample=False, max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id
        )
    texts = tok.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    return sum(t.strip() == format_target(r) for t, r in zip(texts, rows)) / max(len(rows), 1)


def _batches(n_rows: int, batch_size: int, steps: int, generator):
    """Index batches from successive seeded permutations of range(n_rows) (epochs)."""
    import torch

    perm, pos = torch.randperm(n_rows, generator=generator), 0
    for _ in range(steps):
        if pos + batch_size > n_rows:
            perm, pos = torch.randperm(n_rows, generator=generator), 0
        yield perm[pos : pos + batch_size].tolist()
        pos += batch_size


def _save_atomic(model, tok, out_dir: Path, info: dict[str, Any]) -> Path:
    """Save into `.<name>.tmp-<pid>` next to out_dir, then swap it into place."""
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / SFT_INFO_FILE).write_text(json.dumps(info, indent=2))
        if out_dir.exists():
            out_dir.rename(old)
        tmp.rename(out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return out_dir


def sft_warm_start(
    model_dir: str | Path,
    rows: Sequence[dict[str, Any]],
    *,
    steps: int,
    lr: float,
    batch_size: int,
    seed: int,
    out_dir: str | Path,
    target_accuracy: float | None = None,
    eval_rows: Sequence[dict[str, Any]] | None = None,
    eval_every: int = 50,
    target_fn: Callable[[dict[str, Any]], str] = sft_target,
    num_threads: int | None = None,
    log: Callable[[str], None] | None = print,
) -> Path:
    """Fine-tune the HF model in `model_dir` on rows' (prompt -> target_fn(row) + EOS); save it.

    The default target is row["target"] when present (see arithmetic.with_sft_targets), else
    "\\boxed{answer}".

    AdamW (fp32, weight decay 0), constant lr, `steps` batches of `batch_size`. If
    `target_accuracy` is set, greedy exact-match accuracy on `eval_rows` (default: the first 64
    rows) is measured every `eval_every` steps and training stops once it reaches the target,
    so the warm start leaves room for RL. Writes model + tokenizer + sft_info.json to `out_dir`
    atomically and returns it.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if steps < 1 or batch_size < 1 or lr <= 0:
        raise ValueError(
            f"need steps >= 1, batch_size >= 1, lr > 0 (got {steps}, {batch_size}, {lr})"
        )
    if num_threads:
        torch.set_num_threads(num_threads)
    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    examples = _encode(tok, rows, target_fn)
    evals = list(eval_rows) if eval_rows is not None else list(rows[:64])
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed)
    losses, acc, t0, step = [], None, time.perf_counter(), 0
    model.train()
    bar = progress_bar(steps, "sft") if log else None  # minutes a step on small CPUs
    for step, idx in enumerate(_batches(len(examples), batch_size, steps, gen), start=1):
        loss = completion_loss(model, *_collate([examples[i] for i in idx], tok.pad_token_id))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if bar is not None:
            bar.set_postfix_str(f"loss {losses[-1]:.4f}", refresh=False)
            bar.update(1)
        if target_accuracy is not None and (step % eval_every == 0 or step == steps):
            model.eval()
            acc = greedy_accuracy(model, tok, evals)
            model.train()
            if log:
                log(f"sft step {step}: loss {losses[-1]:.4f} greedy acc {acc:.3f}")
            if acc >= target_accuracy:
                break
        elif log and step % eval_every == 0:
            log(f"sft step {step}: loss {losses[-1]:.4f}")
    if bar is not None:
        bar.close()
    model.eval()
    info = {
        "steps": step, "lr": lr, "batch_size": batch_size, "seed": seed,
        "first_loss": losses[0], "last_loss": losses[-1], "greedy_accuracy": acc,
        "seconds": round(time.perf_counter() - t0, 2),
    }  # fmt: skip
    return _save_atomic(model, tok, Path(out_dir), info)
