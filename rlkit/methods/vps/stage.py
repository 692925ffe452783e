"""The `vps_probes` credit stage: answer beliefs at segment boundaries for GRPO-VPS.

For every sample whose dataset row has a gold answer (field `answer`, else `gold`), the response
is cut into segments (rlkit.methods.vps.segments; a trailing EOS token is left out and keeps plain
GRPO; a multi-turn response is cut per model turn, each environment turn one segment whose
belief change earns no credit), and for the boundaries [0, b_1, ..., b_K] the probes
x_k = q ⊕ o[:b_k] ⊕ s ⊕ a* are scored:

    p_k = exp( (1/|a*|) Σ_j log π(a*_j | x_k before a*, a*_<j) )        (docs/algorithms.md §3)

The stage puts `beliefs` ([p_0..p_K] per sample, None without gold) and `segment_ends`
([b_1..b_K]) into `batch.estimator_kw` for the `grpo_vps` estimator, and the VPS metrics
(`vps/*`) into `batch.stats`.  Knobs (`algo.credit_kw.vps_probes`): `method` ("engine", "packed",
"naive"), `suffix`, `answer_field`, `min_tokens`, `max_segments`.  λ, c and the mode are the
estimator's (`algo.advantage_kw`).

Which policy computes the beliefs:
- `engine` (default): the rollout workers, as prefill-only prompt-logprob requests of their
  request loop (`Services.probe`).  The workers hold the latest *published* weights when the
  requests run: the version that sampled the batch when `async.alpha = 0`, and up to alpha
  versions newer than a sample's own under asynchrony.  That is the policy π_θ the step is about
  to update (or one step behind it), which is the belief the credit should reflect; reading the
  sampler's older belief would need per-version engines.
- `packed` / `naive`: an HF copy of the run's *initial* model (no grad, loaded once here) — a
  fixed π_0 belief, not refreshed with the trainer's weights.  Meant for tests, benchmarks and
  single-process use; training runs should use `engine`.
"""

from __future__ import annotations

import time
from typing import Any

from rlkit.credit.base import CreditBatch, Services, register_credit_stage
from rlkit.methods.vps.advantage import vps_metrics
from rlkit.methods.vps.beliefs import answer_beliefs, belief_from_logprobs, build_probes
from rlkit.methods.vps.segments import model_segments, piece_decoder, turn_segment_boundaries

DEFAULT_SUFFIX = "\nThe final answer is \\boxed{"
METHODS = ("engine", "packed", "naive")


@register_credit_stage("vps_probes")
class VPSProbes:
    """Segments, probes and beliefs of every sample with a gold answer (module docstring)."""

    def __init__(
        self,
        cfg: Any,
        *,
        method: str = "engine",
        suffix: str = DEFAULT_SUFFIX,
        answer_field: str = "answer",
        min_tokens: int = 32,
        max_segments: int = 16,
    ):
        if method not in METHODS:
            raise ValueError(f"vps_probes method must be one of {METHODS}, got {method!r}")
        self.method, self.suffix, self.answer_field = method, suffix, answer_field
        self.min_tokens, self.max_segments = min_tokens, max_segments
        self.max_len = cfg.rollout.max_model_len
        self.model_path = cfg.model.path
        self.to_estimator = "vps_probes" in _estimator_stages(cfg)
        self._tok = self._decode = self._model = None

    # ---- lazy loading (the stage is built before the run's model folder may exist) ----
    def _tokenizer(self, services: Services):
        if self._tok is None:
            from transformers import AutoTokenizer

            path = getattr(services, "model_path", None) or self.model_path
            if path is None:
                raise ValueError("vps_probes needs the model path (Services.model_path)")
            self.model_path = path
            self._tok = AutoTokenizer.from_pretrained(path)
            self._decode = piece_decoder(self._tok)
            self._suffix_ids = self._encode(self.suffix)
        return self._tok

    def _encode(self, text: str) -> list[int]:
        return list(self._tok(text, add_special_tokens=False)["input_ids"])

    def _hf_model(self):
        if self._model is None:
            import torch
            from transformers import AutoModelForCausalLM

            self._model = AutoModelForCausalLM.from_pretrained(
                self.model_path, dtype=torch.float32, attn_implementation="sdpa"
            ).eval()
        return self._model

    # ---- the stage ----
    def gold(self, group: Any) -> str | None:
        """The row's gold answer (GSM8K solutions: the text after the last "####")."""
        fields = group.prompt.fields
        value = fields.get(self.answer_field, fields.get("gold"))
        text = "" if value is None else str(value).rsplit("####", 1)[-1].strip()
        return text or None

    def plan(self, batch: CreditBatch, services: Services) -> list[dict | None]:
        """Per sample: {prompt, response, ends, answer} or None (no gold / empty / too long)."""
        self._tokenizer(services)
        return [self._plan_one(g, s) for (g, _), s in zip(batch.flat, batch.samples)]

    def _plan_one(self, group: Any, sample: Any) -> dict | None:
        gold, resp = self.gold(group), list(sample.response_ids)
        loss_mask = sample.loss_mask
        if resp and resp[-1] == self._tok.eos_token_id:
            resp = resp[:-1]  # the EOS token keeps plain GRPO
            loss_mask = None if loss_mask is None else loss_mask[:-1]
        if gold is None or not resp:
            return None
        answer = self._encode(gold)
        n = len(sample.prompt_ids) + len(resp) + len(self._suffix_ids) + len(answer)
        if not answer or (self.method == "engine" and n > self.max_len):
            return None  # an over-long probe would be refused by the engine: plain GRPO
        knobs = {"min_tokens": self.min_tokens, "max_segments": self.max_segments}
        ends = turn_segment_boundaries(resp, loss_mask, self._decode, **knobs)
        return {
            "prompt": list(sample.prompt_ids),
            "response": resp,
            "ends": ends,
            "answer": answer,
            "model": model_segments(ends, loss_mask),
        }

    def run(self, batch: CreditBatch, services: Services) -> None:
        plans = self.plan(batch, services)
        t0 = time.perf_counter()
        if self.method == "engine":
            beliefs, n_tokens = engine_beliefs(plans, self._suffix_ids, services.probe)
        else:
            beliefs, n_tokens = self._hf_beliefs(plans)
        probe_s = time.perf_counter() - t0
        ends = [p["ends"] if p else [] for p in plans]
        if self.to_estimator:
            batch.estimator_kw.update(beliefs=beliefs, segment_ends=ends)
        keep = [p["model"] if p else [] for p in plans]
        stats = vps_metrics(beliefs, ends, batch.group_ids, keep=keep)
        stats.update({"vps/probe_tokens": float(n_tokens), "vps/probe_time_s": probe_s})
        batch.stats.update(stats)

    def _hf_beliefs(self, plans: list[dict | None]) -> tuple[list, int]:
        model, out, n_tokens = self._hf_model(), [], 0
        for p in plans:
            if p is None:
                out.append(None)
                continue
            bounds = [0, *p["ends"]]
            out.append(
                answer_beliefs(
                    model,
                    p["prompt"],
                    p["response"],
                    bounds,
                    self._suffix_ids,
                    p["answer"],
                    method=self.method,
                )
            )
            n_tokens += probe_token_count(p, len(self._suffix_ids), self.method)
        return out, n_tokens


def engine_beliefs(plans: list[dict | None], suffix_ids: list[int], probe: Any) -> tuple[list, int]:
    """Beliefs through `probe(sequences, starts)` (prefill-only prompt logprobs of the answer
    tokens, which start at |x_k| − |a*|); identical probes (every sample's p_0 in a group, equal
    responses) are sent once.  Returns (beliefs, tokens sent)."""
    unique: dict[tuple[int, ...], int] = {}
    starts: list[int] = []
    keys: list[list[int] | None] = []
    for p in plans:
        if p is None:
            keys.append(None)
            continue
        row = []
        for x in build_probes(p["prompt"], p["response"], [0, *p["ends"]], suffix_ids, p["answer"]):
            if tuple(x) not in unique:
                unique[tuple(x)] = len(unique)
                starts.append(len(x) - len(p["answer"]))
            row.append(unique[tuple(x)])
        keys.append(row)
    seqs = [list(x) for x in unique]
    lps = probe(seqs, starts) if seqs else []
    values = [belief_from_logprobs(lp) for lp in lps]
    beliefs = [None if row is None else [values[j] for j in row] for row in keys]
    return beliefs, sum(len(x) for x in seqs)


def probe_token_count(plan: dict, n_suffix: int, method: str) -> int:
    """Tokens one sample's probes put through the model: naive re-reads every prefix; packed
    reads q ⊕ o once plus K+1 tails."""
    tail = n_suffix + len(plan["answer"])
    bounds = [0, *plan["ends"]]
    if method == "naive":
        return sum(len(plan["prompt"]) + b + tail for b in bounds)
    return len(plan["prompt"]) + len(plan["response"]) + len(bounds) * tail


def _estimator_stages(cfg: Any) -> tuple[str, ...]:
    from rlkit.algos.registry import ADVANTAGES

    try:
        return tuple(getattr(ADVANTAGES[cfg.algo.advantage], "credit_stages", ()))
    except (KeyError, ValueError):
        return ()
