"""The models behind `reward.models`: a sequence classifier or a causal-LM judge, batch in,
one score per item out (None = the judge's text did not parse).  Runs inside the reward-model
actor (rlkit.runtime.actors.reward_model); no Ray here.

* classifier: ``AutoModelForSequenceClassification`` (``num_labels`` 1, the scalar head of
  Skywork-/ArmoRM-style reward models); score = the logit of the rendered text.
* judge, ``verdict: logprob``: ``sigmoid(lp(yes) - lp(no))`` of the two verdict tokens after the
  rendered prompt, read from the engine's ``next_token_logprobs`` (full-vocabulary logprobs:
  vLLM's, or transformers' log-softmax with ``engine: hf``).
* judge, ``verdict: regex``: greedy generation of ``max_tokens`` tokens, parsed by
  :func:`rlkit.rewards.models.verdict.parse_verdict`.
"""

from __future__ import annotations

import re
from typing import Any, Protocol

from rlkit.config.schema import RewardModelConfig
from rlkit.rewards.models.verdict import (
    DEFAULT_CLASSIFIER_TEMPLATE,
    DEFAULT_JUDGE_TEMPLATE,
    parse_verdict,
    render,
    verdict_probability,
)


class Scorer(Protocol):
    def score(self, items: list[dict[str, Any]]) -> list[float | None]: ...


def make_scorer(cfg: RewardModelConfig, model_path: str, seed: int = 0) -> Scorer:
    """The scorer of one `reward.models` entry on the HF folder `model_path`."""
    if cfg.kind == "classifier":
        return ClassifierScorer(cfg, model_path)
    return JudgeScorer(cfg, model_path, seed=seed)


def _chunks(n: int, size: int) -> list[range]:
    return [range(i, min(n, i + size)) for i in range(0, n, size)]


class ClassifierScorer:
    """A sequence-classification reward model: the logit of label 0 for each rendered text."""

    def __init__(self, cfg: RewardModelConfig, model_path: str):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.cfg = cfg
        self.template = cfg.template or DEFAULT_CLASSIFIER_TEMPLATE
        self.tok = AutoTokenizer.from_pretrained(model_path)
        self.model = AutoModelForSequenceClassification.from_pretrained(
            model_path, dtype=getattr(torch, cfg.dtype)
        ).eval()
        if self.tok.pad_token_id is None:
            self.tok.pad_token = self.tok.eos_token

    def text(self, item: dict[str, Any]) -> str:
        text = render(self.template, item)
        if self.cfg.chat_template:
            msgs = [
                {"role": "user", "content": str(item.get("prompt") or "")},
                {"role": "assistant", "content": str(item["response"])},
            ]
            text = self.tok.apply_chat_template(msgs, tokenize=False)
        return text

    def score(self, items: list[dict[str, Any]]) -> list[float | None]:
        import torch

        texts = [self.text(it) for it in items]
        out: list[float | None] = []
        for part in _chunks(len(texts), self.cfg.max_batch):
            enc = self.tok(
                [texts[i] for i in part],
                return_tensors="pt",
                padding=True,
                truncation=True,
                max_length=self.cfg.max_model_len,
                add_special_tokens=False,
            )
            with torch.no_grad():
                logits = self.model(**enc).logits
            out += [float(v) for v in logits[:, 0].float()]
        return out


class JudgeScorer:
    """A causal LM judging rendered prompts on a rollout engine (vLLM, or transformers)."""

    def __init__(self, cfg: RewardModelConfig, model_path: str, seed: int = 0):
        from rlkit.engines import make_rollout_engine

        self.cfg = cfg
        self.template = cfg.template or DEFAULT_JUDGE_TEMPLATE
        kw: dict[str, Any] = {"dtype": cfg.dtype, "seed": seed}
        if cfg.engine == "vllm":
            kw |= {"max_model_len": cfg.max_model_len, "kv_cache_gib": 1.0}
        self.engine = make_rollout_engine(cfg.engine, model_path, **kw)
        self.tok = self.engine.tokenizer
        self.verdict_ids = tuple(
            verdict_token_id(self.tok, t, cfg.name) for t in cfg.verdict_tokens
        )
        self.pattern = re.compile(cfg.regex)

    def prompt_ids(self, item: dict[str, Any]) -> list[int]:
        """Token ids of the rendered judge prompt; the tail is kept when it is too long (the
        question to the judge comes last)."""
        text = render(self.template, item)
        if self.cfg.chat_template:
            ids = self.tok.apply_chat_template(
                [{"role": "user", "content": text}],
                add_generation_prompt=True,
                tokenize=True,
                return_dict=False,
            )
        else:
            ids = self.tok(text, add_special_tokens=False)["input_ids"]
        room = self.cfg.max_model_len - (self.cfg.max_tokens if self.cfg.verdict == "regex" else 1)
        return [int(i) for i in ids][-room:]

    def score(self, items: list[dict[str, Any]]) -> list[float | None]:
        prefixes = [self.prompt_ids(it) for it in items]
        if self.cfg.verdict == "logprob":
            yes, no = self.verdict_ids
            lps = self.engine.next_token_logprobs(prefixes, [[yes, no]] * len(prefixes))
            return [verdict_probability(lp[yes], lp[no]) for lp in lps]
        from rlkit.engines.rollout_protocol import SamplingConfig

        sampling = SamplingConfig(temperature=0.0, max_tokens=self.cfg.max_tokens, seed=0)
        if self.tok.eos_token_id is not None:
            sampling.stop_token_ids = [int(self.tok.eos_token_id)]
        outs = self.engine.generate(prefixes, sampling)
        tokens = (self.cfg.verdict_tokens[0], self.cfg.verdict_tokens[1])
        return [parse_verdict(c[0].text or self._decode(c[0]), self.pattern, tokens) for c in outs]

    def _decode(self, completion: Any) -> str:
        return self.tok.decode(completion.token_ids, skip_special_tokens=True)


def verdict_token_id(tokenizer: Any, token: str, name: str) -> int:
    """The single id of a verdict token; a token that is several ids is a recipe error."""
    ids = tokenizer(token, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise ValueError(
            f"reward.models {name!r}: verdict token {token!r} is {len(ids)} tokens of this "
            f"tokenizer ({ids}); verdict_tokens must be single tokens"
        )
    return int(ids[0])
