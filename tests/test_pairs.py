"""Extraction of (prompt, chosen, rejected) from UltraFeedback-shaped rows, and the filters."""

from __future__ import annotations

import pytest
from conftest import ultrafeedback_row

from lit_dpo.data.pairs import extract_pair, filter_reason
from lit_dpo.errors import DataError, RowError


def test_single_turn_row():
    pair = extract_pair(ultrafeedback_row("Q?", "good", "bad"), "train row 0")
    assert pair.prompt == [{"role": "user", "content": "Q?"}]
    assert (pair.chosen, pair.rejected) == ("good", "bad")


def test_system_and_earlier_turns_are_kept_in_the_prompt():
    history = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "2+2?"},
    ]
    row = {
        "chosen": [*history, {"role": "assistant", "content": "4"}],
        "rejected": [*history, {"role": "assistant", "content": "5"}],
    }
    pair = extract_pair(row, "train row 3")
    assert pair.prompt == history
    assert (pair.chosen, pair.rejected) == ("4", "5")


def test_plain_string_rows_become_one_user_turn():
    pair = extract_pair({"prompt": "Q?", "chosen": "a", "rejected": "b"}, "row 0", "plain")
    assert pair.prompt == [{"role": "user", "content": "Q?"}]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"rejected": []}, "missing 'chosen'"),
        ({"chosen": [], "rejected": []}, "non-empty list"),
        (
            {
                "chosen": [{"role": "user", "content": "q"}, {"role": "robot", "content": "a"}],
                "rejected": [
                    {"role": "user", "content": "q"},
                    {"role": "assistant", "content": "b"},
                ],
            },
            "without a role in",
        ),
        (
            {
                "chosen": [{"role": "user", "content": "q"}, {"role": "assistant", "content": 3}],
                "rejected": [
                    {"role": "user", "content": "q"},
                    {"role": "assistant", "content": "b"},
                ],
            },
            "content is not a string",
        ),
        (
            {
                "chosen": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
                "rejected": [
                    {"role": "user", "content": "other"},
                    {"role": "assistant", "content": "b"},
                ],
            },
            "share every turn",
        ),
        (
            {
                "chosen": [{"role": "assistant", "content": "q"}, {"role": "user", "content": "a"}],
                "rejected": [
                    {"role": "assistant", "content": "q"},
                    {"role": "user", "content": "b"},
                ],
            },
            "must be the assistant's reply",
        ),
    ],
)
def test_malformed_rows_name_the_row_and_the_problem(row, message):
    with pytest.raises(DataError, match=message) as error:
        extract_pair(row, "train_prefs row 17")
    assert "train_prefs row 17" in str(error.value)


def test_ties_are_filtered_not_errors():
    row = ultrafeedback_row("Q?", "good", "also good", scores=(7.0, 7.0))
    assert filter_reason(row, extract_pair(row, "row")) == "tie"
    row = ultrafeedback_row("Q?", "good", "bad", scores=(8.0, 3.0))
    assert filter_reason(row, extract_pair(row, "row")) is None


def _turns(*roles: str) -> list[dict[str, str]]:
    return [{"role": role, "content": f"{role} {i}"} for i, role in enumerate(roles)]


@pytest.mark.parametrize(
    ("chosen", "rejected", "scores", "reason"),
    [
        ("  ", "bad", (8.0, 3.0), "empty reply"),
        ("same", "same ", (8.0, 3.0), "replies are identical"),
        ("good", "bad", (float("nan"), 3.0), "'score_chosen' is not a finite number"),
        ("good", "bad", (8.0, float("inf")), "'score_rejected' is not a finite number"),
        ("good", "bad", ("high", 3.0), "'score_chosen' must be a number"),
    ],
)
def test_bad_replies_and_scores_are_row_errors_with_a_countable_reason(
    chosen, rejected, scores, reason
):
    row = ultrafeedback_row("Q?", chosen, rejected, scores=scores)
    with pytest.raises(RowError, match=reason) as error:
        extract_pair(row, "train.jsonl row 4")
    assert str(error.value).startswith("train.jsonl row 4: ")
    assert "row 4" not in error.value.reason


@pytest.mark.parametrize(
    ("history", "problem"),
    [
        (("user", "user"), "out of order"),
        (("assistant", "user", "user"), "out of order"),
        (("system", "user", "system", "user"), "system message may only come first"),
        (("user", "assistant", "assistant", "user"), "out of order"),
    ],
)
def test_turns_out_of_order_are_row_errors(history, problem):
    row = {
        "chosen": [*_turns(*history), {"role": "assistant", "content": "a"}],
        "rejected": [*_turns(*history), {"role": "assistant", "content": "b"}],
    }
    with pytest.raises(RowError, match=problem):
        extract_pair(row, "row 0")
    ok = {
        "chosen": [
            *_turns("system", "user", "assistant", "user"),
            {"role": "assistant", "content": "a"},
        ],
        "rejected": [
            *_turns("system", "user", "assistant", "user"),
            {"role": "assistant", "content": "b"},
        ],
    }
    assert extract_pair(ok, "row 0").prompt[0]["role"] == "system"
