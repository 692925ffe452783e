"""A chat tokenizer, a scripted fake engine and a driver loop for the agent tests (no Ray, no
model): the rollout scheduler and the multi_turn strategy run as in the controller."""

from __future__ import annotations

import time
from concurrent.futures import Future

from rlkit.agents.multi_turn import MultiTurnStrategy
from rlkit.agents.turns import TurnEncoder
from rlkit.engines.rollout_protocol import Completion, FinishedRequest, SamplingConfig
from rlkit.rewards.types import RewardResult
from rlkit.runtime.controller.groups import Prompt
from rlkit.runtime.controller.rollout_scheduler import RolloutScheduler

CHATML = (
    "{% if tools %}<|im_start|>system\nTools: {{ tools | tojson }}<|im_end|>\n{% endif %}"
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def chat_tokenizer():
    from rlkit.data.tiny_model import build_char_tokenizer

    tok = build_char_tokenizer()
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tok.chat_template = CHATML
    return tok


class RecordingRewards:
    """Resolves at once with the sample's `env_reward` field (0 without one); keeps the fields."""

    def __init__(self):
        self.fields: list[dict] = []

    def submit_many(self, prompts, completions, fields_list):
        futs = []
        for f in fields_list:
            self.fields.append(f)
            fut: Future = Future()
            fut.set_result(RewardResult(float(f.get("env_reward", 0.0)), {}, None, False, None))
            futs.append(fut)
        return futs


class ScriptedEngine:
    """Answers each request at once with `script(request, turn)` (text) encoded plus
    `<|im_end|>`, every logprob -0.5, at `version`; records every request it got."""

    def __init__(self, tok, script):
        self.tok, self.script, self.version = tok, script, 0
        self.end = tok.convert_tokens_to_ids("<|im_end|>")
        self.seen: list = []
        self.queue: list = []

    def add(self, reqs):
        self.seen += reqs
        self.queue += reqs

    def finish_all(self) -> list[FinishedRequest]:
        out = []
        for r in self.queue:
            turn = int(r.request_id.split(":")[2])
            text = self.script(r, turn)
            ids = self.tok(text, add_special_tokens=False)["input_ids"][: r.sampling.max_tokens - 1]
            ids = ids + [self.end]
            reason = "stop"
            c = Completion(ids, [-0.5] * len(ids), self.tok.decode(ids), reason)
            out.append(FinishedRequest(r.request_id, c, self.version))
        self.queue = []
        return out


def make_scheduler(env_cls, env_kw=None, *, size=2, groups=1, alpha=0, max_tokens=200,
                   tok=None, rewards=None, **knobs):  # fmt: skip
    tok = tok or chat_tokenizer()
    strategy = MultiTurnStrategy(SamplingConfig(max_tokens=max_tokens), seed=0, **knobs)
    strategy.bind(env_cls, env_kw or {}, TurnEncoder(tok, True), max_model_len=4096)

    def prompts():
        i = 0
        while True:
            text = f"What is {i}*7?"
            ids = tok.apply_chat_template(
                [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=True,
                return_dict=False,
            )  # fmt: skip
            yield Prompt(i, text, list(ids), {"answer": str(i * 7)})
            i += 1

    sched = RolloutScheduler(
        strategy, prompts(), rewards or RecordingRewards(), num_workers=1, alpha=alpha,
        groups_per_step=groups, samples_per_prompt=size,
    )  # fmt: skip
    return sched, strategy, tok


def drive(sched, engine, until, timeout_s=10.0) -> None:
    """The controller loop in miniature: finished requests and env results in, follow-ups out,
    rewards polled, until `until()` or the timeout."""
    deadline = time.monotonic() + timeout_s
    while not until():
        if time.monotonic() > deadline:
            raise TimeoutError("the trajectories did not end")
        follow = sched.on_finished(engine.finish_all())
        for reqs in follow.values():
            engine.add(reqs)
        if not engine.queue:
            time.sleep(0.01)  # environment calls in flight
        sched.poll_rewards()
