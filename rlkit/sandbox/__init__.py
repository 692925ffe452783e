"""A sandbox for model-written code: `run_python(code) -> SandboxResult` under bubblewrap.

Used by code rewards (`rlkit.rewards.builtin.code`) and the HumanEval suite. What the sandbox
allows and what hostile programs got: docs/reliability.md, "Sandbox for model-written code".
"""

from rlkit.sandbox.result import SandboxResult, SandboxUnavailable
from rlkit.sandbox.run import MAX_CODE_BYTES, run_python

__all__ = ["MAX_CODE_BYTES", "SandboxResult", "SandboxUnavailable", "run_python"]
