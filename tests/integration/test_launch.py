"""Cluster launch: `launch/start_head.sh` starts a Ray head, `launch/submit.py` submits the
quickstart recipe to it as a Ray Job, and the job's metrics come back.

The head binds loopback only (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, --node-ip-address and
--dashboard-host 127.0.0.1, free ports, its own --temp-dir). It is stopped by signalling the
processes of ITS process tree only: never `ray stop`, which would end every Ray session on the
machine (other test sessions included)."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from launch import submit

REPO = Path(__file__).resolve().parents[2]
LOOPBACK_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
}


# --- fast: the command that submit builds --------------------------------------------------


def _dry_run(capsys, *argv: str) -> list[str]:
    assert submit.main(["recipes/quickstart.yaml", *argv, "--dry-run"]) == 0
    return shlex.split(capsys.readouterr().out.strip())


def test_dry_run_builds_ray_job_submit(capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cmd = _dry_run(
        capsys,
        "trainer.total_steps=2",
        "--address",
        "http://10.0.0.1:8265",
        "--env",
        "OMP_NUM_THREADS=1",
        "--runs-dir",
        "/shared/runs",
        "--no-wait",
    )
    sep = cmd.index("--")
    head, entry = cmd[:sep], cmd[sep + 1 :]
    assert Path(head[0]).name == "ray" and head[1:3] == ["job", "submit"]
    assert head[head.index("--address") + 1] == "http://10.0.0.1:8265"
    assert head[head.index("--working-dir") + 1] == "."
    assert "--no-wait" in head
    renv = json.loads(head[head.index("--runtime-env-json") + 1])
    assert {".venv", "runs", ".git"} <= set(renv["excludes"])
    assert renv["env_vars"]["OMP_NUM_THREADS"] == "1"
    assert renv["env_vars"]["HF_HUB_OFFLINE"] == "1"  # forwarded from this shell
    assert entry == [
        "rlkit",
        "train",
        "recipes/quickstart.yaml",
        "trainer.total_steps=2",
        "logging.runs_dir=/shared/runs",
        "ray.address=auto",
    ]


def test_dry_run_keeps_explicit_address_and_rejects_bad_recipes(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(REPO)
    cmd = _dry_run(capsys, "ray.address=10.0.0.1:6379", "--no-forward-env")
    assert [a for a in cmd if a.startswith("ray.address=")] == ["ray.address=10.0.0.1:6379"]
    assert "--no-wait" not in cmd
    with pytest.raises(SystemExit, match="config error"):
        submit.main(["recipes/quickstart.yaml", "trainer.total_steps=x", "--dry-run"])
    outside = tmp_path / "r.yaml"
    outside.write_text("name: x\n")
    with pytest.raises(SystemExit, match="outside --working-dir"):
        submit.main([str(outside), "--dry-run"])


# --- slow: a real head, a real job ---------------------------------------------------------


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


class LoopbackHead:
    """A Ray head started by this test (`start_head.sh --block` in its own session)."""

    def __init__(self) -> None:
        self.temp_dir = tempfile.mkdtemp(prefix="rlkray", dir="/tmp")  # short: socket paths
        gcs, self.dash, *extra = _free_ports(9)
        env = {
            **os.environ,
            **LOOPBACK_ENV,
            "VENV": sys.prefix,
            "NODE_IP": "127.0.0.1",
            "RAY_PORT": str(gcs),
            "DASHBOARD_HOST": "127.0.0.1",
            "DASHBOARD_PORT": str(self.dash),
            "NUM_CPUS": "4",
            "OBJECT_STORE_BYTES": "600000000",
            "TEMP_DIR": self.temp_dir,
        }
        names = [
            "--ray-client-server-port",
            "--dashboard-agent-listen-port",
            "--dashboard-agent-grpc-port",
            "--metrics-export-port",
            "--runtime-env-agent-port",
            "--node-manager-port",
            "--object-manager-port",
        ]
        flags = [f"{name}={port}" for name, port in zip(names, extra, strict=True)]
        self.log = open(Path(self.temp_dir) / "head.log", "w")
        self.proc = subprocess.Popen(
            ["bash", str(REPO / "launch/start_head.sh"), "--block", *flags],
            env=env,
            cwd=REPO,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.dash}"

    def wait_ready(self, timeout_s: float = 180) -> None:
        """Until the job server answers (the dashboard starts last)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    "head exited:\n" + (Path(self.temp_dir) / "head.log").read_text()
                )
            try:
                with urllib.request.urlopen(f"{self.address}/api/version", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(1)
        raise TimeoutError(f"no job server at {self.address} after {timeout_s} s")

    def _processes(self) -> list:
        import psutil

        try:
            procs = [psutil.Process(self.proc.pid)]
            procs += procs[0].children(recursive=True)
        except psutil.NoSuchProcess:
            procs = []
        seen = {p.pid for p in procs}
        for p in psutil.process_iter(["cmdline"]):  # anything reparented, by our temp dir
            if p.pid not in seen and self.temp_dir in " ".join(p.info["cmdline"] or []):
                procs.append(p)
        return procs

    def stop(self) -> None:
        """SIGTERM this head's processes (snapshot first: children get reparented), then kill."""
        import psutil

        procs = self._processes()
        for p in procs:
            try:
                p.terminate()
            except psutil.NoSuchProcess:
                pass
        _, alive = psutil.wait_procs(procs, timeout=20)
        for p in alive + self._processes():
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        self.log.close()
        shutil.rmtree(self.temp_dir, ignore_errors=True)


@pytest.fixture
def loopback_head():
    head = LoopbackHead()
    try:
        head.wait_ready()
        yield head
    finally:
        head.stop()


@pytest.mark.slow
def test_submit_quickstart_to_a_running_head(loopback_head, tmp_path):
    runs = tmp_path / "runs"  # absolute and outside the working dir: the job runs in a copy
    ext = os.environ.get("TORCH_EXTENSIONS_DIR", str(Path(sys.prefix) / "torch_extensions"))
    cmd = [
        sys.executable,
        "-m",
        "launch.submit",
        "recipes/quickstart.yaml",
        "trainer.total_steps=2",
        "sft.steps=10",
        "logging.tensorboard=false",
        "name=submitted",
        "--runs-dir",
        str(runs),
        "--address",
        loopback_head.address,
        "--env",
        f"TORCH_EXTENSIONS_DIR={ext}",
        "--env",
        "VLLM_CPU_KVCACHE_SPACE=1",
        "--env",
        "HF_HUB_OFFLINE=1",
        "--env",
        "OMP_NUM_THREADS=1",
    ]
    t0 = time.monotonic()
    out = subprocess.run(
        cmd,
        cwd=REPO,
        env={**os.environ, **LOOPBACK_ENV},
        text=True,
        capture_output=True,
        timeout=900,
    )
    took = time.monotonic() - t0
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-3000:]
    metrics = runs / "submitted" / "metrics.jsonl"
    assert f"[submit] metrics: {metrics}" in out.stdout
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert all(0.0 <= r["reward/mean"] <= 1.0 for r in rows)
    # The job joined the head it was submitted to instead of starting its own cluster.
    cfg = yaml.safe_load((runs / "submitted" / "config.yaml").read_text())
    assert cfg["ray"]["address"] == "auto"
    print(f"submitted job finished in {took:.0f} s")
