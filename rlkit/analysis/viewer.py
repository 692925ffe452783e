"""`rlkit view RUN_DIR [--out FILE] [--max-steps K]`: one self-contained HTML file of a run
(docs/viewer.md).

It holds the curves of `metrics.jsonl`, a timeline of the trainer steps (from the `time/*`
metrics), the request timeline (`timeline.jsonl`: every rollout request per worker, trainer
steps and weight publishes), and a sample browser over the rollout dumps
(`rollouts/step_N.jsonl`, written with `rollout.dump: true`): per step, the samples grouped by
group id, model and environment tokens told apart (loss mask 1 vs 0), the per-token advantage
as a heat map, reward and components.

Token ids are decoded here, in Python, with the run's own tokenizer (found from the run folder
and its config.yaml, offline only: a viewer never downloads); without one the pieces show as
ids and the engine's decoded text is shown beside them.  The page's script and styles are
inline (rlkit.analysis.viewer_page) and the data is one JSON block, so the file opens anywhere
with no network.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rlkit.analysis.viewer_page import render_page

Decoder = Callable[[list[int]], list[str]]
STEP_FILE = re.compile(r"^step_(\d+)\.jsonl$")


def read_jsonl(path: Path) -> list[dict]:
    """The JSON objects of a .jsonl file; a torn last line (a run still writing) is skipped."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def dump_steps(run_dir: Path) -> dict[int, Path]:
    """step -> its rollout dump file."""
    folder = run_dir / "rollouts"
    if not folder.is_dir():
        return {}
    found = {}
    for p in folder.iterdir():
        m = STEP_FILE.match(p.name)
        if m:
            found[int(m.group(1))] = p
    return dict(sorted(found.items()))


def pick_steps(steps: list[int], limit: int) -> list[int]:
    """At most `limit` of `steps`, evenly spread, the first and the last always kept (a long
    run's page stays small enough to open)."""
    if limit < 1 or len(steps) <= limit:
        return list(steps)
    if limit == 1:
        return [steps[-1]]
    idx = {round(i * (len(steps) - 1) / (limit - 1)) for i in range(limit)}
    return [steps[i] for i in sorted(idx)]


def tokenizer_folders(run_dir: Path) -> list[Path]:
    """Where the run's tokenizer may be, most specific first: the run's own model folders,
    then the model its config.yaml names (a path, or the cached SmolLM2 folder)."""
    folders = [run_dir / "sft_model", run_dir / "base_model"]
    cfg_file = run_dir / "config.yaml"
    if cfg_file.is_file():
        import yaml

        model = (yaml.safe_load(cfg_file.read_text()) or {}).get("model") or {}
        if model.get("path"):
            folders.append(Path(str(model["path"])).expanduser())
        if model.get("kind") == "smollm2":
            from rlkit.data.smollm2 import default_folder

            folders.append(default_folder())
    return folders


def load_decoder(run_dir: Path) -> tuple[Decoder | None, str]:
    """A function ids -> one text piece per id, and where its tokenizer came from; (None,
    reason) when no tokenizer loads offline."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach the network from a viewer
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    for folder in tokenizer_folders(run_dir):
        if not (folder / "tokenizer_config.json").is_file():
            continue
        try:
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        except Exception:  # noqa: BLE001  a broken folder: try the next one, else show ids
            continue
        return _piece_decoder(tok), str(folder)
    return None, "no tokenizer found offline: token ids shown"


def _piece_decoder(tok: Any) -> Decoder:
    """ids -> the text of each id alone (a byte-level piece keeps its leading space)."""
    return lambda ids: tok.batch_decode([[i] for i in ids])


def _round(x: float) -> float:
    return float(f"{x:.4g}") if math.isfinite(x) else 0.0


def sample_view(row: dict) -> dict[str, Any]:
    """The page's view of one dumped row: response token ids, loss mask and advantages (the
    prompt is shown as text), reward and components."""
    n = int(row.get("prompt_len", 0))
    ids = row["token_ids"][n:]
    mask = row.get("loss_mask", [1] * (n + len(ids)))[n:]
    adv = row.get("advantages", [0.0] * (n + len(ids)))[n:]
    return {
        "group": row.get("group_id"),
        "sample": row.get("sample"),
        "reward": row.get("reward"),
        "components": row.get("components", {}),
        "failed": bool(row.get("reward_failed", False)),
        "version": row.get("version"),
        "turns": row.get("turns"),
        "finish": row.get("finish_reason"),
        "prompt": row.get("prompt_text", ""),
        "text": row.get("text", ""),
        "ids": ids,
        "mask": [int(m) for m in mask],
        "adv": [_round(float(a)) for a in adv],
    }


def timeline_view(run_dir: Path, max_requests: int = 20_000) -> dict[str, Any] | None:
    """The request timeline (`timeline.jsonl`, rlkit.runtime.controller.request_timeline) as
    compact rows, times in seconds from the first row: requests [worker, start, end, version,
    aborted, group, sample, tokens], train and publish spans [step, start, end].  Only the last
    `max_requests` requests (by end) are kept, so a long run's page stays small.  None when the
    run has no timeline (runs written before it existed)."""
    path = run_dir / "timeline.jsonl"
    if not path.is_file():
        return None
    rows = [r for r in read_jsonl(path) if isinstance(r.get("start"), (int, float))]
    if not rows:
        return None
    t0 = min(r["start"] for r in rows)
    reqs = sorted((r for r in rows if r.get("kind") == "request"), key=lambda r: r["end"])
    kept = reqs[-max_requests:] if max_requests > 0 else reqs

    def t(x: float) -> float:
        return round(x - t0, 4)

    def span(kind: str) -> list[list]:
        return [[r["step"], t(r["start"]), t(r["end"])] for r in rows if r.get("kind") == kind]

    return {
        "requests": [[*_request_fields(r, t)] for r in kept],
        "train": span("train"),
        "publish": span("publish"),
        "total_requests": len(reqs),
    }


def _request_fields(r: dict, t: Callable[[float], float]) -> tuple:
    """One request row as the page reads it (timeline_view)."""
    aborted = int(r["aborted"])
    return (r["worker"], t(r["start"]), t(r["end"]), r.get("version"), aborted, r["group"],
            r["sample"], r.get("tokens", 0))  # fmt: skip


def build_view(run_dir: str | Path, max_steps: int = 50) -> dict[str, Any]:
    """Everything the page shows, as one JSON-able dict."""
    run_dir = Path(run_dir)
    metrics_file = run_dir / "metrics.jsonl"
    metrics = read_jsonl(metrics_file) if metrics_file.is_file() else []
    dumps = dump_steps(run_dir)
    steps = pick_steps(list(dumps), max_steps)
    samples = {}
    for step in steps:
        rows = sorted(read_jsonl(dumps[step]), key=lambda r: (r["group_id"], r["sample"]))
        samples[str(step)] = [sample_view(r) for r in rows]
    decode, source = load_decoder(run_dir)
    ids = sorted({i for rows in samples.values() for s in rows for i in s["ids"]})
    pieces = decode(ids) if decode is not None and ids else [f"⟨{i}⟩" for i in ids]
    return {
        "run": run_dir.resolve().name,
        "metrics": [_numeric(rec) for rec in metrics],
        "samples": samples,
        "dumped_steps": len(dumps),
        "vocab": {str(i): p for i, p in zip(ids, pieces)},
        "decoded": decode is not None,
        "tokenizer": source,
        "timeline": timeline_view(run_dir),
    }


def _numeric(rec: dict) -> dict[str, float]:
    return {
        k: v
        for k, v in rec.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    }


def write_view(run_dir: str | Path, out: str | Path | None = None, max_steps: int = 50) -> Path:
    """Build the page of `run_dir` and write it (default `run_dir/view.html`)."""
    target = Path(out) if out is not None else Path(run_dir) / "view.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_page(build_view(run_dir, max_steps)), encoding="utf-8")
    return target


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rlkit view", description="One self-contained HTML page of a run."
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder, e.g. runs/quickstart")
    p.add_argument("--out", help="the HTML file to write (default RUN_DIR/view.html)")
    p.add_argument(
        "--max-steps",
        type=int,
        default=50,
        help="rollout dumps shown at most (evenly spread, first and last kept; 0 = all)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run_dir = Path(args.run_dir)
    if not (run_dir / "metrics.jsonl").is_file() and not dump_steps(run_dir):
        print(f"rlkit view: {run_dir} has no metrics.jsonl and no rollouts/", file=sys.stderr)
        return 2
    path = write_view(run_dir, args.out, args.max_steps)
    print(f"wrote {path}")
    return 0
