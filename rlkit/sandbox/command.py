"""The bubblewrap command line of one sandboxed run: namespaces, mounts, environment, limits.

What the program sees (docs/reliability.md, "Sandbox"):
- namespaces: new user, PID, network (only its own loopback), IPC, UTS and cgroup ones; no
  further user namespaces; its own session (no signals to the caller's process group);
- files: /usr and the loader's /lib* links or dirs, /etc/ld.so.cache and the interpreter's
  prefix, all read-only; a fresh /proc and minimal /dev; a fresh tmpfs work dir (`WORKDIR`,
  also HOME and the cwd) and a fresh tmpfs /tmp, both size-capped and gone when the run ends;
  the root itself read-only. Nothing else of the host: no project, /home, /root, host /tmp.
- environment: only the variables of `clean_env` (no parent variable leaks through);
- limits: set inside by `rlkit/sandbox/_inside.py` (see there), then `python -I -c code`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from rlkit.sandbox.host import Host

WORKDIR = "/sandbox"
_INSIDE = (Path(__file__).with_name("_inside.py")).read_text(encoding="utf-8")
_LOADER_DIRS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")


@dataclass(frozen=True)
class Limits:
    """Resource limits of one run (bytes unless named otherwise)."""

    timeout_s: float
    memory_bytes: int
    processes: int = 64
    file_size: int = 16 << 20
    open_files: int = 256
    tmpfs_size: int = 64 << 20  # each of the work dir and /tmp

    @property
    def cpu_s(self) -> int:
        """CPU seconds: the wall-clock budget rounded up plus one (the timeout acts first)."""
        return math.ceil(self.timeout_s) + 1


def clean_env(host: Host) -> dict[str, str]:
    """The whole environment of the sandboxed program."""
    path = dict.fromkeys((os.path.dirname(host.python), "/usr/local/bin", "/usr/bin", "/bin"))
    return {
        "PATH": ":".join(path),
        "HOME": WORKDIR,
        "TMPDIR": "/tmp",
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONIOENCODING": "utf-8",
        # glibc reserves 64 MiB of address space per malloc arena (one per thread): without
        # this a few threads exhaust RLIMIT_AS before they allocate anything
        "MALLOC_ARENA_MAX": "2",
    }


def _system_mounts() -> list[str]:
    """/usr plus the dynamic loader's directories, as links when the host has them as links."""
    args = ["--ro-bind", "/usr", "/usr"]
    for path in _LOADER_DIRS:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    return args + ["--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache"]


def bwrap_argv(host: Host, code: str, limits: Limits) -> list[str]:
    """The full argv: bwrap's options, then the interpreter running `_inside.py` on `code`."""
    args = [host.bwrap, "--unshare-all", "--unshare-user", "--disable-userns"]
    args += ["--die-with-parent", "--new-session", "--hostname", "sandbox"]
    args += _system_mounts()
    for root in host.python_roots:
        args += ["--ro-bind", root, root]
    args += ["--proc", "/proc", "--dev", "/dev"]
    for path, mode in (("/tmp", "1777"), (WORKDIR, "0700")):
        args += ["--perms", mode, "--size", str(limits.tmpfs_size), "--tmpfs", path]
    args += ["--remount-ro", "/", "--chdir", WORKDIR, "--"]
    numbers = (
        limits.cpu_s,
        limits.memory_bytes,
        limits.processes,
        limits.file_size,
        limits.open_files,
    )
    return args + [host.python, "-I", "-c", _INSIDE, *map(str, numbers), code]
