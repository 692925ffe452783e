"""Hostile programs in the sandbox: each asserts what the program got (docs/reliability.md).

Every program runs through the `run_hostile` fixture: it carries a unique marker in its code,
hence in the command line of bwrap and of every python it starts; after `run_python` returns
(within timeout_s plus a small constant), no host process may carry it.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from rlkit.sandbox.process import MAX_OUTPUT_BYTES

pytestmark = pytest.mark.usefixtures("sandbox")
README = Path(__file__).resolve().parents[3] / "README.md"


def test_fork_bomb_is_capped_then_killed(marker, run_hostile):
    code = """
    import os, time
    n = 0
    while True:
        try:
            pid = os.fork()
        except OSError as e:
            print("refused after", n, "errno", e.errno, flush=True)
            break
        if pid == 0:
            while True:  # every child bombs too
                try:
                    os.fork()
                except OSError:
                    time.sleep(0.01)
        n += 1
    time.sleep(60)
    """
    r = run_hostile(code, timeout_s=2.0)
    assert r.timed_out and r.exit_code is None
    words = r.stdout.split()
    assert words[:1] == ["refused"] and words[-1] == "11", r.stdout  # EAGAIN: RLIMIT_NPROC
    assert int(words[2]) < 64


def test_memory_bomb_gets_memory_error(marker, run_hostile):
    code = """
    chunks = []
    while True:
        chunks.append(bytearray(16 << 20))
    """
    r = run_hostile(code, timeout_s=5.0, memory_mb=256)
    assert r.exit_code == 1 and not r.timed_out
    assert "MemoryError" in r.stderr
    assert r.duration_s < 4.0  # refused by RLIMIT_AS, not stopped by the clock


def test_infinite_loop_is_killed_at_the_deadline(marker, run_hostile):
    r = run_hostile("while True:\n    pass\n", timeout_s=1.0)
    assert r.timed_out and r.exit_code is None
    assert 1.0 <= r.duration_s < 3.0


def test_output_flood_is_capped_and_ended(marker, run_hostile):
    r = run_hostile("while True:\n    print('x' * 10000)\n", timeout_s=10.0)
    assert r.truncated and r.exit_code is None and not r.timed_out
    assert MAX_OUTPUT_BYTES <= len(r.stdout) < MAX_OUTPUT_BYTES + 200
    assert r.stdout.rstrip().endswith("output truncated at 1048576 bytes]")
    assert r.duration_s < 5.0  # ended at the cap, long before the deadline


def test_network_connect_to_host_loopback_fails(marker, run_hostile):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.5)
    port = server.getsockname()[1]
    code = f"""
    import socket
    for addr in (("127.0.0.1", {port}), ("8.8.8.8", 53)):
        try:
            socket.create_connection(addr, timeout=2).close()
            print("connected", addr)
        except OSError as e:
            print("refused", type(e).__name__)
    """
    try:
        r = run_hostile(code)
        with pytest.raises(TimeoutError):
            server.accept()  # nothing ever reached the host's server
    finally:
        server.close()
    assert r.exit_code == 0
    assert r.stdout.split("\n")[:2] == ["refused ConnectionRefusedError", "refused OSError"]


def test_host_files_environment_and_descriptors_are_out_of_reach(
    marker, run_hostile, tmp_path, monkeypatch
):
    secret = f"secret-{marker}"
    monkeypatch.setenv("RLKIT_TEST_SECRET", secret)
    host_file = tmp_path / "secret.txt"
    host_file.write_text(secret)
    paths = [str(host_file), "/etc/hostname", "/etc/passwd", str(README), "/root", "/home"]
    assert README.is_file()
    code = f"""
    import os
    for path in {paths!r}:
        try:
            print(path, "read", os.listdir(path) if os.path.isdir(path) else open(path).read())
        except OSError as e:
            print(path, type(e).__name__)
    print("env", os.environ.get("RLKIT_TEST_SECRET"))
    environs = b"".join(open(f"/proc/{{p}}/environ", "rb").read()
                        for p in os.listdir("/proc") if p.isdigit())
    print("in /proc", {secret.encode()!r} in environs)
    print("fds", sorted(os.listdir("/proc/self/fd")))
    """
    r = run_hostile(code)
    assert r.exit_code == 0, r.stderr
    lines = r.stdout.splitlines()
    for path, line in zip(paths, lines, strict=False):
        assert line == f"{path} FileNotFoundError", line
    assert secret not in r.stdout.replace(f"{secret.encode()!r}", "")
    assert lines[len(paths) :] == ["env None", "in /proc False", "fds ['0', '1', '2', '3']"]


def test_writes_outside_the_work_dir_fail_or_vanish(marker, run_hostile, tmp_path):
    escape = f"/tmp/{marker}.txt"
    targets = [str(tmp_path / "escape.txt"), "/usr/escape.txt", "/escape.txt", escape, "here.txt"]
    code = f"""
    import os
    for path in {targets!r}:
        try:
            with open(path, "w") as f:
                f.write("x")
            print(path, "written")
        except OSError as e:
            print(path, type(e).__name__, e.errno)
    print("cwd", os.getcwd())
    """
    r = run_hostile(code)
    assert r.exit_code == 0, r.stderr
    assert r.stdout.splitlines() == [
        f"{targets[0]} FileNotFoundError 2",  # the host's tmp dir does not exist in there
        "/usr/escape.txt OSError 30",  # EROFS
        "/escape.txt OSError 30",
        f"{escape} written",  # the sandbox's own /tmp, a tmpfs gone with the run
        "here.txt written",
        "cwd /sandbox",
    ]
    assert not (tmp_path / "escape.txt").exists() and not os.path.exists(escape)
    assert not Path("/usr/escape.txt").exists() and not Path("/escape.txt").exists()


def test_killing_the_parent_kills_nothing_outside(marker, run_hostile):
    code = """
    import os, signal
    parent = os.getppid()
    for target in (parent, -1):
        try:
            os.kill(target, signal.SIGKILL)
            print("sent", target, flush=True)
        except OSError as e:
            print("denied", target, type(e).__name__, flush=True)
    print("alive", parent)
    """
    r = run_hostile(code)
    assert r.exit_code == 0, r.stderr
    # the parent is the namespace's PID 1, which the kernel shields from signals sent inside
    # it; kill(-1) reaches only the namespace, where nothing else it may signal runs
    assert r.stdout.splitlines() == ["sent 1", "denied -1 ProcessLookupError", "alive 1"]


def test_background_process_does_not_outlive_the_run(marker, run_hostile):
    code = f"""
    import os, subprocess, sys
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:  # a double-forked daemon, in its own session
            os.execv(sys.executable, [sys.executable, "-c",
                     "import time; time.sleep(60)  # {marker}"])
        os._exit(0)
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)  # {marker}"],
                     start_new_session=True)
    print("leaving", flush=True)
    """
    r = run_hostile(code, timeout_s=10.0)
    assert r.exit_code == 0 and not r.timed_out, r.stderr
    assert r.stdout == "leaving\n"
    assert r.duration_s < 3.0  # returned when the program ended, not at the deadline
