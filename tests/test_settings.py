"""DPOModule's settings in groups, and lit-dpo 0.2's flat keys, which work for one more release.

An old key in a config file, on the command line, as a keyword argument of DPOModule or in the
hyperparameters of a 0.2 checkpoint gives the same settings as the new key, with one line naming
both; an unknown key still fails as it did.
"""

from __future__ import annotations

import csv
import logging
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest
import torch
import yaml
from conftest import cli_error, tiny_fit_args

from lit_dpo.cli import main, parse_config, run_lightning_cli
from lit_dpo.train import DPOModule
from lit_dpo.train.settings import (
    GROUPS,
    MOVED_KEYS,
    LoRASettings,
    ObjectiveSettings,
    Settings,
    move_keys,
    moved_key_message,
)

# DPOModule's 0.2 arguments, model and optimizer aside (its signature, as released)
ARGUMENTS_0_2 = (
    "adapter reference reference_adapter quantization compute_dtype lora_r lora_alpha "
    "lora_dropout target_modules gradient_checkpointing beta loss_type loss_weights "
    "label_smoothing ld_alpha use_weighting f_divergence_type f_alpha_divergence_coef "
    "discopop_tau simpo_gamma cpo_alpha sft_weight desirable_weight undesirable_weight "
    "lr_schedule warmup_ratio trust_remote_code logps_chunk_size share_prompt packed_attention "
    "precompute_reference quant_storage on_nonfinite allow_pickle return_freed_memory"
).split()

# a 0.2 config's model block, with non-default values, and the same settings in 0.3's groups
OLD_MODEL = {
    "model": "embedded:SmolLM2-135M-Instruct",
    "compute_dtype": "float32",
    "lora_r": 8,
    "lora_dropout": 0.0,
    "gradient_checkpointing": False,
    "beta": 0.3,
    "loss_type": ["sigmoid", "sft"],
    "loss_weights": [1.0, 0.5],
    "warmup_ratio": 0.2,
    "precompute_reference": True,
}
NEW_MODEL = {
    "model": "embedded:SmolLM2-135M-Instruct",
    "load": {"compute_dtype": "float32"},
    "lora": {"r": 8, "dropout": 0.0},
    "efficiency": {"gradient_checkpointing": False, "precompute_reference": True},
    "objective": {"beta": 0.3, "loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, 0.5]},
    "optimization": {"warmup_ratio": 0.2},
}


def test_every_0_2_argument_has_one_place_in_a_group():
    assert sorted(MOVED_KEYS) == sorted(ARGUMENTS_0_2)
    places = [f"{name}.{f.name}" for name, group in GROUPS.items() for f in fields(group)]
    assert sorted(MOVED_KEYS.values()) == sorted(places)
    assert len(GROUPS) == 5


def test_settings_import_without_lightning_transformers_or_peft():
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, lit_dpo.train.settings; print(sorted(sys.modules))"],
        capture_output=True, text=True, check=True,
    ).stdout
    heavy = {"lightning", "transformers", "peft"} & {m.split(".")[0] for m in eval(loaded)}
    assert not heavy


def test_move_keys_applies_an_old_key_over_its_group():
    moved, old = move_keys({"beta": 0.3, "objective": ObjectiveSettings(loss_type="ipo")})
    assert old == ["beta"]
    assert Settings.from_values(moved).objective == ObjectiveSettings(loss_type="ipo", beta=0.3)
    assert moved_key_message("beta") == (
        "model.beta is now model.objective.beta; the old key works until lit-dpo 0.4"
    )


def _config(tmp_path: Path, name: str, model: dict) -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"model": model, "data": {"batch_size": 2}}))
    return str(path)


def _messages(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "lit_dpo.cli"]


def test_an_old_config_file_reads_as_the_new_one_and_names_each_new_key(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="lit_dpo.cli")
    new, _ = parse_config(["--config", _config(tmp_path, "new.yaml", NEW_MODEL)])
    assert _messages(caplog) == []
    old, _ = parse_config(["--config", _config(tmp_path, "old.yaml", OLD_MODEL)])
    assert old.model.settings == new.model.settings
    assert old.model.hparams == new.model.hparams
    assert new.model.settings.objective.loss_weights == [1.0, 0.5]
    expected = [moved_key_message(key) for key in OLD_MODEL if key != "model"]
    assert sorted(_messages(caplog)) == sorted(expected)
    # the config a run saves (and --print_config) is in the new layout
    assert "beta:" not in old.dump.split("objective:")[0]


def test_old_flags_read_as_the_new_ones(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="lit_dpo.cli")
    base = _config(tmp_path, "base.yaml", {"model": "embedded:SmolLM2-135M-Instruct"})
    new, _ = parse_config(["--config", base, "--model.objective.beta=0.3", "--model.lora.r", "8"])
    old, _ = parse_config(["--config", base, "--model.beta=0.3", "--model.lora_r", "8"])
    assert old.model.settings == new.model.settings
    assert (old.model.settings.objective.beta, old.model.settings.lora.r) == (0.3, 8)
    assert _messages(caplog) == [moved_key_message("beta"), moved_key_message("lora_r")]


def test_old_keyword_arguments_build_the_same_module():
    new = DPOModule(objective=ObjectiveSettings(beta=0.3), lora=LoRASettings(r=8, dropout=0.0))
    with pytest.warns(FutureWarning) as warned:
        old = DPOModule(beta=0.3, lora_r=8, lora_dropout=0.0)
    assert old.settings == new.settings and old.hparams == new.hparams
    assert [str(w.message) for w in warned] == [
        f"DPOModule({key}=...) is now {new_key} (model.{new_key} in a config); the old argument "
        "works until lit-dpo 0.4"
        for key, new_key in (("beta", "objective.beta"), ("lora_r", "lora.r"),
                             ("lora_dropout", "lora.dropout"))
    ]
    # groups may also come as dicts of their fields (as checkpoints keep them)
    as_dicts = DPOModule(objective={"beta": 0.3}, lora={"r": 8, "dropout": 0.0})
    assert as_dicts.settings == new.settings


def test_unknown_keys_still_fail(tmp_path, capsys):
    config = _config(tmp_path, "typo.yaml", {"betta": 0.3})
    err = cli_error(["fit", "--config", config], capsys)
    assert "betta" in err
    err = cli_error(["fit", "--model.betta=0.3"], capsys)
    assert "unrecognized arguments: --model.betta=0.3" in err
    with pytest.raises(TypeError, match="betta"):
        DPOModule(betta=0.3)


def _train_losses(root: Path) -> list[float]:
    rows = csv.DictReader((next(root.rglob("metrics.csv"))).open())
    return [float(row["train/loss"]) for row in rows if row.get("train/loss")]


def test_old_flags_train_exactly_as_the_new_ones(tiny_model_dir, tiny_data_dir, tmp_path):
    losses = {}
    for name, flags in {
        "new": ("--model.objective.beta=0.3", "--model.lora.r=4", "--model.lora.dropout=0.0"),
        "old": ("--model.beta=0.3", "--model.lora_r=4", "--model.lora_dropout=0.0"),
    }.items():
        torch.manual_seed(0)
        main(tiny_fit_args(tiny_model_dir, tiny_data_dir, tmp_path / name, *flags))
        losses[name] = _train_losses(tmp_path / name)
    assert len(losses["new"]) == 2
    assert losses["old"] == losses["new"]


def test_a_0_2_checkpoint_reloads_through_the_old_keys(
    tiny_model_dir, tiny_data_dir, tmp_path, caplog
):
    """A checkpoint whose hyperparameters are 0.2's flat settings: ``--ckpt_path`` reads them
    into the groups (Lightning merges a checkpoint's settings into the config)."""
    main(tiny_fit_args(tiny_model_dir, tiny_data_dir, tmp_path / "fit", "--model.lora.r=4"))
    (saved,) = (tmp_path / "fit").rglob("*.ckpt")
    checkpoint = torch.load(saved, weights_only=True)
    hparams = checkpoint["hyper_parameters"]
    assert hparams["lora"]["r"] == 4 and "lora_r" not in hparams  # the 0.3 layout
    # plain values: Lightning's own reload builds the module from them
    assert DPOModule.load_from_checkpoint(saved).settings == Settings.from_values(hparams)
    flat = {"model": hparams["model"]}
    for old, place in MOVED_KEYS.items():
        group, name = place.split(".")
        flat[old] = hparams[group][name]
    flat["beta"] = 0.25  # what the checkpoint says wins over the config, as Lightning does
    checkpoint["hyper_parameters"] = flat
    old_checkpoint = tmp_path / "0.2.ckpt"
    torch.save(checkpoint, old_checkpoint)

    caplog.set_level(logging.WARNING, logger="lit_dpo.cli")
    args = tiny_fit_args(tiny_model_dir, tiny_data_dir, tmp_path / "validate")
    args[0] = "validate"
    cli = run_lightning_cli([*args, f"--ckpt_path={old_checkpoint}"])
    assert cli.model.settings.objective.beta == 0.25
    assert cli.model.settings.lora.r == 4
    assert moved_key_message("beta") in _messages(caplog)
