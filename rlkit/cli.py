"""`rlkit train RECIPE [dotted.key=value ...]` and `rlkit eval ...`."""

from __future__ import annotations

import argparse
import os
import sys


def _train(argv: list[str]) -> int:
    from rlkit.config import ConfigError, load_recipe

    parser = argparse.ArgumentParser(prog="rlkit train", description="Run a YAML recipe.")
    parser.add_argument("recipe", help="path to a YAML recipe, e.g. recipes/quickstart.yaml")
    parser.add_argument("overrides", nargs="*", help="dotted overrides: trainer.lr=1e-5")
    parser.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue the run in RUN_DIR (e.g. runs/quickstart) from its newest checkpoint",
    )
    # intermixed: `rlkit train RECIPE --resume DIR key=value` (overrides after the option)
    args = parser.parse_intermixed_args(argv)
    try:
        cfg = load_recipe(args.recipe, args.overrides)
    except ConfigError as exc:
        print(f"rlkit: config error: {exc}", file=sys.stderr)
        return 2
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from rlkit.runtime.controller.worker_restarts import RolloutWorkerLost
    from rlkit.runtime.run import RankGroupLost, train

    try:
        train(cfg, resume=args.resume)
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
            "usage: rlkit {train,eval} ...\n  rlkit train RECIPE [key=value ...]\n"
            "  rlkit eval --suite S (--model DIR | --predictions FILE) --data FILE --out DIR"
        )
        return 0 if argv else 2
    cmd, rest = argv[0], argv[1:]
    if cmd == "train":
        return _train(rest)
    if cmd == "eval":
        from rlkit.eval.cli import main as eval_main

        return eval_main(rest)
    print(f"rlkit: unknown command {cmd!r} (expected train or eval)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
