"""ReRe direction of effect: NDCG@10 of the SFT warm start vs after ReRe RL on held-out ML-100K.

ReRe (arXiv 2510.12211, docs/algorithms.md §6, docs/rere.md): SFT on (history -> next title),
then GRPO on groups of G constrained beams with the rule + ranking rewards. This script runs
recipes/rere_ml100k_cpu.yaml (SFT + RL) and evaluates both models with the same `rec` eval
(constrained beam search over the catalogue, HR/NDCG@K on the test rows of held-out users).

    python -m benchmarks.rere_ndcg prepare runs/rere_ml100k_data   # data (recipes need it)
    python -m benchmarks.rere_ndcg run                              # prepare + train + compare
    python -m benchmarks.rere_ndcg compare                          # compare an existing run
    python -m benchmarks.rere_ndcg seeds --seeds 3                  # one SFT, N RL seeds, CIs
    python -m benchmarks.rere_ndcg seeds --seeds 3 -o name=rere_stochastic \
        -o rollout.strategy_kw.stochastic=true --baseline runs/rere_seeds/rere_seeds.json
                                                # ... and seed K paired with the baseline's K
    python -m benchmarks.rere_ndcg convert train.csv train.jsonl    # any rec CSV -> RL rows

`prepare` fetches ML-100K once from the PyPI recbole==1.2.1 wheel (GroupLens terms forbid
committing it; benchmarks/constrained_beam.ml100k_dir), converts it (rlkit.eval.movielens:
sliding window <= 10, chronological 8:1:1 split) and keeps a subset: the train rows of the
first `--users` users (by user id order in the data) and the test rows of `--test-users`
OTHER users (held out: never seen in SFT or RL), at most `--test-rows`. The catalogue is
every ML-100K title. Training rows are JSONL {"prompt", "item_title", "target"}:
prompt = the `rec` suite's prompt text + "\\n" (what `rlkit eval` encodes without a chat
template), target = '"Title"\\n' (the SFT completion; EOS is added by SFT).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

RECIPE = "recipes/rere_ml100k_cpu.yaml"


def training_row(history: list[str], title: str, response_prefix: str = "") -> dict[str, Any]:
    """One RL/SFT row: the `rec` prompt text (+ newline), the target title, the SFT target."""
    from rlkit.eval.suites import rec_prompt_text
    from rlkit.methods.rere.item_trie import format_item

    return {
        "prompt": rec_prompt_text(history) + "\n",
        "item_title": title,
        "target": format_item(title, response_prefix),
    }


def convert_csv(src: str, dst: str, response_prefix: str = "") -> int:
    """A rec CSV (ReRe/D3/BIGRec layout: history_item_title, item_title) -> training JSONL."""
    from rlkit.eval.data import load_rec_rows

    rows = load_rec_rows(src)
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    with open(dst, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(training_row(r["history"], r["target"], response_prefix)) + "\n")
    return len(rows)


def prepare(out: str, users: int, test_users: int, test_rows: int, data: str | None) -> Path:
    """Write train.jsonl, test.csv and items.txt under `out` (see the module docstring)."""
    from benchmarks.constrained_beam import ml100k_dir
    from rlkit.eval.movielens import convert_ml100k, write_items, write_split_csv

    d = Path(out)
    if (d / "train.jsonl").is_file() and (d / "test.csv").is_file():
        return d
    splits, catalogue = convert_ml100k(ml100k_dir(data))
    order = list(dict.fromkeys(s["user_id"] for s in splits["train"]))
    train_users = set(order[:users])
    train = [s for s in splits["train"] if s["user_id"] in train_users]
    held = [u for u in dict.fromkeys(s["user_id"] for s in splits["test"]) if u not in train_users]
    held_set = set(held[:test_users])
    test = [s for s in splits["test"] if s["user_id"] in held_set][:test_rows]
    d.mkdir(parents=True, exist_ok=True)
    with (d / "train.jsonl").open("w", encoding="utf-8") as f:
        for s in train:
            f.write(json.dumps(training_row(s["history_item_title"], s["item_title"])) + "\n")
    write_split_csv(test, d / "test.csv")
    write_items(catalogue, d / "items.txt")
    print(f"[rere] {len(train)} train rows ({len(train_users)} users), {len(test)} test rows "
          f"({len(held_set)} held-out users), {len(catalogue)} items -> {d}")  # fmt: skip
    return d


def evaluate(
    model_dir: str, data_dir: Path, settings: dict[str, Any], engine_kind: str = "vllm"
) -> dict[str, Any]:
    """`rec` metrics of a model folder on the prepared test rows (the recipe's eval.engine,
    started after training so only one engine runs at a time; the recipe's eval.settings)."""
    from transformers import AutoTokenizer

    from rlkit.engines import make_rollout_engine
    from rlkit.eval import run_suite

    kw = {"max_model_len": 512, "block_size": 32} if engine_kind == "vllm" else {}
    engine = make_rollout_engine(engine_kind, model_dir, **kw)
    tok = AutoTokenizer.from_pretrained(model_dir)
    return run_suite(  # "rec": test.csv + items.txt ("ml-100k" wants the raw atomic files)
        "rec",
        engine=engine,
        tokenizer=tok,
        data=str(data_dir / "test.csv"),
        items=str(data_dir / "items.txt"),
        settings={"progress": False, **settings},
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Prepare, train the recipe (SFT then ReRe RL), evaluate SFT and final models."""
    import time

    from rlkit.config.loader import load_recipe
    from rlkit.runtime.run import train

    cfg = load_recipe(RECIPE, args.overrides)
    data_dir = prepare(
        str(Path(cfg.data.path).parent), args.users, args.test_users, args.test_rows, args.data
    )
    t0 = time.perf_counter()
    run_dir = Path(train(cfg))
    return compare(cfg, run_dir, data_dir, round(time.perf_counter() - t0, 1))


def compare(cfg: Any, run_dir: Path, data_dir: Path, train_s: float | None) -> dict[str, Any]:
    """`rec` HR/NDCG@K of the run's SFT model and its final checkpoint on the same rows."""
    settings = dict(cfg.eval.settings)
    final = run_dir / "checkpoints" / f"step_{cfg.trainer.total_steps}"
    before = evaluate(str(run_dir / "sft_model"), data_dir, settings, cfg.eval.engine)
    after = evaluate(str(final), data_dir, settings, cfg.eval.engine)
    out = {"train_s": train_s, "sft": before, "rere": after}
    for k in ("HR@10", "NDCG@10"):
        print(f"{k}: sft {before[k]:.4f} -> rere {after[k]:.4f}")
    print(f"ndcg10_delta: {after['NDCG@10'] - before['NDCG@10']:+.4f}")
    (run_dir / "rere_ndcg.json").write_text(json.dumps(out, indent=2))
    return out


def seeds(args: argparse.Namespace) -> dict[str, Any]:
    """One SFT warm start, then `--seeds` ReRe RL runs from it (seed = recipe seed + K and
    data.seed = recipe data.seed + K, run dirs runs/NAME/seed_K), each evaluated with the same
    `rec` eval as the SFT model. The SFT model is evaluated once (beam search is
    deterministic), so each seed's difference RL − SFT is paired and the 95% Student-t interval
    is over RL seeds: it measures what RL does from this warm start, not the spread across warm
    starts. Writes runs/NAME/rere_seeds.json."""
    import time
    from dataclasses import replace

    from rlkit.analysis.intervals import mean_interval
    from rlkit.cli import seed_configs
    from rlkit.config.loader import load_recipe
    from rlkit.runtime.run import train

    cfg = load_recipe(RECIPE, args.overrides)
    data_dir = prepare(
        str(Path(cfg.data.path).parent), args.users, args.test_users, args.test_rows, args.data
    )
    group = Path(cfg.logging.runs_dir) / cfg.name
    base = json.loads(Path(args.baseline).read_text()) if args.baseline else None
    group.mkdir(parents=True, exist_ok=True)
    out_path = group / "rere_seeds.json"
    out = json.loads(out_path.read_text()) if out_path.is_file() else {"runs": {}}
    if base is not None:  # the baseline's warm start (and its evaluation): paired seeds
        sft_dir = Path(base["sft_model"])
        out["sft"] = base["sft"]
    else:
        sft_dir = warm_start(cfg, group)
    out["sft_model"], settings = str(sft_dir), dict(cfg.eval.settings)
    if "sft" not in out:
        out["sft"] = evaluate(str(sft_dir), data_dir, settings, cfg.eval.engine)
        out_path.write_text(json.dumps(out, indent=2))
    print(f"[rere] sft: HR@10 {out['sft']['HR@10']:.4f} NDCG@10 {out['sft']['NDCG@10']:.4f}")
    rl_cfg = replace(cfg, model=replace(cfg.model, kind="path", path=str(sft_dir)),
                     sft=replace(cfg.sft, steps=0))  # fmt: skip
    for k, seed_cfg in enumerate(seed_configs(rl_cfg, args.seeds)):
        # beams are deterministic, so the run seed alone changes nothing: seed K also draws
        # the training prompts in another order (data.seed + K)
        seed_cfg = replace(seed_cfg, data=replace(seed_cfg.data, seed=cfg.data.seed + k))
        if seed_cfg.name in out["runs"]:
            continue
        t0 = time.perf_counter()
        run_dir = Path(train(seed_cfg))
        final = run_dir / "checkpoints" / f"step_{cfg.trainer.total_steps}"
        res = evaluate(str(final), data_dir, settings, cfg.eval.engine)
        out["runs"][seed_cfg.name] = {**res, "train_eval_s": round(time.perf_counter() - t0, 1)}
        out_path.write_text(json.dumps(out, indent=2))
        print(f"[rere] {seed_cfg.name}: HR@10 {res['HR@10']:.4f} NDCG@10 {res['NDCG@10']:.4f}")
    for k in ("HR@10", "NDCG@10"):
        iv = mean_interval([r[k] - out["sft"][k] for r in out["runs"].values()])
        out[f"delta_{k}"] = {"mean": iv.mean, "ci95": [iv.lo, iv.hi]}
        print(f"{k}: rl - sft {iv.mean:+.4f} [{iv.lo:+.4f}, {iv.hi:+.4f}] over "
              f"{len(out['runs'])} RL seeds")  # fmt: skip
    if base is not None:
        out["vs_baseline"] = paired_against(out, base)
    out_path.write_text(json.dumps(out, indent=2))
    return out


def paired_against(out: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """This group's seed K minus the baseline group's seed K (same warm start, same data.seed:
    paired), with 95% Student-t intervals over the seeds both have."""
    from rlkit.analysis.intervals import mean_interval

    mine = {name.rsplit("/", 1)[-1]: r for name, r in out["runs"].items()}
    theirs = {name.rsplit("/", 1)[-1]: r for name, r in base["runs"].items()}
    common = sorted(set(mine) & set(theirs))
    res: dict[str, Any] = {"seeds": common}
    for k in ("HR@10", "NDCG@10"):
        iv = mean_interval([mine[s][k] - theirs[s][k] for s in common])
        res[k] = {"mean": iv.mean, "ci95": [iv.lo, iv.hi]}
        print(f"{k}: this - baseline {iv.mean:+.4f} [{iv.lo:+.4f}, {iv.hi:+.4f}] over "
              f"{len(common)} paired seeds")  # fmt: skip
    return res


def warm_start(cfg: Any, group: Path) -> Path:
    """The recipe's SFT (sft.steps/lr/batch_size, recipe seed) under the group dir, once."""
    from rlkit.runtime.prepare import prepare_model

    group.mkdir(parents=True, exist_ok=True)
    return Path(prepare_model(cfg, group))


def build_parser() -> argparse.ArgumentParser:
    """The command line (tests/unit/test_documented_commands.py parses the documented ones)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("command", choices=["prepare", "run", "compare", "convert", "seeds"])
    p.add_argument("paths", nargs="*", help="prepare: OUT_DIR; convert: SRC.csv DST.jsonl")
    p.add_argument("--data", default=None, help="folder with ml-100k.inter/.item (else fetch)")
    p.add_argument("--users", type=int, default=40, help="users whose train rows are used")
    p.add_argument("--test-users", type=int, default=64, help="held-out users for the test")
    p.add_argument("--test-rows", type=int, default=64)
    p.add_argument("--response-prefix", default="")
    p.add_argument("--seeds", type=int, default=3, help="seeds: RL runs from one warm start")
    p.add_argument(
        "--baseline",
        default=None,
        help="seeds: another group's rere_seeds.json; prints seed K here minus seed K there",
    )
    p.add_argument("-o", "--overrides", action="append", default=[], help="recipe key=value")
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    if args.command == "prepare":
        out = args.paths[0] if args.paths else "runs/rere_ml100k_data"
        prepare(out, args.users, args.test_users, args.test_rows, args.data)
    elif args.command == "convert":
        if len(args.paths) != 2:
            p.error("convert needs SRC.csv DST.jsonl")
        print(convert_csv(*args.paths, response_prefix=args.response_prefix), "rows")
    elif args.command == "compare":  # a finished `run` (same overrides): evaluate only
        from rlkit.config.loader import load_recipe

        cfg = load_recipe(RECIPE, args.overrides)
        compare(cfg, Path(cfg.logging.runs_dir) / cfg.name, Path(cfg.data.path).parent, None)
    elif args.command == "seeds":
        seeds(args)
    else:
        run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
