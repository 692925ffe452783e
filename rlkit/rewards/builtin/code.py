"""Code rewards: run a completion against unit tests in the sandbox (`rlkit.sandbox`).

A test run passes only if the test code ran to its end. The program is

    <solution>
    <tests>
    check(<entry_point>)          # when an entry point is given (HumanEval's convention)
    print("<nonce>")              # a fresh random nonce per run

and it passes iff it exits with status 0, in time, and its stdout has the nonce as a line. A
solution that ends the interpreter early (``sys.exit(0)``, ``raise SystemExit``, ``os._exit(0)``,
killing its own process, closing stdout) never reaches the last line, so it fails even with
exit status 0. Not covered: a solution that reads its own source (e.g. ``/proc/self/cmdline``)
to forge the nonce, or that returns objects defeating the tests' comparisons; the sandbox
(no network, no host files) bounds what such a program can do, not what it can claim.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Any

from rlkit.rewards.registry import reward
from rlkit.sandbox import MAX_CODE_BYTES, SandboxResult, run_python

_FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)


@dataclass(frozen=True)
class CodeTestOutcome:
    """Whether the tests passed, and why not in a few words (`passed`, `timed out`, ...)."""

    passed: bool
    reason: str
    result: SandboxResult | None = None


def extract_code(text: str) -> str:
    """The last fenced code block (```python, ```py or bare ```), else the whole text."""
    blocks = _FENCE.findall(text)
    return blocks[-1] if blocks else text


def build_program(solution: str, tests: str, entry_point: str | None, nonce: str) -> str:
    """The program one run executes (see the module docstring)."""
    parts = [solution.rstrip("\n"), tests.rstrip("\n")]
    if entry_point:
        parts.append(f"check({entry_point})")
    parts.append(f"print({nonce!r}, flush=True)")
    return "\n\n".join(parts) + "\n"


def _verdict(result: SandboxResult, nonce: str) -> CodeTestOutcome:
    if result.timed_out:
        return CodeTestOutcome(False, "timed out", result)
    if result.truncated:
        return CodeTestOutcome(False, "output over the cap", result)
    if result.exit_code != 0:
        last = result.stderr.strip().splitlines()[-1:] or [""]
        return CodeTestOutcome(False, f"exit {result.exit_code}: {last[0][:200]}", result)
    if nonce not in result.stdout.splitlines():
        return CodeTestOutcome(False, "tests did not run to their end", result)
    return CodeTestOutcome(True, "passed", result)


def run_tests(
    solution: str,
    tests: str,
    *,
    entry_point: str | None = None,
    timeout_s: float = 5.0,
    memory_mb: int = 512,
) -> CodeTestOutcome:
    """Run `solution` then `tests` (then `check(entry_point)`) in the sandbox, once."""
    nonce = f"rlkit-tests-done-{secrets.token_hex(16)}"
    program = build_program(solution, tests, entry_point, nonce)
    if len(program.encode("utf-8")) > MAX_CODE_BYTES or "\0" in program:
        return CodeTestOutcome(False, "program too long or not text")
    result = run_python(program, timeout_s=timeout_s, memory_mb=memory_mb)
    return _verdict(result, nonce)


@reward("code_tests")
def code_tests(
    prompt: str,
    completion: str,
    tests: str,
    entry_point: str | None = None,
    prepend_prompt: bool = False,
    timeout_s: float = 5.0,
    memory_mb: int = 512,
    **_: Any,
) -> float:
    """1.0 if the completion's code passes the row's `tests` in the sandbox, else 0.0.

    The code is the last fenced block of the completion (else all of it); with
    `prepend_prompt` it is `prompt + completion` verbatim (HumanEval-style: the prompt holds
    the signature, the completion the body). `tests`: Python code (asserts, or a
    `check(candidate)` function run on `entry_point`). Raises SandboxUnavailable where
    bubblewrap cannot run (never runs model code unsandboxed).
    """
    solution = prompt + completion if prepend_prompt else extract_code(completion)
    outcome = run_tests(
        solution, tests, entry_point=entry_point, timeout_s=timeout_s, memory_mb=memory_mb
    )
    return float(outcome.passed)
