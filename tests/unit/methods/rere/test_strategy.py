"""The `constrained_beam` rollout strategy (ReRe) on a fake engine: one request per group, served
by the worker's request loop as one batched beam search, G samples back with per-token
behaviour logprobs; rewards asked once per group with ranks; ReRe's rewards by hand."""

from __future__ import annotations

import itertools
import json
import math
import time
from concurrent.futures import Future

import numpy as np
import pytest

from rlkit.engines.rollout_protocol import Completion, FinishedRequest, SamplingConfig
from rlkit.methods.rere import beam_jobs
from rlkit.methods.rere.beam_search import (
    TrieConstraint,
    beam_search,
    constrained_beam_search,
    run_beam_searches,
)
from rlkit.methods.rere.item_trie import ItemTrie
from rlkit.methods.rere.rewards import rere_rank, rere_rule
from rlkit.methods.rere.strategy import BeamCompletion, BeamRequest, ConstrainedBeamStrategy
from rlkit.rewards.types import RewardResult
from rlkit.runtime.actors.request_kinds import REQUEST_KINDS, SampleRequest
from rlkit.runtime.actors.rollout_worker import RolloutWorker
from rlkit.runtime.controller.groups import Group, Prompt
from rlkit.runtime.controller.rollout_scheduler import RolloutScheduler
from rlkit.runtime.controller.strategies import make_strategy

TITLES = ["Alien", "Aliens", "Heat", "Ran", "Rain Man", "Up", "Babe", "Big", "Brazil", "Clue"]


class FakeEngine:
    """Deterministic full-vocab log-softmax per prefix; sampling requests finish in one step,
    next-token jobs are answered in the step after they were added (all of them together)."""

    model_path = "/no/such/model"  # no generation config: the tokenizer's EOS alone

    def __init__(self, tokenizer):
        self.tokenizer, self.version = tokenizer, 3
        self.vocab = len(tokenizer)
        self.calls: list[int] = []  # prefixes per next_token_logprobs call
        self.live: list[str] = []
        self.next_jobs: dict[str, tuple] = {}
        self.steps: list[list[str]] = []  # per step: the request ids it answered

    def logsoftmax(self, prefix) -> np.ndarray:
        rng = np.random.default_rng(abs(hash(tuple(prefix))) % (2**32))
        x = rng.normal(size=self.vocab) * 3
        return x - np.log(np.exp(x - x.max()).sum()) - x.max()

    def next_token_logprobs(self, prefixes, candidates, top_k=20):
        out = []
        for p, cand in zip(prefixes, candidates):
            lp = self.logsoftmax(p)
            out.append({int(t): float(lp[t]) for t in cand})
        return out

    def add(self, rid, prompt, sampling):
        if sampling.is_next_token:
            self.next_jobs[rid] = (list(prompt), sampling.next_token_ids)
        else:
            self.live.append(rid)

    def num_unfinished(self):
        return len(self.live) + len(self.next_jobs)

    def pending_ids(self):
        return [*self.live, *self.next_jobs]

    def abort(self, ids):
        self.live = [r for r in self.live if r not in ids]
        for r in ids:
            self.next_jobs.pop(r, None)

    def step(self):
        done = [FinishedRequest(r, Completion([5], [-0.5], "x"), self.version) for r in self.live]
        jobs, self.live, self.next_jobs = self.next_jobs, [], {}
        if jobs:
            self.calls.append(len(jobs))
            (prefixes, cands) = zip(*jobs.values())
            lps = self.next_token_logprobs(list(prefixes), list(cands))
            for rid, lp in zip(jobs, lps):
                done.append(FinishedRequest(rid, Completion([], [], next_logprobs=lp), 0))
        self.steps.append([f.request_id for f in done])
        return done


@pytest.fixture()
def catalogue(tmp_path):
    path = tmp_path / "titles.json"
    path.write_text(json.dumps(TITLES))
    return str(path)


@pytest.fixture()
def engine():
    from rlkit.data.tiny_model import build_char_tokenizer

    return FakeEngine(build_char_tokenizer())


def make_worker(engine) -> RolloutWorker:
    return RolloutWorker.around(engine)


def group_of(gid: int, size: int, prompt_ids) -> Group:
    return Group(gid, Prompt(gid, f"p{gid}", list(prompt_ids), {"item_title": "Heat"}), size, 0, 0)


def strategy(catalogue, **kw) -> ConstrainedBeamStrategy:
    return make_strategy(
        "constrained_beam", SamplingConfig(max_tokens=16), 0, {"catalogue": catalogue, **kw}
    )


def test_one_request_per_group_g_samples_with_behaviour_logprobs(engine, catalogue):
    st, worker = strategy(catalogue), make_worker(engine)
    group = group_of(7, 4, [10, 11, 12])
    reqs = st.requests(group)
    assert len(reqs) == 1 and isinstance(reqs[0], BeamRequest) and reqs[0].num_beams == 4
    kind = REQUEST_KINDS[reqs[0].kind]  # the worker finds ReRe's kind through the registry
    assert kind.jobs is beam_jobs.BeamJobs and not kind.exclusive
    (fin,) = run_until(worker, reqs, 1)
    assert fin.request_id == "7:0" and fin.start_version == engine.version
    assert isinstance(fin.completion, BeamCompletion)
    out = st.on_finished(group, fin.request_id, fin.completion)
    assert [j for j, _ in out.samples] == [0, 1, 2, 3]
    # the same beams and scores as the engine-agnostic constrained beam search
    trie = beam_jobs.cached_trie(catalogue, "", engine.tokenizer)
    (ref,) = constrained_beam_search(
        engine.next_token_logprobs, [[10, 11, 12]], 4, 16, eos_token_ids=[1], allowed_sequences=trie
    )
    titles = []
    for (_, c), r in zip(out.samples, ref, strict=True):
        assert c.token_ids == r.token_ids and c.token_ids[-1] == 1
        assert len(c.logprobs) == len(c.token_ids)
        assert math.isclose(sum(c.logprobs), r.score, abs_tol=1e-4)  # score = Σ behaviour lps
        lp0 = engine.logsoftmax([10, 11, 12])[c.token_ids[0]]  # full-vocab, not renormalised
        assert math.isclose(c.logprobs[0], lp0, abs_tol=1e-6)
        titles.append(json.loads(c.text.strip()))
    assert len(set(titles)) == 4 and set(titles) <= set(TITLES)  # distinct valid items


def run_until(worker, new, want: int, timeout_s: float = 60.0) -> list:
    """The worker's finished requests, polled as the controller does, until `want` are in."""
    done, t0 = worker.run(new, [], 0.5), time.monotonic()
    while len(done) < want and time.monotonic() - t0 < timeout_s:
        done += worker.run([], [], 0.5)
    return done


def reference_beams(engine, catalogue, job) -> list:
    trie = beam_jobs.cached_trie(catalogue, "", engine.tokenizer)
    (ref,) = constrained_beam_search(
        engine.next_token_logprobs,
        [job.prompt_ids],
        job.num_beams,
        job.max_tokens,
        eos_token_ids=[1],
        allowed_sequences=trie,
    )
    return [r.token_ids for r in ref]


def test_beam_jobs_merge_across_calls_and_share_engine_steps(engine, catalogue, monkeypatch):
    """A job added while another is mid-search joins it: every engine step serves the current
    round of every live job and the sampling requests beside them; each job's beams equal its
    own search's."""
    built = []
    orig = ItemTrie.from_tokenizer.__func__
    monkeypatch.setattr(
        ItemTrie,
        "from_tokenizer",
        classmethod(lambda cls, *a, **k: built.append(1) or orig(cls, *a, **k)),
    )
    monkeypatch.setattr(beam_jobs, "_TRIES", {})
    st, jobs = strategy(catalogue), beam_jobs.BeamJobs()
    a, b = (st.requests(group_of(g, 3, [20 + g, 30]))[0] for g in (1, 2))
    assert jobs.add(engine, [a]) == []
    engine.add("9:0", [1, 2], SamplingConfig())
    first = jobs.route(engine, engine.step())
    assert [f.request_id for f in first] == ["9:0"]  # the sample is not held by the search
    assert jobs.add(engine, [b]) == []  # a later call's job
    finished = {}
    while jobs.pending_ids():
        finished.update({f.request_id: f for f in jobs.route(engine, engine.step())})
    assert set(finished) == {"1:0", "2:0"}
    for job in (a, b):
        beams = finished[job.request_id].completion.beams
        assert [c.token_ids for c in beams] == reference_beams(engine, catalogue, job)
    rounds = {
        j: {
            rid.split("@")[1].split(".")[0]
            for step in engine.steps
            for rid in step
            if rid.startswith(j + "@")
        }
        for j in ("1:0", "2:0")
    }
    # one engine step per decoding step, shared: job b's rounds ran inside job a's steps
    assert len(engine.steps) == max(len(rounds["1:0"]), 1 + len(rounds["2:0"]))
    assert any(r.startswith("1:0@") for r in engine.steps[1])
    assert any(r.startswith("2:0@") for r in engine.steps[1])
    assert built == [1]  # the trie is built once per worker per catalogue


def test_worker_serves_beam_jobs_beside_sampling_and_across_calls(engine, catalogue):
    st, worker = strategy(catalogue), make_worker(engine)
    a, b = (st.requests(group_of(g, 3, [20 + g, 30]))[0] for g in (1, 2))
    sample = SampleRequest("9:0", [1, 2], SamplingConfig())
    done = worker.run([sample, a], [], 0.0)
    done += run_until(worker, [b], 3 - len(done))
    by_id = {f.request_id: f for f in done}
    assert set(by_id) == {"9:0", "1:0", "2:0"}
    for job in (a, b):
        beams = by_id[job.request_id].completion.beams
        assert [c.token_ids for c in beams] == reference_beams(engine, catalogue, job)
        assert by_id[job.request_id].start_version == engine.version


def test_aborted_and_failing_beam_jobs(engine, catalogue):
    st, jobs = strategy(catalogue), beam_jobs.BeamJobs()
    a = st.requests(group_of(1, 3, [21, 30]))[0]
    jobs.add(engine, [a])
    assert engine.next_jobs and jobs.pending_ids() == ["1:0"]
    jobs.abort(engine, ["1:0"])
    assert not engine.next_jobs and not jobs.pending_ids()  # its round left the engine too
    bad = BeamRequest("5:0", [1], SamplingConfig(), num_beams=2, catalogue="/no/such.json")
    (fin,) = jobs.add(engine, [bad])
    assert fin.request_id == "5:0" and fin.completion.finish_reason == "error"
    assert "/no/such.json" in fin.completion.text and not jobs.pending_ids()


def test_num_beams_must_be_the_group_size(catalogue):
    with pytest.raises(ValueError, match="samples_per_prompt"):
        strategy(catalogue, num_beams=8).requests(group_of(0, 4, [1]))
    with pytest.raises(ValueError, match="not found"):
        strategy("/no/such/catalogue.json")


class RecordingRewards:
    def __init__(self):
        self.calls = []

    def submit_many(self, prompts, completions, fields_list):
        self.calls.append([dict(f) for f in fields_list])
        futs = []
        for _ in completions:
            f: Future = Future()
            f.set_result(RewardResult(1.0, {}, None, False, None))
            futs.append(f)
        return futs


def test_rewards_asked_once_per_group_with_ranks(catalogue):
    st, rewards = strategy(catalogue), RecordingRewards()
    prompts = (Prompt(i, f"p{i}", [1, 2], {"item_title": "Heat"}) for i in itertools.count())
    sched = RolloutScheduler(
        st, prompts, rewards, num_workers=1, alpha=0, groups_per_step=1, samples_per_prompt=3
    )
    group, reqs = sched.new_group()
    assert len(reqs) == 1
    beams = [Completion([40 + i, 1], [-0.1, -0.2], f'"T{i}"\n') for i in range(3)]
    sched.on_finished([FinishedRequest(reqs[0].request_id, BeamCompletion([], [], beams=beams), 0)])
    assert len(rewards.calls) == 1 and [f["rank"] for f in rewards.calls[0]] == [0, 1, 2]
    assert sched.poll_rewards() == 1 and sched.take_batch(0)[0] is group


def test_fewer_items_than_beams_shrinks_the_group(engine, tmp_path):
    path = tmp_path / "two.jsonl"
    path.write_text('"Heat"\n{"title": "Up"}\n')
    st, worker = strategy(str(path)), make_worker(engine)
    group = group_of(0, 4, [3, 4])
    (fin,) = run_until(worker, st.requests(group), 1)
    out = st.on_finished(group, fin.request_id, fin.completion)
    assert len(out.samples) == 2 and group.size == 2


def test_rere_rewards_hand_computed():
    beams = ['"A"\n', '"B"\n', '"Heat"\n', '"C"\n']
    norm = 1 + 1 / math.log2(3) + 0.5 + 1 / math.log2(5)  # 2.5616063...
    assert math.isclose(norm, 2.5616063, abs_tol=1e-6)
    got = rere_rank(["p"] * 4, beams, ["Heat"] * 4, [0, 1, 2, 3])
    want = [-0.3903800, -0.2463024, 0.0, -0.1681275]  # -(1/log2(i+2)) / norm
    assert all(math.isclose(g, w, abs_tol=1e-6) for g, w in zip(got, want, strict=True))
    rule = [rere_rule("p", b, "Heat") for b in beams]
    assert rule == [0.0, 0.0, 1.0, 0.0]
    # ranks come from the `rank` field, not the list order
    shuffled = rere_rank(["p"] * 4, beams[::-1], ["Heat"] * 4, [3, 2, 1, 0])
    assert shuffled == got[::-1]
    # no beam hit the target: no ranking signal
    assert rere_rank(["p"] * 2, ['"A"\n', '"B"\n'], ["Heat"] * 2, [0, 1]) == [0.0, 0.0]
    # a response prefix is stripped before comparing
    assert rere_rule("p", 'Answer: "Heat"\n', "Heat", response_prefix="Answer: ") == 1.0


@pytest.mark.parametrize(
    "path, beams",
    [("recipes/rere_ml100k_cpu.yaml", 8), ("recipes/rere_amazon_gpu_cluster.yaml", 16)],
)
def test_rere_recipes_load(path, beams, catalogue):
    from rlkit.config.loader import load_recipe
    from rlkit.rewards.loader import resolve_reward

    cfg = load_recipe(path)
    r, a = cfg.rollout, cfg.algo
    assert r.strategy == "constrained_beam" and r.samples_per_prompt == beams
    assert (a.advantage, a.advantage_kw["epsilon"], a.kl_beta, a.kl_kind) == (
        "grpo",
        1e-4,
        1e-3,
        "k3",
    )
    assert cfg.trainer.lr == 1e-5 and cfg.eval.suite in ("rec", "ml-100k")
    assert [resolve_reward(f.fn).name for f in cfg.reward.fns] == ["rule", "rank"]
    st = make_strategy(r.strategy, SamplingConfig(), 0, {**r.strategy_kw, "catalogue": catalogue})
    assert len(st.requests(group_of(0, beams, [1]))) == 1


def test_hf_engine_beams_equal_its_beam_search(tmp_path, catalogue):
    """On a real (tiny) model behind the HF engine: the served beams are the engine's own
    constrained beam search, and each beam's behaviour logprobs sum to its score."""
    from rlkit.data.tiny_model import build_tiny_model
    from rlkit.engines import make_rollout_engine

    engine = make_rollout_engine("hf", str(build_tiny_model(tmp_path / "m", seed=1)))
    worker, st = make_worker(engine), strategy(catalogue)
    groups = [group_of(g, 3, engine.tokenizer(f"Seen {g}:")["input_ids"]) for g in (0, 1)]
    done = run_until(worker, [r for g in groups for r in st.requests(g)], 2)
    done.sort(key=lambda f: f.request_id)
    # one scorer across the rounds: each prompt prefilled once, every later beam one token
    assert engine._scorer.prefilled == 2 and engine._scorer.extended > 0
    trie = beam_jobs.cached_trie(catalogue, "", engine.tokenizer)
    refs = beam_search(engine, [g.prompt.token_ids for g in groups], 3, 16, allowed_sequences=trie)
    for fin, ref in zip(done, refs, strict=True):
        beams = fin.completion.beams
        assert [b.token_ids for b in beams] == [r.token_ids for r in ref]
        for b, r in zip(beams, ref):
            assert math.isclose(sum(b.logprobs), r.score, abs_tol=1e-4)


def test_stochastic_beams_through_the_worker(engine, catalogue):
    """`strategy_kw.stochastic`: the request carries the flag and a per-group seed derived from
    the run seed; the worker serves G distinct valid items with full-vocab behaviour logprobs
    and an inclusion probability per beam (the reward field `inclusion_prob`)."""
    from rlkit.methods.rere.stochastic_beams import StochasticBeamSearch
    from rlkit.runtime.controller.strategies import sample_seed

    st, worker = strategy(catalogue, stochastic=True), make_worker(engine)
    assert strategy(catalogue).requests(group_of(0, 4, [1]))[0].stochastic is False
    outs = {}
    for gid in (5, 5, 6):
        group = group_of(gid, 4, [10, 11, 12])
        (req,) = st.requests(group)
        assert req.stochastic and req.seed == sample_seed(0, gid, 0)
        (fin,) = run_until(worker, [req], 1)
        probs = fin.completion.inclusion_probs
        out = st.on_finished(group, fin.request_id, fin.completion)
        assert [j for j, _ in out.samples] == [0, 1, 2, 3]
        assert out.fields == {j: {"inclusion_prob": q} for j, q in enumerate(probs)}
        assert all(0.0 < q <= 1.0 for q in probs)
        titles = [json.loads(c.text.strip()) for _, c in out.samples]
        assert len(set(titles)) == 4 and set(titles) <= set(TITLES)
        for _, c in out.samples:  # behaviour logprobs: the engine's full-vocab values
            assert c.token_ids[-1] == 1 and len(c.logprobs) == len(c.token_ids)
            for j, t in enumerate(c.token_ids):
                want = engine.logsoftmax([10, 11, 12, *c.token_ids[:j]])[t]
                assert math.isclose(c.logprobs[j], want, abs_tol=1e-6)
        outs.setdefault(gid, []).append([c.token_ids for _, c in out.samples])
    assert outs[5][0] == outs[5][1]  # same group id and run seed: the same beams
    # the same search run directly with the request's seed gives the worker's beams
    trie = beam_jobs.cached_trie(catalogue, "", engine.tokenizer)
    seed = sample_seed(0, 6, 0)
    ref = StochasticBeamSearch([10, 11, 12], 4, 16, [1], TrieConstraint(trie), seed=seed)
    run_beam_searches(engine.next_token_logprobs, [ref])
    assert [ids for ids, _ in ref.results()] == outs[6][0]
