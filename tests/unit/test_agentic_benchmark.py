"""The agentic benchmark's environment (benchmarks/agentic_env.py): seeded, long-tailed draws, and
a trajectory that ends after its drawn number of turns."""

from __future__ import annotations

import random
import statistics

from benchmarks import agentic_env
from benchmarks.agentic_env import LongTailEnv, sample_latency, sample_turns


def test_latency_is_seeded_and_long_tailed():
    draws = [sample_latency(random.Random(7)) for _ in range(3)]
    assert draws[0] == draws[1] == draws[2]  # same seed, same draw
    rng = random.Random(0)
    xs = sorted(sample_latency(rng) for _ in range(5000))
    median, p99 = statistics.median(xs), xs[int(0.99 * len(xs))]
    assert abs(median - agentic_env.MEDIAN_S) < 0.02
    assert p99 > 10 * median  # a long tail: log-normal sigma 1.2 gives ~16x
    assert max(xs) <= agentic_env.CAP_S
    rng = random.Random(0)
    assert sample_latency(rng, scale=3.0) == 3.0 * sample_latency(random.Random(0))


def test_turns_are_long_tailed_and_capped():
    rng = random.Random(1)
    ts = [sample_turns(rng) for _ in range(5000)]
    assert min(ts) == 1 and max(ts) == agentic_env.MAX_TURNS
    share = {k: sum(t >= k for t in ts) / len(ts) for k in (2, 4)}
    # P(turns >= k) = k^-1.2: about 0.44 and 0.19
    assert abs(share[2] - 2**-1.2) < 0.03 and abs(share[4] - 4**-1.2) < 0.03


def test_env_ends_after_its_turns_and_repeats_per_seed(monkeypatch):
    monkeypatch.setattr(agentic_env.time, "sleep", lambda s: None)

    def trajectory(env: LongTailEnv) -> list[tuple]:
        env.reset({"prompt": "1+2="})
        out = []
        while True:
            obs, reward, done, info = env.step("a 3")
            out.append((obs, reward, done))
            if done:
                return out

    LongTailEnv.restart()
    first = [trajectory(LongTailEnv(seed=5)) for _ in range(20)]
    LongTailEnv.restart()
    again = [trajectory(LongTailEnv(seed=5)) for _ in range(20)]
    assert first == again  # a restarted run draws the same trajectories
    assert len({len(t) for t in first}) > 1  # k-th trajectory of a prompt draws anew
    for t in first:
        assert t[-1][0] is None and all(obs == "Go on." for obs, _, _ in t[:-1])
        assert t[0][1] == 1 / 3  # the reward: share of digits in the turn
