"""`run_python`: model-written Python in the bubblewrap sandbox (docs/reliability.md, "Sandbox")."""

from __future__ import annotations

from rlkit.sandbox.command import Limits, bwrap_argv, clean_env
from rlkit.sandbox.host import Host, host
from rlkit.sandbox.process import run_bwrap
from rlkit.sandbox.result import SandboxResult, SandboxUnavailable

# The code travels as one argv string (`python -c`), which Linux caps at 32 pages.
MAX_CODE_BYTES = 128 * 1024 - 1
_PROBE_TIMEOUT_S = 30.0


def _probe(candidate: Host) -> None:
    """Run `print(6 * 7)` once in the sandbox; SandboxUnavailable with bwrap's words if it fails."""
    limits = Limits(timeout_s=_PROBE_TIMEOUT_S, memory_bytes=512 << 20)
    try:
        result = run_bwrap(
            bwrap_argv(candidate, "print(6 * 7)", limits),
            env=clean_env(candidate),
            stdin="",
            uid=candidate.uid,
            timeout_s=_PROBE_TIMEOUT_S,
        )
    except OSError as e:  # e.g. root without CAP_SETUID cannot start bwrap as nobody
        raise SandboxUnavailable(f"cannot start bubblewrap ({candidate.bwrap}): {e}") from None
    if result.stdout.strip() != "42" or result.exit_code != 0:
        why = result.stderr.strip() or f"exit code {result.exit_code}, stdout {result.stdout!r}"
        user = "" if candidate.uid is None else f" as uid {candidate.uid}"
        raise SandboxUnavailable(
            f"bubblewrap ({candidate.bwrap}) cannot start a sandbox here{user}: {why} "
            "(user namespaces may be disabled, e.g. kernel.unprivileged_userns_clone=0, "
            "kernel.apparmor_restrict_unprivileged_userns=1, or a container without them)"
        )


def run_python(
    code: str, *, stdin: str = "", timeout_s: float = 5.0, memory_mb: int = 512
) -> SandboxResult:
    """Run `code` as `python3 -c code` would, in the sandbox, and return what it did.

    No network, no host files but the interpreter's, a clean environment, a fresh work dir,
    rlimits (CPU `ceil(timeout_s) + 1` s, address space `memory_mb` MiB, 64 processes, 16 MiB
    files, 256 open files) and a wall-clock `timeout_s` after which everything it started is
    killed. Returns within `timeout_s` plus about 2 s (plus the one-time host probe on the
    first call) and leaves no process behind. Raises SandboxUnavailable when bubblewrap cannot
    run here, ValueError for code over `MAX_CODE_BYTES` or non-positive limits.
    """
    if len(code.encode("utf-8")) > MAX_CODE_BYTES:
        raise ValueError(f"code is longer than {MAX_CODE_BYTES} bytes")
    if "\0" in code:
        raise ValueError("code contains a NUL character")
    if timeout_s <= 0 or memory_mb <= 0:
        raise ValueError(f"need timeout_s > 0 and memory_mb > 0, got {timeout_s}, {memory_mb}")
    checked = host(_probe)
    limits = Limits(timeout_s=timeout_s, memory_bytes=memory_mb << 20)
    return run_bwrap(
        bwrap_argv(checked, code, limits),
        env=clean_env(checked),
        stdin=stdin,
        uid=checked.uid,
        timeout_s=timeout_s,
    )
