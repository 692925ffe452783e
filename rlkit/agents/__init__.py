"""Agentic rollouts: multi-turn environments, tool calls and the `multi_turn` rollout strategy.

    env.py          the environment API users write (`reset`, `step`), its registry and loader
    env_runner.py   environment calls off the controller thread: a bounded pool, per-step timeouts
    tools.py        tools as Python functions with JSON schemas; Hermes/Qwen `<tool_call>` parsing
    turns.py        token-in/token-out: the environment's turn rendered by the chat template
    trajectory.py   one trajectory's token stream, loss mask and limits
    multi_turn.py   the strategy: model turns are engine requests, env turns run in the pool
    metrics.py      turns, env latency, failures, tool-call parse failures, token counts
    envs/           shipped environments (`calculator`, `python_tool`)

Guide: docs/agents.md.  Layer: with the runtime (the strategy plugs into its controller).
"""
