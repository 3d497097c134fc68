"""Every accepted preference format carries the same pair to the model, token for token."""

from __future__ import annotations

import pytest

from lit_dpo.data.batches import encode_pair
from lit_dpo.data.pairs import detect_format, extract_pair
from lit_dpo.errors import DataError

QUESTION, GOOD, BAD = "What is the capital of France?", "The capital of France is Paris.", "Lyon."
USER = {"role": "user", "content": QUESTION}

ROWS = {
    "ultrafeedback": {
        "prompt": QUESTION,
        "chosen": [USER, {"role": "assistant", "content": GOOD}],
        "rejected": [USER, {"role": "assistant", "content": BAD}],
        "score_chosen": 9.0,
        "score_rejected": 2.0,
    },
    # implicit prompt: no prompt column, the shared prefix is the prompt
    "implicit": {
        "chosen": [USER, {"role": "assistant", "content": GOOD}],
        "rejected": [USER, {"role": "assistant", "content": BAD}],
    },
    "conversational": {
        "prompt": [USER],
        "chosen": [{"role": "assistant", "content": GOOD}],
        "rejected": [{"role": "assistant", "content": BAD}],
    },
    "plain": {"prompt": QUESTION, "chosen": GOOD, "rejected": BAD},
    "hh-rlhf": {
        "chosen": f"\n\nHuman: {QUESTION}\n\nAssistant: {GOOD}",
        "rejected": f"\n\nHuman: {QUESTION}\n\nAssistant: {BAD}",
    },
}
DETECTED = {"implicit": "ultrafeedback"}


@pytest.mark.parametrize("name", ROWS)
def test_format_is_detected(name):
    assert detect_format(ROWS[name], "x.jsonl") == DETECTED.get(name, name)


@pytest.mark.parametrize("name", ROWS)
def test_every_format_reaches_the_model_identically(name, tiny_tokenizer):
    reference = encode_pair(extract_pair(ROWS["ultrafeedback"], "r"), tiny_tokenizer, 64, 32)
    row = ROWS[name]
    pair = extract_pair(row, "row 0", detect_format(row, "x.jsonl"))
    assert encode_pair(pair, tiny_tokenizer, 64, 32) == reference


def test_hh_multi_turn_keeps_history():
    row = {
        "chosen": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: 2+2?\n\nAssistant: 4",
        "rejected": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: 2+2?\n\nAssistant: 5",
    }
    pair = extract_pair(row, "row 0", "hh-rlhf")
    assert [m["role"] for m in pair.prompt] == ["user", "assistant", "user"]
    assert (pair.chosen, pair.rejected) == ("4", "5")


def test_unknown_shape_lists_columns_and_formats():
    with pytest.raises(DataError) as error:
        detect_format({"question": "q", "good": "a", "bad": "b"}, "mine.jsonl")
    message = str(error.value)
    assert "mine.jsonl" in message and "['bad', 'good', 'question']" in message
    for name in ("ultrafeedback", "conversational", "plain", "hh-rlhf", "--data.columns"):
        assert name in message


def test_hh_transcript_must_start_with_human():
    with pytest.raises(DataError, match="does not start with"):
        extract_pair({"chosen": "oops\n\nAssistant: a", "rejected": "x"}, "row 2", "hh-rlhf")


@pytest.mark.parametrize("name", ["plain", "conversational", "hh-rlhf", "implicit"])
def test_each_format_trains_through_fit(name, tiny_model_dir, tmp_path):
    from conftest import write_jsonl

    from lit_dpo.cli import main

    write_jsonl(tmp_path / "train.jsonl", [ROWS[name]] * 4)
    main([
        "fit",
        f"--model.model={tiny_model_dir}",
        f"--data.dataset={tmp_path / 'train.jsonl'}",
        "--data.val_fraction=0.5",
        "--data.batch_size=2",
        "--data.max_length=64",
        "--data.max_prompt_length=32",
        "--trainer.max_steps=1",
        "--trainer.accelerator=cpu",
        "--trainer.enable_progress_bar=false",
        "--trainer.logger=false",
        "--trainer.enable_checkpointing=false",
        f"--trainer.default_root_dir={tmp_path}",
    ])
    assert (tmp_path / "adapter" / "adapter_model.safetensors").exists()


def test_column_mapping(tiny_model_dir, tmp_path):
    from conftest import write_jsonl

    from lit_dpo.data.datamodule import PreferenceDataModule

    rows = [{"question": QUESTION, "good": GOOD, "bad": BAD, "id": i} for i in range(4)]
    write_jsonl(tmp_path / "mine.jsonl", rows)
    data = PreferenceDataModule(
        dataset=str(tmp_path / "mine.jsonl"),
        columns={"prompt": "question", "chosen": "good", "rejected": "bad"},
        tokenizer=str(tiny_model_dir),
        val_fraction=0.5,
        max_length=64,
        max_prompt_length=32,
    )
    data.setup("fit")
    plain = extract_pair(ROWS["plain"], "r", "plain")
    expected = encode_pair(plain, data.tokenizer, 64, 32)
    assert data.splits["train"][0]["chosen_ids"] == expected["chosen_ids"]


@pytest.mark.parametrize("kind", ["parquet", "save_to_disk", "jsonl_file"])
def test_local_sources(kind, tiny_model_dir, tmp_path):
    from datasets import Dataset, DatasetDict

    from lit_dpo.data.datamodule import PreferenceDataModule

    train = Dataset.from_list([ROWS["ultrafeedback"]] * 4)
    test = Dataset.from_list([ROWS["ultrafeedback"]] * 2)
    if kind == "parquet":
        (tmp_path / "d").mkdir()
        train.to_parquet(str(tmp_path / "d" / "train.parquet"))
        test.to_parquet(str(tmp_path / "d" / "test.parquet"))
        source = tmp_path / "d"
    elif kind == "save_to_disk":
        source = tmp_path / "saved"
        DatasetDict({"train_prefs": train, "test_prefs": test}).save_to_disk(str(source))
    else:
        source = tmp_path / "rows.jsonl"
        train.to_json(str(source))
    data = PreferenceDataModule(dataset=str(source), tokenizer=str(tiny_model_dir),
                                val_fraction=0.5, max_length=64, max_prompt_length=32)
    data.setup("fit")
    expected = {"parquet": (4, 2), "save_to_disk": (4, 2), "jsonl_file": (2, 2)}[kind]
    assert (len(data.splits["train"]), len(data.splits["val"])) == expected


def test_tokenization_is_cached_across_runs_and_keyed_on_settings(tiny_model_dir, tiny_data_dir,
                                                                  monkeypatch):
    from lit_dpo.data import datamodule

    calls = []
    real_encode = datamodule.encode_pair

    def counting_encode(*args, **kwargs):
        calls.append(1)
        return real_encode(*args, **kwargs)

    monkeypatch.setattr(datamodule, "encode_pair", counting_encode)

    def setup(max_length: int) -> int:
        calls.clear()
        data = datamodule.PreferenceDataModule(
            dataset=str(tiny_data_dir), tokenizer=str(tiny_model_dir), max_length=max_length,
            max_prompt_length=24,
        )
        data.setup("fit")
        return len(calls)

    setup(61)  # may hit the cache of an earlier session; fills it either way
    assert setup(61) == 0, "the same settings tokenized again"
    assert setup(62) == 8, "a new max_length must not be served the old cache"  # 6 train + 2 val
