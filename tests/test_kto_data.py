"""Unpaired feedback (KTO): TRL's (prompt, completion, label) rows from every file format, bad rows
named as pairs' are, ``data.unpair`` turning pairs into rows, and each row's KL counterpart."""

from __future__ import annotations

import json

import pytest
from conftest import ROWS, tiny_datamodule, ultrafeedback_row, write_jsonl

from lit_dpo.data.unpaired import extract_unpaired, label_counts
from lit_dpo.errors import ConfigError, DataError, RowError


def thumbs_rows(conversational: bool = False) -> list[dict]:
    """One desirable and one undesirable answer per fixture prompt: 16 rows, 8 up and 8 down."""
    rows = []
    for prompt, good, bad in ROWS:
        for reply, label in ((good, True), (bad, False)):
            if conversational:
                rows.append({
                    "prompt": [{"role": "user", "content": prompt}],
                    "completion": [{"role": "assistant", "content": reply}],
                    "label": label,
                })
            else:
                rows.append({"prompt": prompt, "completion": reply, "label": label})
    return rows


def test_row_formats_standard_and_conversational():
    plain = extract_unpaired({"prompt": "Q?", "completion": "A.", "label": True}, "f row 0")
    chat = extract_unpaired(
        {
            "prompt": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Q?"},
            ],
            "completion": [{"role": "assistant", "content": "A."}],
            "label": False,
        },
        "f row 1",
    )
    assert plain.prompt == [{"role": "user", "content": "Q?"}] and plain.label is True
    assert chat.prompt[0]["role"] == "system" and chat.completion == "A." and not chat.label


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"prompt": "Q?", "completion": "A."}, "f row 3: missing 'label'; columns: "),
        ({"prompt": "Q?", "completion": "A.", "label": "yes"},
         "f row 3: 'label' must be a boolean (true or false), got 'yes'"),
        ({"prompt": "Q?", "completion": "A.", "label": 1},
         "f row 3: 'label' must be a boolean (true or false), got 1"),
        ({"prompt": "Q?", "completion": "  ", "label": True}, "f row 3: empty reply"),
    ],
)
def test_bad_rows_get_one_line_errors(row, message):
    with pytest.raises(RowError) as error:
        extract_unpaired(row, "f row 3")
    assert str(error.value).startswith(message)
    assert "\n" not in str(error.value)


def test_label_counts():
    assert label_counts([True, True, True, False]) == {
        "desirable": 3, "undesirable": 1, "ratio": 3.0
    }
    assert label_counts([True])["ratio"] is None


def _write(path, rows, suffix):
    import pandas as pd

    flat = [dict(r) for r in rows]
    if suffix == ".jsonl":
        return write_jsonl(path.with_suffix(suffix), flat)
    if suffix == ".json":
        path = path.with_suffix(suffix)
        path.write_text(json.dumps(flat))
        return path
    frame = pd.DataFrame(flat)
    path = path.with_suffix(suffix)
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path)
    return path


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv", ".parquet"])
def test_every_file_format_gives_rows_with_kl_counterparts(tiny_model_dir, tmp_path, suffix):
    data = _write(tmp_path / "thumbs", thumbs_rows(), suffix)
    module = tiny_datamodule(tiny_model_dir, data, val_fraction=0.25)
    module.setup("fit")
    assert module.unpaired == {"train": True, "val": True}
    train = module.splits["train"].with_format(None)
    report = module.report["train"]
    assert report["desirable"] + report["undesirable"] == len(train) == 12
    assert report["desirable"] == sum(train["label"])
    # each row's KL completion is the completion of the row before it (the first takes the last)
    completions, kl = train["chosen_ids"], train["rejected_ids"]
    assert kl[1:] == completions[:-1] and kl[0] == completions[-1]
    batch = next(iter(module.train_dataloader()))
    assert batch["input_ids"].shape[0] == 4 and batch["label"].dtype.is_floating_point is False
    assert batch["label"].shape == (2,)


def test_conversational_rows_and_column_mapping(tiny_model_dir, tmp_path):
    rows = [
        {"question": r["prompt"], "answer": r["completion"], "thumbs_up": r["label"]}
        for r in thumbs_rows(conversational=True)
    ]
    data = write_jsonl(tmp_path / "chat.jsonl", rows)
    module = tiny_datamodule(
        tiny_model_dir,
        data,
        columns={"prompt": "question", "completion": "answer", "label": "thumbs_up"},
    )
    module.setup("fit")
    assert module.unpaired["train"]


def test_bad_row_stops_naming_file_and_row_or_is_skipped(tiny_model_dir, tmp_path):
    rows = thumbs_rows()
    rows[3]["label"] = "yes"
    data = write_jsonl(tmp_path / "thumbs.jsonl", rows)
    with pytest.raises(DataError, match=r"thumbs.jsonl row 3: 'label' must be a boolean"):
        tiny_datamodule(tiny_model_dir, data).setup("fit")
    skipping = tiny_datamodule(tiny_model_dir, data, on_bad_row="skip")
    skipping.setup("fit")
    dropped = {**skipping.report["train"]["dropped"], **skipping.report["val"]["dropped"]}
    assert dropped == {"bad row: 'label' must be a boolean (true or false)": 1}


def test_csv_empty_label_is_a_missing_label_named_by_line(tiny_model_dir, tmp_path):
    path = tmp_path / "thumbs.csv"
    path.write_text('prompt,completion,label\nQ?,A.,True\n"Q2?",B.,\nQ3?,C.,False\n')
    with pytest.raises(DataError, match=r"thumbs.csv line 3: missing 'label'"):
        tiny_datamodule(tiny_model_dir, path, val_fraction=0.4).setup("fit")


def test_unpair_turns_pairs_into_rows_and_keeps_paired_validation(tiny_model_dir, tiny_data_dir):
    module = tiny_datamodule(tiny_model_dir, tiny_data_dir, unpair=True)
    module.setup("fit")
    # the fixture has 7 train rows, one a tie (dropped): 6 pairs -> 12 rows, 6 up and 6 down
    assert module.unpaired == {"train": True, "val": False}
    assert module.report["train"]["desirable"] == module.report["train"]["undesirable"] == 6
    train = module.splits["train"].with_format(None)
    # no row's KL counterpart is its own reply
    assert all(c != k for c, k in zip(train["chosen_ids"], train["rejected_ids"], strict=True))


def test_unpair_works_on_the_embedded_dataset(tiny_model_dir):
    module = tiny_datamodule(
        tiny_model_dir, "embedded:ultrafeedback-mini", unpair=True, train_size=10, val_size=4
    )
    module.setup("fit")
    assert module.report["train"]["desirable"] == module.report["train"]["undesirable"] == 10


def test_mixture_of_paired_and_unpaired_needs_unpair(tiny_model_dir, tiny_data_dir, tmp_path):
    thumbs = write_jsonl(tmp_path / "thumbs.jsonl", thumbs_rows())
    from lit_dpo.data.datamodule import DatasetPart

    mixture = [DatasetPart(str(tiny_data_dir)), DatasetPart(str(thumbs))]
    with pytest.raises(ConfigError, match="set data.unpair true"):
        tiny_datamodule(tiny_model_dir, tiny_data_dir, mixture=mixture).setup("fit")
    module = tiny_datamodule(tiny_model_dir, tiny_data_dir, mixture=mixture, unpair=True)
    module.setup("fit")
    # 12 rows from the 6 pairs, plus the 16 thumbs rows less the one held out (5% rounded up)
    report = module.report["train"]
    assert module.unpaired == {"train": True, "val": True}
    assert report["desirable"] + report["undesirable"] == len(module.splits["train"]) == 27
    # the paired validation split met an unpaired one: it was unpaired too (2 pairs -> 4 rows)
    assert len(module.splits["val"]) == 4 + 1


def test_unpair_in_a_mixture_counts_train_size_in_pairs(tiny_model_dir, tiny_data_dir):
    from lit_dpo.data.datamodule import DatasetPart

    mixture = [
        DatasetPart(str(tiny_data_dir)),
        DatasetPart("embedded:ultrafeedback-mini", max_pairs=10),
    ]
    settings = {"mixture": mixture, "train_size": 8, "val_size": 4}
    paired = tiny_datamodule(tiny_model_dir, tiny_data_dir, **settings)
    paired.setup("fit")
    unpaired = tiny_datamodule(tiny_model_dir, tiny_data_dir, unpair=True, **settings)
    unpaired.setup("fit")
    # 8 of the mixture's 16 pairs, each as a desirable and an undesirable row (it took 8 rows,
    # four pairs' worth, when the size was applied after unpairing)
    report = unpaired.report["train"]
    assert report["desirable"] == report["undesirable"] == 8
    rows = unpaired.splits["train"].with_format(None)
    pairs = paired.splits["train"].with_format(None)
    assert len(rows) == 16 and len(pairs) == 8
    # the same 8 pairs as the paired run draws: their chosen replies are the desirable rows
    # (an unpaired split keeps each row's completion in chosen_ids, its KL one in rejected_ids)
    desirable = [c for c, up in zip(rows["chosen_ids"], rows["label"], strict=True) if up]
    assert sorted(desirable) == sorted(pairs["chosen_ids"])


def test_drawn_is_the_concatenated_shuffle_and_splits_parts_that_cannot_be_concatenated():
    import datasets

    from lit_dpo.data.datamodule import _drawn

    a = datasets.Dataset.from_dict({"x": list(range(5))})
    b = datasets.Dataset.from_dict({"x": list(range(10, 17))})
    (drawn,) = _drawn([a, b], 6, seed=3)
    assert drawn["x"] == datasets.concatenate_datasets([a, b]).shuffle(seed=3)["x"][:6]
    c = datasets.Dataset.from_dict({"y": list(range(20, 27))})
    split = _drawn([a, c], 6, seed=3)
    # the same rows as if c's column were named x: a's drawn rows, then c's
    renamed = datasets.concatenate_datasets([a, c.rename_column("y", "x")])
    order = renamed.shuffle(seed=3)["x"][:6]
    assert [v for part in split for v in part[part.column_names[0]]] == [
        *(v for v in order if v < 20), *(v for v in order if v >= 20)]
    assert len(_drawn([a, b], 100, seed=3)[0]) == 12


def test_paired_rows_still_batch_as_pairs(tiny_model_dir, tiny_data_dir):
    module = tiny_datamodule(tiny_model_dir, tiny_data_dir)
    module.setup("fit")
    assert module.unpaired == {"train": False, "val": False}
    assert "label" not in next(iter(module.train_dataloader()))
    assert "desirable" not in module.report["train"]


def test_row_with_completion_and_pair_columns_is_paired():
    from lit_dpo.data.unpaired import is_unpaired

    assert is_unpaired({"prompt": 1, "completion": 1, "label": 1})
    assert not is_unpaired({"prompt": 1, "chosen": 1, "rejected": 1, "completion": 1, "label": 1})
    assert ultrafeedback_row("Q", "a", "b")  # the paired fixture stays what it was
