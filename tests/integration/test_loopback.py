"""No process of a run listens beyond loopback with the embedded cluster (issue 12, point 5).

Checked with the sockets themselves (psutil), not with a setting's promise: a thread samples the
listening sockets of every process under pytest (Ray's gcs_server, raylet, agents and workers,
the vLLM engine, the DeepSpeed ranks and their torch stores, the reward pool, the eval actor)
while a real two-step `train` runs."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from rlkit.config.loader import config_from_dict
from tests.integration.conftest import tiny_recipe

pytestmark = pytest.mark.slow


def is_loopback(ip: str) -> bool:
    addr = ipaddress.ip_address(ip.split("%")[0])
    mapped = getattr(addr, "ipv4_mapped", None)
    return (mapped or addr).is_loopback


def listeners(root: int, session_dir: str = "") -> set[tuple[str, str, int]]:
    """(process name, ip, port) of every TCP listener of `root`'s process tree and of the
    processes whose command line names the Ray session directory."""
    import psutil

    procs = {root: psutil.Process(root)}
    procs.update({p.pid: p for p in procs[root].children(recursive=True)})
    if session_dir:
        for p in psutil.process_iter(["cmdline"]):
            if session_dir in " ".join(p.info["cmdline"] or []):
                procs[p.pid] = p
    out = set()
    for p in procs.values():
        try:
            conns, name = p.net_connections(kind="tcp"), p.name()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        out |= {(name, c.laddr.ip, c.laddr.port) for c in conns if c.status == psutil.CONN_LISTEN}
    return out


class Sampler(threading.Thread):
    def __init__(self, session_dir: str):
        super().__init__(daemon=True)
        self.session_dir, self.seen, self.stop = session_dir, set(), threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.5):
            self.seen |= listeners(os.getpid(), self.session_dir)


def test_a_real_run_listens_on_loopback_only(tmp_path, tiny_model, vllm_worker):
    import ray

    from rlkit.runtime.run import train

    recipe = tiny_recipe(
        tmp_path,
        name="loopback",
        trainer={"total_steps": 2},
        reward={"mode": "process", "num_workers": 1},
        eval={
            "every": 1,
            "suite": "gsm8k",
            "data": "tests/integration/data/gsm8k_tiny.jsonl",
            "engine": "hf",
            "settings": {"max_tokens": 4},
        },
    )
    recipe["model"]["path"] = tiny_model
    sampler = Sampler(ray._private.worker._global_node.get_session_dir_path())
    sampler.start()
    try:
        run_dir = train(config_from_dict(recipe), workers=[vllm_worker], log=lambda *_: None)
    finally:
        sampler.stop.set()
        sampler.join()
    rows = (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["step"] for r in rows] == [1, 2]
    names = {name for name, _, _ in sampler.seen}
    assert {"gcs_server", "raylet"} <= names, names  # the sampler saw the run's servers
    outside = sorted(s for s in sampler.seen if not is_loopback(s[1]))
    assert not outside, f"listening beyond loopback: {outside}"


PROBE = """
import os, sys, json
import ray  # imported before rlkit sets anything, as a CLI or notebook may do
from rlkit.runtime.placement.cluster import init_ray
from tests.integration.test_loopback import listeners

init_ray(None, num_cpus=1, object_store_mb=100)

@ray.remote(num_cpus=0)
class Probe:
    def ping(self):
        return os.getpid()

ray.get(Probe.remote().ping.remote())
from ray._raylet import AuthenticationMode, get_authentication_mode
token = get_authentication_mode() == AuthenticationMode.TOKEN
print(json.dumps([token, sorted(listeners(os.getpid()))]))
ray.shutdown()
"""


@pytest.mark.parametrize("auth", ["disabled", None])
def test_init_ray_binds_loopback_even_when_ray_was_imported_first(tmp_path, auth):
    """The `rlkit train` path: no loopback variable in the environment beforehand.  With
    RAY_AUTH_MODE unset Ray 2.60 also turns token authentication on for the new cluster (the
    token goes to $HOME/.ray/auth_token: a temporary HOME here)."""
    drop = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_AUTH_MODE"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update({"RAY_AUTH_MODE": auth} if auth else {"HOME": str(tmp_path)})
    root = Path(__file__).parents[2]
    env["PYTHONPATH"] = str(root)
    cmd = [sys.executable, "-c", PROBE]
    out = subprocess.run(cmd, env=env, cwd=root, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    token, seen = json.loads(out.stdout.strip().splitlines()[-1])
    seen = [tuple(x) for x in seen]
    assert token == (auth is None)
    if auth is None:
        assert (tmp_path / ".ray" / "auth_token").is_file()
    assert any(name == "gcs_server" for name, _, _ in seen), seen
    outside = [s for s in seen if not is_loopback(s[1])]
    assert not outside, f"listening beyond loopback: {outside}"
