"""ReRe rewards (hand-computed), title exact match."""

from __future__ import annotations

import pytest

from rlkit.methods.rere.rewards import (
    exact_match,
    rere_rank_penalties,
    rere_rank_rewards,
    rere_reward,
)

# Hand values: 1/log2(2)=1, 1/log2(3)=0.6309298, 1/log2(4)=0.5, 1/log2(5)=0.4306766.
NORM4 = 2.5616063  # 1 + 0.6309298 + 0.5 + 0.4306766
NORM3 = 2.1309298  # 1 + 0.6309298 + 0.5


def test_exact_match_strips_rere_format():
    assert exact_match("p", '"The Matrix (1999)"\n', item_title="The Matrix (1999)") == 1.0
    assert exact_match("p", '  "The Matrix (1999)" \n\n', item_title='"The Matrix (1999)"') == 1.0
    assert exact_match("p", '"The Matrix"\n', item_title="The Matrix (1999)") == 0.0


def test_rere_target_at_rank_1():
    beams = ['"A"\n', '"T"\n', '"B"\n', '"C"\n']
    assert rere_rank_penalties(beams, "T") == pytest.approx(
        [-1 / NORM4, 0.0, -0.5 / NORM4, -0.4306766 / NORM4], abs=1e-6
    )
    assert rere_rank_rewards(beams, "T") == pytest.approx(
        [-0.3903800, 1.0, -0.1951900, -0.1681275], abs=1e-6
    )


def test_rere_hit_at_rank_0():
    assert rere_rank_rewards(["T", "A", "B"], "T") == pytest.approx(
        [1.0, -0.6309298 / NORM3, -0.5 / NORM3], abs=1e-6
    )


def test_rere_duplicate_target_titles_both_count_as_hits():
    got = rere_rank_rewards(['"T"\n', '"A"\n', "T", '"B"'], '"T"')
    assert got == pytest.approx([1.0, -0.6309298 / NORM4, 1.0, -0.4306766 / NORM4], abs=1e-6)


def test_rere_no_hit_gives_no_ranking_penalty():
    assert rere_rank_rewards(["A", "B", "C"], "T") == [0.0, 0.0, 0.0]


def test_rere_batch_reward_groups_by_prompt_in_order():
    out = rere_reward(
        ["u1", "u2", "u1", "u2"], ["T", "X", "A", "Y"], item_title=["T", "Z", "T", "Z"]
    )
    assert [o["score"] for o in out] == pytest.approx([1.0, 0.0, -0.6309298 / 1.6309298, 0.0])
    assert out[0]["acc"] == 1.0 and out[2]["rank"] < 0
