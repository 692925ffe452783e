"""What a sandboxed run returns, and the one error a platform without a usable sandbox raises."""

from __future__ import annotations

from dataclasses import dataclass


class SandboxUnavailable(RuntimeError):
    """bubblewrap cannot run here; the message names why (never an unsandboxed fallback)."""


@dataclass(frozen=True)
class SandboxResult:
    """The outcome of one `run_python` call.

    `exit_code` is the program's exit status as a shell reports it (128 + N when signal N
    killed it, e.g. 137 for SIGKILL, 152 for SIGXCPU), None when the wall-clock timeout or
    the output cap ended it. Output past the cap is dropped and `truncated` is set.
    """

    stdout: str
    stderr: str
    exit_code: int | None
    timed_out: bool
    truncated: bool = False
    duration_s: float = 0.0
