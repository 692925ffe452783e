"""Rollout-side helpers shared by the RL loops and evaluation (e.g. the ReRe item trie)."""
