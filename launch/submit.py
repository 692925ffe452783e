"""Submit an rlkit recipe to a running Ray cluster as a Ray Job.

    python -m launch.submit RECIPE [dotted.key=value ...] [--address URL] [--no-wait] [--dry-run]

It runs `ray job submit --address ADDR --working-dir . --runtime-env-json '{...}' --
rlkit train RECIPE overrides... ray.address=auto`: the working dir (minus `.venv`, `runs`,
`.git`) is uploaded to the cluster, the job's driver runs `rlkit train` on the head node inside
that copy, and `ray.address=auto` makes `rlkit.runtime.placement.cluster.init_ray` join the
cluster instead of starting an embedded one.

Why the `ray` CLI and not `ray.job_submission.JobSubmissionClient`: the CLI already does the
upload, log streaming and exit status (0 on success, 1 on failure), and `--dry-run` can then
print one exact command that a user can paste, audit or run from a machine without rlkit.
The recipe is validated locally first (rlkit.config is torch-free), so a typo fails in a second
instead of after the upload.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # `python launch/submit.py`: make the repo's rlkit importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DEFAULT_ADDRESS = "http://127.0.0.1:8265"
DEFAULT_EXCLUDES = (".venv", "runs", ".git", "__pycache__", "*.egg-info")
# Forwarded from the submitting shell when set: thread counts, hub mode, JIT caches, KV cache.
# Never tokens or passwords: the runtime env is visible in the dashboard and in --dry-run.
FORWARDED_ENV = (
    "OMP_NUM_THREADS",
    "HF_HUB_OFFLINE",
    "HF_HOME",
    "HF_DATASETS_OFFLINE",
    "TORCH_EXTENSIONS_DIR",
    "VLLM_CPU_KVCACHE_SPACE",
    "TOKENIZERS_PARALLELISM",
)
DEFAULT_ENV = {"TOKENIZERS_PARALLELISM": "false"}
DONE_LINE = re.compile(r"\[rlkit\] done: .*metrics (\S+)")


def build_parser() -> argparse.ArgumentParser:
    """Command line: recipe and overrides as for `rlkit train`, plus submission options."""
    p = argparse.ArgumentParser(prog="python -m launch.submit", description=__doc__.split("\n")[0])
    p.add_argument("recipe", help="YAML recipe inside the working dir (recipes/quickstart.yaml)")
    p.add_argument("overrides", nargs="*", help="dotted overrides passed to `rlkit train`")
    p.add_argument(
        "--address",
        default=os.environ.get("RAY_API_SERVER_ADDRESS", DEFAULT_ADDRESS),
        help=f"job server (dashboard) URL of the head (default {DEFAULT_ADDRESS}, "
        "or $RAY_API_SERVER_ADDRESS)",
    )
    p.add_argument("--working-dir", default=".", help="directory uploaded with the job")
    p.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra env var for the job (repeatable); overrides forwarded ones",
    )
    p.add_argument(
        "--no-forward-env",
        action="store_true",
        help=f"do not forward {', '.join(FORWARDED_ENV)} from this shell",
    )
    p.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="GLOB",
        help=f"extra upload exclude (repeatable); always: {', '.join(DEFAULT_EXCLUDES)}",
    )
    p.add_argument("--runs-dir", help="shorthand for logging.runs_dir=PATH (use shared storage)")
    p.add_argument("--submission-id", help="job id (default rlkit-<name>-<timestamp>)")
    p.add_argument(
        "--entrypoint",
        default="rlkit train",
        help="command the job runs before RECIPE (default: `rlkit train`)",
    )
    p.add_argument("--no-wait", action="store_true", help="return once the job is submitted")
    p.add_argument("--dry-run", action="store_true", help="print the command, submit nothing")
    return p


def parse_args(argv: list[str]) -> argparse.Namespace:
    """As `rlkit train`: overrides may come before or after the options."""
    return build_parser().parse_intermixed_args(argv)


def parse_env(pairs: list[str]) -> dict[str, str]:
    """`["K=V", ...]` -> `{"K": "V"}`; a pair without `=` is an error."""
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"submit: --env expects KEY=VALUE, got {pair!r}")
        env[key] = value
    return env


def job_env(extra: dict[str, str], forward: bool) -> dict[str, str]:
    """Env vars of the job: defaults < forwarded from this shell < explicit `--env`."""
    env = dict(DEFAULT_ENV)
    if forward:
        env.update({k: os.environ[k] for k in FORWARDED_ENV if k in os.environ})
    env.update(extra)
    return env


def runtime_env(env: dict[str, str], excludes: list[str]) -> dict:
    """The `--runtime-env-json` payload (the working dir itself goes in `--working-dir`)."""
    return {"env_vars": env, "excludes": [*DEFAULT_EXCLUDES, *excludes]}


def job_args(recipe: str, overrides: list[str], runs_dir: str | None) -> list[str]:
    """Arguments after the entrypoint: the recipe, the overrides, then `ray.address=auto`
    unless the user chose an address, so the job joins the cluster it runs on."""
    args = [recipe, *overrides]
    if runs_dir:
        args.append(f"logging.runs_dir={runs_dir}")
    if not any(o.startswith("ray.address=") for o in overrides):
        args.append("ray.address=auto")
    return args


def relative_recipe(recipe: str, working_dir: str) -> str:
    """The recipe's path inside the uploaded working dir (where the job will look for it)."""
    rel = os.path.relpath(Path(recipe).resolve(), Path(working_dir).resolve())
    if rel.startswith(".."):
        raise SystemExit(
            f"submit: {recipe} is outside --working-dir {working_dir}; "
            "the job only sees files inside it"
        )
    return rel


def ray_binary() -> str:
    """The `ray` next to this Python (the venv's), else the one on PATH."""
    local = Path(sys.executable).parent / "ray"
    return str(local) if local.is_file() else (shutil.which("ray") or "ray")


def build_command(args: argparse.Namespace, submission_id: str, recipe: str) -> list[str]:
    """The full `ray job submit ...` argv."""
    env = job_env(parse_env(args.env), forward=not args.no_forward_env)
    cmd = [
        ray_binary(),
        "job",
        "submit",
        "--address",
        args.address,
        "--submission-id",
        submission_id,
        "--working-dir",
        args.working_dir,
        "--runtime-env-json",
        json.dumps(runtime_env(env, args.exclude), sort_keys=True),
    ]
    if args.no_wait:
        cmd.append("--no-wait")
    return [
        *cmd,
        "--",
        *shlex.split(args.entrypoint),
        *job_args(recipe, args.overrides, args.runs_dir),
    ]


def resolve_run(recipe: str, overrides: list[str], runs_dir: str | None) -> tuple[str, str]:
    """Validate the recipe locally; return (run name, run dir as the job will see it)."""
    from rlkit.config import ConfigError, load_recipe

    extra = [f"logging.runs_dir={runs_dir}"] if runs_dir else []
    try:
        cfg = load_recipe(recipe, [*overrides, *extra])
    except ConfigError as exc:
        raise SystemExit(f"submit: config error: {exc}") from None
    return cfg.name, str(Path(cfg.logging.runs_dir) / cfg.name)


def run_streaming(cmd: list[str]) -> tuple[int, str | None]:
    """Run `cmd`, echo its output, return (exit code, run dir announced by `rlkit train`)."""
    announced = None
    with subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            match = DONE_LINE.search(line)
            announced = match.group(1) if match else announced
    sys.stdout.flush()
    return proc.returncode, announced


def report(submission_id: str, address: str, run_dir: str, finished: bool) -> None:
    """Tell the user where the job and its outputs are."""
    if not Path(run_dir).is_absolute():
        print(
            f"[submit] warning: logging.runs_dir is relative: {run_dir} lives inside the job's "
            "temporary copy of the working dir on the head node. Use --runs-dir on shared "
            "storage.",
            file=sys.stderr,
        )
    state = "succeeded" if finished else "submitted"
    print(
        f"[submit] job {submission_id} {state}\n"
        f"[submit] metrics: {Path(run_dir) / 'metrics.jsonl'}\n"
        f"[submit] run dir: {run_dir} (on the node that ran the job driver: the head)"
    )
    if not finished:
        print(
            f"[submit] follow: ray job logs -f {submission_id} --address {address}\n"
            f"[submit] status: ray job status {submission_id} --address {address}"
        )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    recipe = relative_recipe(args.recipe, args.working_dir)
    name, run_dir = resolve_run(args.recipe, args.overrides, args.runs_dir)
    submission_id = args.submission_id or f"rlkit-{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    cmd = build_command(args, submission_id, recipe)
    if args.dry_run:
        print(shlex.join(cmd))
        return 0
    if args.no_wait:
        rc = subprocess.call(cmd)
        if rc == 0:
            report(submission_id, args.address, run_dir, finished=False)
        return rc
    rc, announced = run_streaming(cmd)
    if rc != 0:
        print(
            f"[submit] job {submission_id} failed (exit {rc}); full log: "
            f"ray job logs {submission_id} --address {args.address}",
            file=sys.stderr,
        )
        return rc
    report(submission_id, args.address, announced or run_dir, finished=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
