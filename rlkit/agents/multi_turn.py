"""The `multi_turn` rollout strategy: agent trajectories, token-in/token-out.

Per sample of a group, a trajectory: `reset(row)` in the environment pool, then model turn,
environment step, model turn, ... until the environment says done, gives no observation, or a
limit ends it (`max_turns` model turns, `max_total_tokens` response tokens, `wall_time_s`).
Each model turn is one engine request ("<group>:<sample>:<turn>", kind "sample") whose prompt is
the prompt plus every token so far, so the trajectory is one token sequence that is never
tokenised again (rlkit.agents.turns); each environment step runs off the controller thread
(rlkit.agents.env_runner) and comes back through `poll()`, which the rollout scheduler calls.

The trajectory ends as ONE sample: `token_ids` everything after the prompt, `loss_mask` 1 for
model tokens and 0 for environment tokens, `turns`; its reward fields carry `env_reward` (the sum
of the step rewards; the built-in reward `env_reward` returns it) and `turns`.  The scheduler
stamps it with the version its first turn started at; aborting the group (staleness) drops its
trajectories.  An environment that raises, times out or returns garbage ends its trajectory
(`finish_reason` "error"; one whose `reset` failed drops the group, as a refused request does),
counted in `env/failures` / `env/timeouts`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from rlkit.agents.env import EnvGarbage, check_observation, check_step, load_env
from rlkit.agents.env_runner import CallDone, EnvRunner
from rlkit.agents.metrics import AgentMetrics
from rlkit.agents.trajectory import Limits, Trajectory
from rlkit.agents.turns import TurnEncoder
from rlkit.engines.rollout_protocol import Completion, SamplingConfig
from rlkit.runtime.actors.request_kinds import SampleRequest
from rlkit.runtime.controller.strategies import (
    Outcome,
    StrategyContext,
    parse_request_id,
    register_rollout_strategy,
    sample_seed,
)

IDLE_WAIT_S = 0.02


MAX_AUTO_ENV_WORKERS = 128


def auto_env_workers(context: StrategyContext | None) -> int:
    """Pool threads for blocking environments: one per trajectory that can be live at once,
    prompts_per_step x samples_per_prompt x (alpha + 1), between 8 and 128.  A smaller pool
    queues the environment steps of an async run behind each other (benchmarks/agentic_async.py:
    8 threads gave 1.72x where 128 gave 3.58x)."""
    cfg = getattr(context, "cfg", None)
    if cfg is None:
        return 8
    live = cfg.rollout.prompts_per_step * cfg.rollout.samples_per_prompt * (cfg.async_.alpha + 1)
    return max(8, min(MAX_AUTO_ENV_WORKERS, live))


@register_rollout_strategy("multi_turn")
class MultiTurnStrategy:
    """Knobs (`rollout.strategy_kw`): `max_turns`, `max_total_tokens` (0: the context window),
    `wall_time_s` (0: none), `env_workers` (pool threads; 0: one per trajectory that can be
    live, `auto_env_workers`), `env_timeout_s` (per reset/step).  The environment is
    `rollout.env` built with `rollout.env_kw`."""

    reward_scope = "sample"
    needs_context = True

    def __init__(
        self,
        sampling: SamplingConfig,
        seed: int,
        *,
        max_turns: int = 4,
        max_total_tokens: int = 0,
        wall_time_s: float = 0.0,
        env_workers: int = 0,
        env_timeout_s: float = 30.0,
        context: StrategyContext | None = None,
    ):
        if max_turns < 1 or max_total_tokens < 0 or wall_time_s < 0:
            raise ValueError("max_turns must be >= 1, max_total_tokens and wall_time_s >= 0")
        self.sampling, self.seed = sampling, seed
        self.limits = Limits(max_turns, max_total_tokens, wall_time_s)
        self.runner = EnvRunner(env_workers or auto_env_workers(context), env_timeout_s)
        self.metrics = AgentMetrics()
        self.trajs: dict[tuple[int, int], Trajectory] = {}
        self.started: set[int] = set()  # groups whose trajectories were started
        self.env_cls: Any = None
        if context is not None and context.cfg is not None:
            self.bind_recipe(context)

    def bind_recipe(self, context: StrategyContext) -> None:
        """The recipe's environment and the model's tokenizer (`rollout.env`, `env_kw`)."""
        from transformers import AutoTokenizer

        cfg = context.cfg
        if not cfg.rollout.env:
            raise ValueError("the multi_turn strategy needs rollout.env (an environment)")
        tok = AutoTokenizer.from_pretrained(context.model_path)
        encoder = TurnEncoder(tok, cfg.model.chat_template)
        self.bind(load_env(cfg.rollout.env), cfg.rollout.env_kw, encoder, cfg.rollout.max_model_len)

    def bind(self, env_cls: Any, env_kw: dict, encoder: TurnEncoder, max_model_len: int) -> None:
        self.env_cls, self.env_kw = env_cls, dict(env_kw)
        self.encoder, self.max_model_len = encoder, max_model_len

    # ---- the strategy protocol ----
    def requests(self, group: Any) -> list[SampleRequest]:
        """A new group: its trajectories start (resets go to the pool; first turns come from
        `poll`).  A group already running (its worker died): its model turns in flight, again."""
        gid = group.group_id
        if gid in self.started:
            live = [t for (g, _), t in self.trajs.items() if g == gid]
            return [t.pending for t in live if t.pending is not None]
        self.started.add(gid)  # group ids are never reused: a few bytes per group
        for j in range(group.size):
            env = self.env_cls(**self.env_kw)
            if j == 0:
                tools = self.encoder.prompt_with_tools(
                    group.prompt.text, getattr(env, "tools", None)
                )
                if tools is not None:  # the template declares the tools in the prompt
                    group.prompt = dataclasses.replace(group.prompt, token_ids=tools)
            traj = Trajectory(gid, j, env, list(group.prompt.token_ids))
            self.trajs[(gid, j)] = traj
            row = {**group.prompt.fields, "prompt": group.prompt.text}
            self.runner.submit(("reset", traj), env.reset, row)
        return []

    def on_finished(self, group: Any, request_id: str, completion: Completion) -> Outcome:
        """A model turn finished: the environment steps on it (in the pool)."""
        traj = self.trajs.get(parse_request_id(request_id)[:2])
        if traj is None or traj.pending is None or traj.pending.request_id != request_id:
            return Outcome()  # a trajectory that already ended or restarted
        traj.pending = None
        traj.add_model_turn(completion)
        self.runner.submit(("step", traj), traj.env.step, completion.text)
        return Outcome()

    def poll(self) -> list[tuple[int, Outcome]]:
        """Environment calls that came back: the next model turns and the ended trajectories,
        per group id."""
        out: list[tuple[int, Outcome]] = []
        if not any(t.pending for t in self.trajs.values()):
            # no model turn at any engine: the workers answer at once, and the controller would
            # spin on them; a short wait for the environment instead
            self.runner.wait(IDLE_WAIT_S)
        for done in self.runner.poll():
            what, traj = done.key
            if self.trajs.get((traj.group_id, traj.index)) is not traj:
                continue  # its group was aborted or restarted meanwhile
            if what == "step":
                self.metrics.latencies.append(done.latency_s)
            out.append((traj.group_id, self._advance(traj, what, done)))
        return out

    def drop(self, group_id: int) -> None:
        """The scheduler ended the group (aborted, failed): forget its trajectories."""
        for key in [k for k in self.trajs if k[0] == group_id]:
            del self.trajs[key]

    def take_metrics(self) -> dict[str, float]:
        return self.metrics.take()

    # ---- one trajectory ----
    def _advance(self, traj: Trajectory, what: str, done: CallDone) -> Outcome:
        try:
            if done.timed_out:
                raise TimeoutError(f"environment {what} took over {self.runner.timeout_s}s")
            if done.error is not None:
                raise done.error
            if what == "reset":
                obs, stop = check_observation(done.value), False
            else:
                res = check_step(done.value)
                traj.env_reward += res.reward
                self.metrics.tool_call_errors += int(res.info.get("tool_call_errors", 0) or 0)
                obs = res.observation
                stop = res.done or obs is None
        except Exception as exc:  # noqa: BLE001 (an environment's failure ends its trajectory)
            return self._fail(traj, what, exc, timed_out=done.timed_out)
        # the limits end a trajectory after a model turn: every sample has at least one
        limited = traj.turns >= self.limits.max_turns or traj.out_of_time(self.limits)
        if stop or (traj.turns and limited):
            return self._end(traj, "stop" if stop else "length")
        if obs is not None:
            last = traj.token_ids[-1] if traj.token_ids else None
            ids = self.encoder.env_turn(obs, getattr(traj.env, "role", "user"), last)
            if len(ids) >= traj.room(self.limits, self.max_model_len):
                if not traj.turns:
                    return self._fail(traj, what, ValueError("observation leaves no room"), False)
                return self._end(traj, "length")  # no room for the observation and a reply
            traj.add_env_turn(ids)
        return Outcome(follow_up=[self._next_turn(traj)])

    def _next_turn(self, traj: Trajectory) -> SampleRequest:
        sampling = dataclasses.replace(self.sampling, n=1)
        sampling.max_tokens = min(sampling.max_tokens, traj.room(self.limits, self.max_model_len))
        sampling.seed = sample_seed(self.seed, traj.group_id, traj.index) + traj.turns
        rid = f"{traj.group_id}:{traj.index}:{traj.turns}"
        traj.pending = SampleRequest(rid, traj.prompt_ids + traj.token_ids, sampling)
        return traj.pending

    def _end(self, traj: Trajectory, finish_reason: str) -> Outcome:
        del self.trajs[(traj.group_id, traj.index)]
        model = traj.model_tokens
        self.metrics.ended(traj.turns, model, len(traj.token_ids) - model)
        text = self.encoder.tok.decode(traj.token_ids)
        fields = {"env_reward": traj.env_reward, "turns": traj.turns}
        return Outcome(
            samples=[(traj.index, traj.completion(text, finish_reason))],
            fields={traj.index: fields},
        )

    def _fail(self, traj: Trajectory, what: str, exc: BaseException, timed_out: bool) -> Outcome:
        self.metrics.timeouts += timed_out
        self.metrics.failures += not timed_out
        kind = "garbage" if isinstance(exc, EnvGarbage) else type(exc).__name__
        if not traj.turns:  # nothing to train on: the group goes, as a refused request
            self.drop(traj.group_id)
            return Outcome(error=f"environment {what} failed ({kind}: {exc})"[:300])
        return self._end(traj, "error")
