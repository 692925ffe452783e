"""`rlkit train RECIPE [--seeds N] [key=value ...]`, `rlkit eval ...`, `rlkit compare ...`,
`rlkit view RUN_DIR`.

Every subcommand parses with `parse_intermixed_args`: positionals (a recipe's dotted
overrides, compare's group folders) may come before, between or after the options.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rlkit.config import RecipeConfig


def train_parser() -> argparse.ArgumentParser:
    """The parser of `rlkit train` (parse with `parse_intermixed_args`: overrides may come
    before or after the options, e.g. `rlkit train RECIPE --resume DIR key=value`)."""
    parser = argparse.ArgumentParser(prog="rlkit train", description="Run a YAML recipe.")
    parser.add_argument("recipe", help="path to a YAML recipe, e.g. recipes/quickstart.yaml")
    parser.add_argument("overrides", nargs="*", help="dotted overrides: trainer.lr=1e-5")
    parser.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue the run in RUN_DIR (e.g. runs/quickstart) from its newest checkpoint",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        metavar="N",
        help="run N seeds one after another as runs/NAME/seed_K (seed = recipe seed + K)",
    )
    return parser


def _train(argv: list[str]) -> int:
    from rlkit.config import ConfigError, load_recipe

    args = train_parser().parse_intermixed_args(argv)
    if args.seeds is not None and (args.seeds < 1 or args.resume):
        print(
            "rlkit: --seeds takes N >= 1 and no --resume (resume each seed with resume=auto)",
            file=sys.stderr,
        )
        return 2
    try:
        cfg = load_recipe(args.recipe, args.overrides)
    except ConfigError as exc:
        print(f"rlkit: config error: {exc}", file=sys.stderr)
        return 2
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.seeds is None:
        return _run(cfg, args.resume)
    return _train_seeds(cfg, args.seeds)


def _train_seeds(cfg: RecipeConfig, n: int) -> int:
    """`--seeds n`: the seed runs one after another (stopping at the first that fails), then
    the `rlkit compare` command that reads them as one group."""
    for seed_cfg in seed_configs(cfg, n):
        rc = _run(seed_cfg, None)
        if rc:
            return rc
    group = Path(cfg.logging.runs_dir) / cfg.name
    print(
        f"[rlkit] {n} seeds in {group}/seed_*; compare them (put a baseline group first for "
        f"the difference):\n  rlkit compare {group} --metric reward/mean --out {group}/compare"
    )
    return 0


def seed_configs(cfg: RecipeConfig, n: int) -> list[RecipeConfig]:
    """The runs of `--seeds n`: name NAME/seed_K, so the run dir is runs/NAME/seed_K (a group
    that `rlkit compare` reads), and seed = recipe seed + K."""
    return [replace(cfg, name=f"{cfg.name}/seed_{k}", seed=cfg.seed + k) for k in range(n)]


def _run(cfg: RecipeConfig, resume: str | None) -> int:
    """One training run; errors a user can fix print as one line with a nonzero status."""
    from rlkit.config import ConfigError
    from rlkit.runtime.controller.worker_restarts import RolloutWorkerLost
    from rlkit.runtime.run import RankGroupLost, train

    try:
        train(cfg, resume=resume)
    except ConfigError as exc:
        print(f"rlkit: config error: {exc}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError) as exc:  # bad model or data files, named
        print(f"rlkit: {exc}", file=sys.stderr)
        return 2
    except (RolloutWorkerLost, RankGroupLost) as exc:
        print(f"rlkit: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(
            "usage: rlkit {train,eval,compare,view} ...\n"
            "  rlkit train RECIPE [--resume RUN_DIR | --seeds N] [key=value ...]\n"
            "  rlkit eval --suite S (--model DIR | --predictions FILE) --data FILE --out DIR\n"
            "  rlkit compare GROUP_DIR [GROUP_DIR ...] --metric NAME [--last K] --out DIR\n"
            "  rlkit view RUN_DIR [--out FILE] [--max-steps K]"
        )
        return 0 if argv else 2
    cmd, rest = argv[0], argv[1:]
    if cmd == "train":
        return _train(rest)
    if cmd == "eval":
        from rlkit.eval.cli import main as eval_main

        return eval_main(rest)
    if cmd == "compare":
        from rlkit.analysis.cli import main as compare_main

        return compare_main(rest)
    if cmd == "view":
        from rlkit.analysis.viewer import main as view_main

        return view_main(rest)
    print(
        f"rlkit: unknown command {cmd!r} (expected train, eval, compare or view)", file=sys.stderr
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
