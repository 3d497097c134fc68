"""A NaN or infinite loss or gradient, injected into a real fit, is caught and never applied."""

from __future__ import annotations

import csv
from types import SimpleNamespace

import pytest
import torch
from conftest import make_adapter, tiny_fit_args

from lit_dpo.callbacks.adapters import save_adapter
from lit_dpo.cli import main
from lit_dpo.errors import NonFiniteError
from lit_dpo.train import nonfinite
from lit_dpo.train.module import DPOModule


def _lora(module: DPOModule) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in module.policy.named_parameters() if "lora_" in n}


def _saved(adapter) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(adapter / "adapter_model.safetensors")


def _same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    """Saved keys drop peft's adapter name ('.default') that live parameter names hold."""
    a, b = ({k.replace(".default", ""): v for k, v in w.items()} for w in (a, b))
    assert set(a) == set(b)
    return all(torch.equal(a[k], b[k]) for k in a)


def _inject(monkeypatch, nan_loss_at=(), inf_grad_at=()):
    """Make the loss NaN / one LoRA gradient inf at the given optimizer steps. Records the LoRA
    weights at the start of every step, by step."""
    weights: dict[int, dict[str, torch.Tensor]] = {}
    dpo_step = DPOModule.step_statistics

    def faultystep_statistics(self, batch, stage):
        stats = dpo_step(self, batch, stage)
        if stage == "train":
            weights.setdefault(self.global_step, _lora(self))
            if self.global_step in nan_loss_at:
                stats["loss"] = stats["loss"] * float("nan")
        return stats

    def on_after_backward(self):
        if self.global_step in inf_grad_at:
            grad = next(p.grad for n, p in self.policy.named_parameters() if "lora_A" in n)
            grad.view(-1)[0] = float("inf")

    monkeypatch.setattr(DPOModule, "step_statistics", faultystep_statistics)
    monkeypatch.setattr(DPOModule, "on_after_backward", on_after_backward, raising=False)
    return weights


def _fit(model_dir, data_dir, root, *extra):
    return main(tiny_fit_args(model_dir, data_dir, root, "--trainer.limit_train_batches=3", *extra))


def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_adapter(
    tiny_model_dir, tiny_data_dir, tmp_path, monkeypatch, capsys
):
    # a good adapter from an earlier run is where the final one would go
    earlier = make_adapter(tiny_model_dir, tmp_path / "adapter")
    earlier_bytes = (earlier / "adapter_model.safetensors").read_bytes()
    weights = _inject(monkeypatch, nan_loss_at={1})
    with pytest.raises(SystemExit) as exit_info:
        _fit(tiny_model_dir, tiny_data_dir, tmp_path)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "lit-dpo: error: non-finite loss at optimizer step 2 (the loss is nan; epoch 0, " in err
    assert "train pairs [" in err and "lower model.optimizer.lr" in err
    assert "model.optimization.on_nonfinite skip" in err and "Traceback" not in err

    assert (earlier / "adapter_model.safetensors").read_bytes() == earlier_bytes
    last_good = _saved(tmp_path / "adapter-step1")
    assert all(torch.isfinite(w).all() for w in last_good.values())
    assert _same_weights(last_good, weights[1])  # as they were before the faulty step
    assert not _same_weights(last_good, weights[0])  # and step 1 did train


def test_inf_gradient_stops_before_the_step(
    tiny_model_dir, tiny_data_dir, tmp_path, monkeypatch, capsys
):
    weights = _inject(monkeypatch, inf_grad_at={1})
    with pytest.raises(SystemExit) as exit_info:
        _fit(tiny_model_dir, tiny_data_dir, tmp_path)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "lit-dpo: error: non-finite gradient at optimizer step 2 (gradient of " in err
    assert "lora_A.default.weight is inf" in err
    assert _same_weights(_saved(tmp_path / "adapter-step1"), weights[1])
    assert not (tmp_path / "adapter").exists()


def test_skip_drops_faulty_steps_and_training_goes_on(
    tiny_model_dir, tiny_data_dir, tmp_path, monkeypatch
):
    weights = _inject(monkeypatch, nan_loss_at={1}, inf_grad_at={2})
    _fit(tiny_model_dir, tiny_data_dir, tmp_path, "--model.optimization.on_nonfinite=skip")

    # AdamW's momentum from the first step would move the weights in the next two had they stepped
    assert _same_weights(_saved(tmp_path / "adapter"), weights[1])
    assert _same_weights(weights[2], weights[1])
    assert not _same_weights(weights[1], weights[0])
    rows = list(csv.DictReader((tmp_path / "lightning_logs/version_0/metrics.csv").open()))
    skipped = [float(r["train/skipped_steps"]) for r in rows if r.get("train/skipped_steps")]
    assert skipped == [0.0, 1.0, 2.0]


def test_save_adapter_refuses_non_finite_weights_and_keeps_the_old_adapter(
    tiny_model_dir, tmp_path
):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    path = make_adapter(tiny_model_dir, tmp_path / "adapter")
    before = (path / "adapter_model.safetensors").read_bytes()
    policy = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), path)
    with torch.no_grad():
        next(p for n, p in policy.named_parameters() if "lora_B" in n).view(-1)[3] = float("nan")
    module = SimpleNamespace(policy=policy)
    with pytest.raises(NonFiniteError, match="holds nan values \\(the adapter already there is"):
        save_adapter(module, SimpleNamespace(datamodule=None, precision="32-true"), path)
    assert (path / "adapter_model.safetensors").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]  # no staging left behind


def test_zero_loss_gives_zero_gradients_and_finite_checks():
    weights = [torch.randn(3, requires_grad=True), torch.randn(2, 2, requires_grad=True)]
    loss = nonfinite.zero_loss(weights)
    loss.backward()
    assert loss.item() == 0 and all(torch.equal(w.grad, torch.zeros_like(w)) for w in weights)
    assert nonfinite.all_finite(weights) and nonfinite.all_finite([])
    named = [("a", torch.ones(2)), ("b", torch.tensor([1.0, float("-inf")]))]
    assert not nonfinite.all_finite(t for _, t in named)
    assert nonfinite.first_nonfinite(named) == ("b", "inf")
    assert "bf16-mixed" in nonfinite.advice("16-mixed", "loss")


NAN_ON_RANK_1 = """
import sys

import torch.distributed as dist

from lit_dpo.cli import main
from lit_dpo.train.module import DPOModule

dpo_step = DPOModule.step_statistics


def faultystep_statistics(self, batch, stage):
    stats = dpo_step(self, batch, stage)
    if stage == "train" and self.global_step == 1 and dist.get_rank() == 1:
        stats["loss"] = stats["loss"] * float("nan")
    return stats


DPOModule.step_statistics = faultystep_statistics
main(sys.argv[1:])
"""


@pytest.mark.slow
@pytest.mark.parametrize("on_nonfinite", ["stop", "skip"])
def test_nan_on_one_ddp_rank_is_decided_by_all(
    on_nonfinite, tiny_model_dir, tiny_data_dir, tmp_path
):
    """Two CPU processes; rank 1 alone sees a NaN loss. Neither waits forever on the other."""
    import os
    import subprocess
    import sys

    script = tmp_path / "nan_on_rank_1.py"
    script.write_text(NAN_ON_RANK_1)
    args = tiny_fit_args(
        tiny_model_dir,
        tiny_data_dir,
        tmp_path,
        "--trainer.strategy=ddp",
        "--trainer.devices=2",
        "--data.batch_size=1",
        "--trainer.limit_train_batches=3",
        "--trainer.limit_val_batches=1",
        "--trainer.num_sanity_val_steps=0",
        f"--model.optimization.on_nonfinite={on_nonfinite}",
    )
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        timeout=240,
        env=environment,
        cwd=tmp_path,
    )
    if on_nonfinite == "stop":
        assert done.returncode != 0
        assert "lit-dpo: error: non-finite loss at optimizer step 2 (the loss is " in done.stderr
        assert _saved(tmp_path / "adapter-step1")
    else:
        assert done.returncode == 0, done.stderr[-3000:]
        assert "step 2 skipped" in done.stderr
        weights = _saved(tmp_path / "adapter")
        assert all(torch.isfinite(w).all() for w in weights.values())
