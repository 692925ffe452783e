"""Does GRPO-VPS's segment credit penalise wasted lines? Read from a run's rollout dumps.

For a run of recipes/vps_cpu.yaml with `rollout.dump=true` (docs/results.md §1c), each response
of the synthetic task ("a+b-c+d=" answered "a+b=x", "x-c=y", ... then "\\boxed{z}") is split
into lines. A line is *useful* if it continues the chain (its left operand is the previous
useful result, or the prompt's first number for the first line); it is *wasted* if it repeats
the line before it or does not continue the chain (the irrelevant "k+k=2k" lines the SFT
demonstrations contain). Per response with both kinds, d = mean per-token advantage on wasted
lines − mean on useful lines; GRPO gives d = 0 (one advantage per response), so d isolates the
VPS segment credit λ·Δ̂ (docs/vps.md §3). If VPS removed waste as the paper intends, d < 0.

    python benchmarks/results/vps_waste_credit.py runs/results_h3/vps_view
"""

from __future__ import annotations

import argparse
import glob
import json
import re
import statistics as st

LINE = re.compile(r"^(-?\d+)([+-])(\d+)=(-?\d+)$")


def build_parser() -> argparse.ArgumentParser:
    """RUN_DIR (with rollouts/step_N.jsonl) and the tokenizer folder."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("--tokenizer", default="runs/vps_task/sft_model")
    return ap


def line_kinds(text: str, first: str | None) -> tuple[list[int], list[int]]:
    """Character offsets of (wasted, useful) lines of one response."""
    pos, prev, acc, wasted, useful = 0, None, first, [], []
    for line in text.split("\n"):
        span, s = list(range(pos, pos + len(line))), line.strip()
        pos += len(line) + 1
        m = LINE.match(s)
        if not m:
            continue
        if s != prev and acc is not None and m.group(1) == acc:
            useful += span
            acc = m.group(4)
        else:
            wasted += span
        prev = s
    return wasted, useful


def main() -> None:
    from transformers import AutoTokenizer

    args = build_parser().parse_args()
    tok = AutoTokenizer.from_pretrained(args.tokenizer)
    diffs = []
    for path in sorted(glob.glob(f"{args.run_dir}/rollouts/step_*.jsonl")):
        for row in map(json.loads, open(path)):
            resp = [i for i, m in enumerate(row["loss_mask"]) if m]
            if not resp:
                continue
            first = re.match(r"\s*(-?\d+)", tok.decode(row["token_ids"][: resp[0]]))
            chars = [tok.decode([row["token_ids"][i]]) for i in resp]  # char-level tokenizer
            adv = [row["advantages"][i] for i in resp]
            wasted, useful = line_kinds("".join(chars), first.group(1) if first else None)
            if wasted and useful:
                diffs.append(st.mean(adv[i] for i in wasted) - st.mean(adv[i] for i in useful))
    neg = sum(d < 0 for d in diffs)
    print(
        f"responses with wasted and useful lines: {len(diffs)}; mean d = {st.mean(diffs):+.4f} "
        f"(sd {st.stdev(diffs):.4f}, s.e. {st.stdev(diffs) / len(diffs) ** 0.5:.4f}); "
        f"d < 0 in {neg}/{len(diffs)}"
    )


if __name__ == "__main__":
    main()
