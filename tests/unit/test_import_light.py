"""`import rlkit` (and the config / CLI layer) needs neither torch, vllm, deepspeed nor ray."""

import subprocess
import sys


def test_import_does_not_pull_engines():
    code = (
        "import sys, rlkit, rlkit.config, rlkit.cli, rlkit.engines, rlkit.rewards, "
        "rlkit.runtime.controller.staleness\n"
        "heavy = [m for m in ('torch', 'vllm', 'deepspeed', 'ray') if m in sys.modules]\n"
        "assert not heavy, heavy"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
