"""One SFT warm start shared by every seed of a comparison (docs/results.md §2, §3).

`rlkit train --seeds N` on a recipe with an `sft` block SFT-trains anew for each seed (with that
seed). To compare methods from one start, this runs the recipe's own model preparation once
(rlkit.runtime.prepare.prepare_model: build the tiny model, then the `sft` block) into
runs/NAME/sft_model; the runs then use `model.kind=path model.path=runs/NAME/sft_model
sft.steps=0`.

    python benchmarks/results/sft_start.py --recipe recipes/asyppo_cpu.yaml --name NAME
"""

from __future__ import annotations

import argparse


def build_parser() -> argparse.ArgumentParser:
    """--recipe (whose model, data, sft and seed are used) and --name (the run dir under runs/)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default="recipes/attention_credit_cpu.yaml")
    ap.add_argument("--name", default="results/sft_start")
    return ap


def main() -> None:
    from rlkit.config.loader import load_recipe
    from rlkit.runtime import prepare

    args = build_parser().parse_args()
    cfg = load_recipe(args.recipe, [f"name={args.name}"])
    print("SFT model:", prepare.prepare_model(cfg, prepare.make_run_dir(cfg), log=print))


if __name__ == "__main__":
    main()
