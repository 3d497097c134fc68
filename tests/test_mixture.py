"""data.mixture: several datasets, each with its own format, columns, weight and size cap."""

from __future__ import annotations

import pytest
import yaml
from conftest import ROWS, hh_rlhf_row, ultrafeedback_row, write_jsonl

from lit_dpo.cli import main
from lit_dpo.data.datamodule import DatasetPart, PreferenceDataModule
from lit_dpo.errors import ConfigError

# Each source words its pairs differently (in the tiny tokenizer's vocabulary), so every pair of
# the mixture is distinct unless a weight repeats it.


def _plain_rows() -> list[dict]:
    # columns named differently, mapped with `columns`; the replies swapped
    return [{"question": p, "good": r, "bad": c} for p, c, r in ROWS]


def _hh_rows(n: int) -> list[dict]:
    return [hh_rlhf_row(p, c, f"{r} really.") for p, c, r in ROWS[:n]]


@pytest.fixture
def three_sources(tmp_path):
    """6 + 2 UltraFeedback pairs (own test split), 8 plain rows, 4 HH-RLHF rows."""
    folder = tmp_path / "ultrafeedback"
    folder.mkdir()
    write_jsonl(folder / "train_prefs.jsonl", [ultrafeedback_row(*r) for r in ROWS[:6]])
    write_jsonl(folder / "test_prefs.jsonl", [ultrafeedback_row(*r) for r in ROWS[6:]])
    plain = write_jsonl(tmp_path / "plain.jsonl", _plain_rows())
    hh = write_jsonl(tmp_path / "hh.jsonl", _hh_rows(4))
    return [
        {"dataset": str(folder)},
        {"dataset": str(plain), "format": "plain", "weight": 0.5,
         "columns": {"prompt": "question", "chosen": "good", "rejected": "bad"}},
        {"dataset": str(hh), "format": "hh-rlhf", "weight": 2.0, "max_pairs": 5},
    ]


def _fitted_mixture(tiny_model_dir, sources: list[dict], **settings) -> PreferenceDataModule:
    """The three sources as one set-up mixture, a fifth carved for validation."""
    settings = {"max_length": 64, "max_prompt_length": 32, **settings}
    data = PreferenceDataModule(mixture=[DatasetPart(**part) for part in sources],
                                tokenizer=str(tiny_model_dir), val_fraction=0.2, **settings)
    data.setup("fit")
    return data


def test_mixture_weights_caps_and_reports_each_dataset(tiny_model_dir, three_sources):
    data = _fitted_mixture(tiny_model_dir, three_sources)
    train, val = data.report["train"], data.report["val"]
    # plain: 8 rows -> 2 carved for validation, 6 train, weight 0.5 -> 3
    # hh: 4 rows -> 1 carved, 3 train, weight 2 -> 6, capped at 5 (pairs repeat)
    assert [p["pairs"] for p in train["parts"]] == [6, 3, 5]
    assert [p["pairs"] for p in val["parts"]] == [2, 2, 1]
    assert len(data.splits["train"]) == train["pairs"] == 14
    assert len(data.splits["val"]) == val["pairs"] == 5
    assert data.split_names == {"train": "mixture of 3 datasets", "val": "mixture of 3 datasets"}
    assert sorted(data.splits["train"]["pair_index"]) == list(range(14))

    def pairs(split):
        return [
            (tuple(row["prompt_ids"]), tuple(row["chosen_ids"]), tuple(row["rejected_ids"]))
            for row in data.splits[split]
        ]

    # 6 + 3 distinct pairs, and the 3 HH pairs of which 2 are repeated by the weight
    assert len(set(pairs("train"))) == 12
    # a carved validation pair is never trained on
    assert not set(pairs("val")) & set(pairs("train"))
    # hyperparameters keep the mixture as plain dicts (hparams.yaml, checkpoints)
    assert data.hparams.mixture[1]["weight"] == 0.5 and isinstance(data.hparams.mixture[1], dict)


def test_mixture_sizes_apply_after_mixing(tiny_model_dir, three_sources):
    data = _fitted_mixture(tiny_model_dir, three_sources, train_size=7, val_size=3)
    assert (len(data.splits["train"]), len(data.splits["val"])) == (7, 3)
    assert sorted(data.splits["train"]["pair_index"]) == list(range(7))


def test_a_sized_mixture_counts_the_truncated_among_the_pairs_it_kept(tiny_model_dir,
                                                                      three_sources):
    """Every pair is cut at 8 tokens; of the 5 validation pairs the size keeps 3, so 3 are
    truncated, not 5 (the count a health alarm once read as 5 of 3 pairs)."""
    data = _fitted_mixture(tiny_model_dir, three_sources, val_size=3, max_length=8,
                           max_prompt_length=4)
    val = data.report["val"]
    assert sum(part["truncated"] for part in val["parts"]) == 5
    assert (val["pairs"], val["truncated"]) == (3, 3)


def test_mixture_settings_are_checked(tiny_model_dir):
    with pytest.raises(ConfigError, match=r"mixture\[0\].weight must be positive.*"
                                          r"mixture\[1\].max_pairs must be positive"):
        PreferenceDataModule(
            mixture=[DatasetPart("a", weight=0), DatasetPart("b", max_pairs=0)],
            tokenizer=str(tiny_model_dir),
        )
    with pytest.raises(ConfigError, match="mixture is empty"):
        PreferenceDataModule(mixture=[], tokenizer=str(tiny_model_dir))
    # parts as plain dicts (a Python caller, hparams.yaml) are checked alike
    with pytest.raises(ConfigError, match=r"mixture\[0\].weight must be positive"):
        PreferenceDataModule(mixture=[{"dataset": "a", "weight": 0}], tokenizer=str(tiny_model_dir))


def test_mixture_from_a_yaml_config_trains_and_prints(
    tiny_model_dir, three_sources, tmp_path, capsys
):
    config = tmp_path / "mixture.yaml"
    config.write_text(yaml.safe_dump({"data": {"mixture": three_sources, "val_fraction": 0.2}}))
    common = [
        f"--config={config}",
        f"--model.model={tiny_model_dir}",
        "--data.max_length=64",
        "--data.max_prompt_length=32",
    ]
    with pytest.raises(SystemExit) as printed:
        main(["fit", *common, "--print_config"])
    assert printed.value.code == 0
    shown = yaml.safe_load(capsys.readouterr().out)["data"]["mixture"]
    assert [p["weight"] for p in shown] == [1.0, 0.5, 2.0] and shown[2]["max_pairs"] == 5

    main(
        [
            "fit",
            *common,
            "--trainer.max_steps=2",
            "--trainer.accelerator=cpu",
            "--trainer.enable_progress_bar=false",
            "--trainer.logger=false",
            "--trainer.enable_checkpointing=false",
            f"--trainer.default_root_dir={tmp_path / 'run'}",
        ]
    )
    assert (tmp_path / "run" / "adapter" / "adapter_model.safetensors").exists()


def test_data_report_lists_each_dataset_of_a_mixture(tiny_model_dir, three_sources, tmp_path):
    config = tmp_path / "mixture.yaml"
    config.write_text(yaml.safe_dump({"data": {"mixture": three_sources, "val_fraction": 0.2}}))
    main(["data", f"--config={config}", f"--model.model={tiny_model_dir}",
          "--data.max_length=64", "--data.max_prompt_length=32", f"--out={tmp_path / 'report'}"])
    text = (tmp_path / "report" / "data_report.md").read_text()
    assert text.startswith("# Data report: mixture of ")
    assert f"| from {three_sources[2]['dataset']} (train) | 3 rows -> 5 pairs |" in text


def test_sft_false_parts_are_flagged_in_the_train_batches_only(tiny_model_dir, three_sources):
    """A part with ``sft: false`` marks its train pairs (the ``sft`` column and batch key) so
    the SFT term skips their chosen replies; validation carries no flag (every pair counts)."""
    three_sources[2]["sft"] = False  # the HH part: 4 pairs x weight 2, capped at 5
    data = PreferenceDataModule(
        tokenizer=str(tiny_model_dir),
        mixture=[DatasetPart(**part) for part in three_sources],
        max_length=64,
        max_prompt_length=32,
        batch_size=32,
    )
    data.setup("fit")
    flags = list(data.splits["train"].with_format(None)["sft"])
    assert flags.count(False) == 5 and flags.count(True) == len(flags) - 5
    (batch,) = list(data.train_dataloader())  # one shuffled batch of every train pair
    assert sorted(batch["sft"].tolist()) == sorted(flags)
    assert "sft" not in data.splits["val"].column_names
    assert "sft" not in next(iter(data.val_dataloader()))
    # with every part learning its chosen replies, no flag at all
    three_sources[2]["sft"] = True
    data = PreferenceDataModule(
        tokenizer=str(tiny_model_dir), mixture=[DatasetPart(**p) for p in three_sources],
        max_length=64, max_prompt_length=32,
    )
    data.setup("fit")
    assert "sft" not in data.splits["train"].column_names


def test_a_fit_whose_parts_all_skip_sft_logs_no_sft_loss(tiny_model_dir, three_sources, tmp_path):
    """End to end through the CLI: with ``model.objective.sft_weight`` 1 and every part
    ``sft: false``, each step's SFT term is 0 while the DPO loss is not; with the flag left at
    its default the same fit logs a positive SFT loss."""
    import csv

    logged = {}
    for skip in (True, False):
        for part in three_sources:
            part["sft"] = not skip
        config = tmp_path / f"skip{skip}.yaml"
        config.write_text(yaml.safe_dump({"data": {"mixture": three_sources,
                                                   "val_fraction": 0.2}}))
        root = tmp_path / f"run-skip{skip}"
        main([
            "fit", f"--config={config}", f"--model.model={tiny_model_dir}",
            "--data.max_length=64", "--data.max_prompt_length=32",
            "--model.objective.sft_weight=1.0", "--trainer.max_steps=2",
            "--trainer.accelerator=cpu", "--trainer.enable_progress_bar=false",
            "--trainer.enable_checkpointing=false", "--trainer.log_every_n_steps=1",
            f"--trainer.default_root_dir={root}",
            "--trainer.logger=lightning.pytorch.loggers.CSVLogger",
            f"--trainer.logger.save_dir={root}",
        ])
        with open(root / "lightning_logs" / "version_0" / "metrics.csv") as file:
            logged[skip] = [r for r in csv.DictReader(file) if r.get("train/sft_loss")]
    assert len(logged[True]) == 2 and len(logged[False]) == 2
    assert all(float(r["train/sft_loss"]) == 0.0 for r in logged[True])
    assert all(float(r["train/loss"]) > 0.5 for r in logged[True])
    assert all(float(r["train/sft_loss"]) > 1.0 for r in logged[False])


def test_sft_false_without_an_sft_term_is_a_warning_naming_the_part():
    from types import SimpleNamespace

    from lit_dpo.train.losses import Objective
    from lit_dpo.train.run_checks import check_data

    data = SimpleNamespace(parts=[DatasetPart("a"), DatasetPart("b", sft=False)], unpaired={})
    warning = check_data(Objective(), data)
    assert warning.startswith("data.mixture[1].sft is false") and "changes nothing" in warning
    assert check_data(Objective(sft_weight=0.5), data) is None
    assert check_data(Objective(loss_types=("cpo",)), data) is None  # CPO's NLL term
