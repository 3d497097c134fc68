"""Extraction of (prompt, chosen, rejected) from UltraFeedback-shaped rows, and the filters."""

from __future__ import annotations

import pytest
from conftest import ultrafeedback_row

from lit_dpo.errors import DataError
from lit_dpo.pairs import extract_pair, filter_reason


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
            "role one of",
        ),
        (
            {
                "chosen": [{"role": "user", "content": "q"}, {"role": "assistant", "content": 3}],
                "rejected": [
                    {"role": "user", "content": "q"},
                    {"role": "assistant", "content": "b"},
                ],
            },
            "content must be a string",
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


@pytest.mark.parametrize(
    ("chosen", "rejected", "scores", "reason"),
    [
        ("good", "bad", (8.0, 3.0), None),
        ("good", "also good", (7.0, 7.0), "tie"),
        ("  ", "bad", (8.0, 3.0), "empty reply"),
        ("same", "same ", (8.0, 3.0), "identical replies"),
        ("good", "bad", (float("nan"), 3.0), "NaN score"),
    ],
)
def test_filter_reasons(chosen, rejected, scores, reason):
    row = ultrafeedback_row("Q?", chosen, rejected, scores=scores)
    assert filter_reason(row, extract_pair(row, "row")) == reason
