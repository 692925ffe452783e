"""Rollout strategies you write and copy: a strategy turns a prompt into requests for the rollout
workers and their results back into samples (docs/extending.md, "A rollout strategy").

Name yours in a recipe by path, `rollout.strategy: rollouts/my_strategy.py:MyStrategy`; a worked
example is `docs/examples/custom_strategy.py`.  The shipped ones live in the library: `sample` in
`rlkit/runtime/controller/strategies.py`, ReRe's `constrained_beam` (with its item trie and beam
search) in `rlkit/methods/rere/`.
"""
