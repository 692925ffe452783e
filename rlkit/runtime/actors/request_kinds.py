"""Request kinds: what a rollout worker can run, looked up by name like every other plug-in.

A request carries its `kind`; the worker (rlkit.runtime.actors.rollout_worker) hands each kind's new
requests to that kind's `serve(engine, requests)`:

- streaming kinds (`exclusive=False`) start engine requests (`engine.add`) that the worker's
  loop steps alongside everything else; `serve` returns only the requests it refused, as
  finished ones.  Built in: `sample` (one sampled response) and `score` (prefill-only
  log-probs of given tokens: answer probes, reference scoring).
- stepped kinds (`register_stepped_kind`) run a multi-step job (a search that scores prefixes
  step by step) as rounds of engine requests of their own, next-token jobs
  (`SamplingConfig.next_token_ids`): the worker keeps ONE `SteppedJobs` per kind, jobs from every
  `run` call join it, and after each engine step it hands the kind the requests of its own that
  finished (`route`), so the kind advances its jobs and adds their next round.  The rounds of
  all live jobs share engine steps with each other and with sampling and scoring requests:
  nothing holds the worker.
- exclusive kinds need the engine to themselves (a plug-in that calls
  `engine.next_token_logprobs` in a loop); the worker serves them once the in-flight requests
  have finished (their outputs are kept) and `serve` returns every request it finished.

A method registers its own (docs/architecture.md, "Request kinds", lists the shipped ones).
Register with `@register_request_kind(name, exclusive=...)` or `@register_stepped_kind(name)`
on a `SteppedJobs` class; the module goes in
`rlkit.plugins.BUILTIN_MODULES` or a method package (built-ins), or is imported by the user code
a recipe names (its strategy).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from rlkit.algos.registry import Registry
from rlkit.engines.rollout_protocol import Completion, FinishedRequest, SamplingConfig

ServeFn = Callable[[Any, list], list[FinishedRequest]]


class SteppedJobs(Protocol):
    """A stepped kind's live jobs on one worker: all calls run under the worker's engine lock."""

    def add(self, engine: Any, requests: list) -> list[FinishedRequest]:
        """Start jobs (their first round of engine requests); the refused come back finished."""
        ...

    def route(self, engine: Any, finished: list[FinishedRequest]) -> list[FinishedRequest]:
        """Take this kind's own engine requests out of `finished` (one engine step's), advance
        their jobs, add the next rounds; return the rest plus the jobs that completed."""
        ...

    def abort(self, engine: Any, request_ids: list[str]) -> None:
        """Drop these jobs (unknown ids are ignored) and their engine requests."""
        ...

    def pending_ids(self) -> list[str]:
        """Ids of the jobs still running."""
        ...


@dataclass(frozen=True)
class RequestKind:
    """How the worker runs one kind: `serve(engine, requests) -> finished requests`, or for a
    stepped kind `jobs()`, a new `SteppedJobs` (the worker makes one, on first use)."""

    name: str
    serve: ServeFn | None
    exclusive: bool
    jobs: Callable[[], SteppedJobs] | None = None


REQUEST_KINDS: Registry = Registry("request kind")


def register_request_kind(name: str, *, exclusive: bool, override: bool = False):
    """Decorator registering `serve(engine, requests) -> list[FinishedRequest]` as kind `name`."""

    def deco(serve: ServeFn) -> ServeFn:
        REQUEST_KINDS.register(name, override=override)(RequestKind(name, serve, exclusive))
        return serve

    return deco


def register_stepped_kind(name: str, *, override: bool = False):
    """Class decorator registering a `SteppedJobs` class as the stepped kind `name`."""

    def deco(cls: type) -> type:
        REQUEST_KINDS.register(name, override=override)(RequestKind(name, None, False, cls))
        return cls

    return deco


@dataclass
class SampleRequest:
    """One sample to generate: `request_id` is "<group_id>:<index>" for rollouts."""

    request_id: str
    prompt_ids: list[int]
    sampling: SamplingConfig
    kind: str = "sample"


@dataclass
class ScoreRequest:
    """Log-probs of `token_ids[start:]`, each given its prefix (one prefill, no sampling)."""

    request_id: str
    token_ids: list[int]
    start: int
    kind: str = "score"


def refused(request_id: str, exc: Exception, version: int) -> FinishedRequest:
    """A request the engine would not take, reported as finished with `finish_reason` "error"
    (the caller's reward/accounting sees it; the worker lives on)."""
    text = f"{type(exc).__name__}: {exc}"[:300]
    return FinishedRequest(
        request_id, Completion([], [], text=text, finish_reason="error"), version
    )


@register_request_kind("sample", exclusive=False)
def add_samples(engine: Any, requests: list[SampleRequest]) -> list[FinishedRequest]:
    """Start each request on the engine; the refused ones come back as finished."""
    out = []
    for req in requests:
        try:
            engine.add(req.request_id, req.prompt_ids, req.sampling)
        except Exception as exc:
            out.append(refused(req.request_id, exc, engine.version))
    return out


@register_request_kind("score", exclusive=False)
def add_scores(engine: Any, requests: list[ScoreRequest]) -> list[FinishedRequest]:
    """Start each scoring job as a one-token request that reports its prompt log-probs."""
    out = []
    for req in requests:
        try:
            cfg = SamplingConfig(max_tokens=1, prompt_logprobs_from=req.start)
            engine.add(req.request_id, list(req.token_ids), cfg)
        except Exception as exc:
            out.append(refused(req.request_id, exc, engine.version))
    return out
