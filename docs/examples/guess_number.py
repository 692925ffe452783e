"""A multi-turn environment in one file (docs/agents.md): guess a number, told higher or lower.

Name it in a recipe:

    rollout:
      strategy: multi_turn
      env: docs/examples/guess_number.py:GuessNumber
      env_kw: {low: 1, high: 50}
    reward:
      fns: [{fn: env_reward}]     # train on the rewards `step` returns

Each row's `answer` field is the secret (a row without one gets a seeded random number).
"""

from __future__ import annotations

import random
import re


class GuessNumber:
    role = "user"  # the chat role of the environment's turns

    def __init__(self, low: int = 1, high: int = 100, seed: int = 0):
        self.low, self.high, self.rng = low, high, random.Random(seed)
        self.secret = low

    def reset(self, row: dict) -> str | None:
        """Called once per trajectory with the dataset row; the text opens the conversation
        after the prompt (None: the prompt alone does)."""
        answer = row.get("answer")
        self.secret = int(answer) if answer is not None else self.rng.randint(self.low, self.high)
        return None

    def step(self, action: str) -> tuple[str | None, float, bool, dict]:
        """The model's turn in, (observation, reward, done, info) out."""
        numbers = re.findall(r"-?\d+", action)
        if not numbers:
            return f"Say a number between {self.low} and {self.high}.", 0.0, False, {}
        guess = int(numbers[-1])
        if guess == self.secret:
            return None, 1.0, True, {"guess": guess}
        hint = "higher" if guess < self.secret else "lower"
        return f"{guess} is wrong: go {hint}.", 0.0, False, {"guess": guess}
