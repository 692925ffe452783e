"""Judge throughput: one judge per reward process vs one shared judge batching the requests of
every reward process (rlkit.rewards.models.gateway), on the same CPU budget.

Both modes score the same items, one item per `score` call (as a per-sample reward does), from
P reward processes; model loading is not timed.
  per-process: each of the P processes holds its own judge (threads = budget / P) and scores
               its share of the items itself;
  shared:      one judge process (threads = budget; a Ray actor in a run) behind a gateway in
               the driver; the P processes send their items through `ModelHandle`s and the
               gateway batches them (max_batch 64).
Throughput = items / wall seconds from the start signal to the last answer.  The judge is the
tiny random Qwen2 of recipes/judge_cpu.yaml's shape, `verdict: logprob`, on vLLM (`--engine hf`:
transformers).  Prints one line per number; the last is `ratio_shared_vs_per_process: X.XX`.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("VLLM_HOST_IP", "127.0.0.1")  # loopback, as cluster.LOOPBACK_ENV


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--procs", type=int, default=2, help="reward processes P")
    p.add_argument("--items", type=int, default=128, help="items scored in each mode")
    p.add_argument("--threads", type=int, default=2, help="CPU budget (threads) of the judges")
    p.add_argument("--engine", choices=("vllm", "hf"), default="vllm")
    return p


def judge_cfg(engine: str):
    from rlkit.config.schema import RewardModelConfig, TinyModelConfig

    tiny = TinyModelConfig(hidden_size=128, num_layers=2, num_heads=2, intermediate_size=512)
    return RewardModelConfig(name="judge", kind="judge", tiny=tiny, engine=engine,
                             template="Q: {prompt}\nA: {response}\nCorrect (Y/N)? ",
                             verdict_tokens=["Y", "N"], max_batch=64, batch_wait_s=0.005,
                             max_model_len=256, cache_size=0)  # fmt: skip


def make_items(n: int) -> list[tuple[str, str]]:
    """Arithmetic prompts and responses of varied lengths (seeded)."""
    import random

    rng = random.Random(0)
    out = []
    for _ in range(n):
        a, b = rng.randint(0, 999), rng.randint(0, 999)
        pad = " " * rng.randint(0, 40)
        out.append(
            (f"What is {a}+{b}?", f"{pad}The sum is \\boxed{{{a + b + rng.randint(-1, 1)}}}")
        )
    return out


def _bind(threads: int, index: int) -> None:
    from rlkit.runtime.placement.threads import vllm_cpu_binding

    os.environ["VLLM_CPU_OMP_THREADS_BIND"] = vllm_cpu_binding(threads, index)
    os.environ["OMP_NUM_THREADS"] = str(threads)


def own_judge(args, index, folder, items, ready, go, out) -> None:
    """Per-process mode: load a judge, wait for the signal, score `items` one at a time."""
    import torch

    threads = max(1, args.threads // args.procs)
    _bind(threads, index)
    torch.set_num_threads(threads)
    from rlkit.rewards.models.scorers import make_scorer

    scorer = make_scorer(judge_cfg(args.engine), folder)
    ready.release()
    go.wait()
    for item in items:
        scorer.score([{"prompt": item[0], "response": item[1]}])
    out.put(time.perf_counter())
    _shutdown(scorer)


def client(handle, items, ready, go, out) -> None:
    """Shared mode: a reward process sending its items through the handle, one per call."""
    ready.release()
    go.wait()
    for item in items:
        handle.score([item])
    out.put(time.perf_counter())


def serve_judge(args, folder, conn) -> None:
    """The shared judge's process (what the Ray actor is in a run): scores batches it receives,
    in its main thread."""
    import torch

    _bind(args.threads, 0)
    torch.set_num_threads(args.threads)
    from rlkit.rewards.models.scorers import make_scorer

    scorer = make_scorer(judge_cfg(args.engine), folder)
    conn.send("ready")
    while (items := conn.recv()) is not None:
        conn.send(scorer.score(items))
    _shutdown(scorer)


def _shutdown(scorer) -> None:
    """End a vLLM engine's core process (a spawned child exits without running atexit)."""
    llm = getattr(scorer.engine, "llm", None)
    if llm is not None:
        llm.llm_engine.engine_core.shutdown()


class PipeBackend:
    """The gateway's backend: the judge process at the other end of a pipe."""

    def __init__(self, ctx, args, folder):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=serve_judge, args=(args, folder, child))
        self.proc.start()
        assert self.conn.recv() == "ready"

    def call(self, items, timeout_s):
        self.conn.send(items)
        return self.conn.recv()

    def restart(self):
        raise RuntimeError("not in the benchmark")

    def close(self):
        self.conn.send(None)
        self.proc.join()


def timed(ctx, procs: list, ready, go, out, n: int) -> float:
    for p in procs:
        p.start()
    for _ in procs:
        ready.acquire()
    t0 = time.perf_counter()
    go.set()
    ends = [out.get() for _ in procs]
    for p in procs:
        p.join()
    return n / (max(ends) - t0)


def main(argv: list[str] | None = None) -> float:
    args = build_parser().parse_args(argv)
    from rlkit.rewards.models.tiny import build_tiny_reward_model

    cfg = judge_cfg(args.engine)
    folder = str(build_tiny_reward_model(Path(tempfile.mkdtemp()) / "judge", "judge", cfg.tiny))
    items = make_items(args.items)
    shares = [items[i :: args.procs] for i in range(args.procs)]
    ctx = mp.get_context("spawn")

    ready, go, out = ctx.Semaphore(0), ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=own_judge, args=(args, i, folder, s, ready, go, out))
             for i, s in enumerate(shares)]  # fmt: skip
    per_process = timed(ctx, procs, ready, go, out, len(items))
    print(f"per_process_items_per_s: {per_process:.1f}", flush=True)

    from rlkit.rewards.models import ModelGateway

    gateway = ModelGateway("judge", PipeBackend(ctx, args, folder), max_batch=64,
                           batch_wait_s=cfg.batch_wait_s)  # fmt: skip
    ready, go, out = ctx.Semaphore(0), ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=client, args=(gateway.handle, s, ready, go, out))
             for s in shares]  # fmt: skip
    shared = timed(ctx, procs, ready, go, out, len(items))
    m = gateway.metrics()
    gateway.close()
    print(f"shared_items_per_s: {shared:.1f}", flush=True)
    print(f"shared_mean_batch_size: {m['reward_model/judge/batch_size']:.2f}", flush=True)
    ratio = shared / per_process
    print(f"ratio_shared_vs_per_process: {ratio:.2f}", flush=True)
    return ratio


if __name__ == "__main__":
    main()
