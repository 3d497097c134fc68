"""``lit-dpo test`` and ``lit-dpo predict`` on a trained adapter: what they log and return.

``test`` runs Lightning's test loop over the held-out pairs and logs the validation metrics under
``val/``; ``predict`` gives each held-out pair's implicit rewards, log-probs of policy and
reference, and loss. Both are checked against ``validate`` on the same adapter and pairs, and
predict's per-pair values against the DPO formulas.
"""

from __future__ import annotations

import json

import pytest
import torch
from conftest import make_adapter
from lightning import Callback

from lit_dpo.cli import run_lightning_cli

pytestmark = pytest.mark.usefixtures("one_thread")

BETA = 0.1


class KeepPredictions(Callback):
    """What each predict batch returned (named in the command line by its class path)."""

    def __init__(self) -> None:
        self.outputs: list[dict[str, torch.Tensor]] = []

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, *args) -> None:
        self.outputs.append(outputs)


def _args(command: str, model_dir, adapter, data_dir, root, *extra: str) -> list[str]:
    return [
        command,
        f"--model.model={model_dir}",
        f"--model.load.adapter={adapter}",
        f"--model.objective.beta={BETA}",
        f"--data.dataset={data_dir}",
        "--data.batch_size=1",  # two batches of the two held-out pairs
        "--data.max_length=64",
        "--data.max_prompt_length=32",
        "--trainer.accelerator=cpu",
        "--trainer.enable_progress_bar=false",
        f"--trainer.default_root_dir={root}",
        *extra,
    ]


@pytest.fixture(scope="module")
def runs(tiny_model_dir, tiny_data_dir, tmp_path_factory):
    """validate, test and predict of one adapter whose policy differs from the reference."""
    root = tmp_path_factory.mktemp("test-predict")
    adapter = make_adapter(tiny_model_dir, root / "adapter")
    run_lightning_cli(_args("validate", tiny_model_dir, adapter, tiny_data_dir, root))
    validated = json.loads((root / "validate_metrics.json").read_text())
    tested = run_lightning_cli(_args("test", tiny_model_dir, adapter, tiny_data_dir, root))
    predicted = run_lightning_cli(
        _args(
            "predict",
            tiny_model_dir,
            adapter,
            tiny_data_dir,
            root,
            "--trainer.callbacks+=test_test_and_predict.KeepPredictions",
        )
    )
    keep = next(c for c in predicted.trainer.callbacks if isinstance(c, KeepPredictions))
    pairs = {key: torch.cat([o[key] for o in keep.outputs]) for key in keep.outputs[0]}
    return validated, tested.trainer.callback_metrics, pairs


def test_test_logs_under_val_what_validate_reports(runs):
    validated, tested, _ = runs
    keys = [
        "val/loss",
        "val/rewards/margins",
        "val/rewards/accuracies",
        "val/logps/chosen",
        "val/logps_accuracy/policy",
        "val/logps_accuracy/reference",
    ]
    for key in keys:
        assert float(tested[key]) == pytest.approx(validated[key], abs=1e-5), key
    assert validated["val/loss"] != pytest.approx(0.6931472, abs=1e-3), "adapter not applied"


def test_predict_gives_each_held_out_pair_its_rewards_log_probs_and_loss(runs):
    validated, _, pairs = runs
    assert len(pairs["rewards/chosen"]) == 2  # the two held-out pairs, one row each
    # implicit reward: beta * (policy - reference) summed log-prob of a reply
    for side in ("chosen", "rejected"):
        expected = BETA * (pairs[f"logps/{side}"] - pairs[f"reference_logps/{side}"])
        torch.testing.assert_close(pairs[f"rewards/{side}"], expected, rtol=0, atol=1e-5)
    margins = pairs["rewards/chosen"] - pairs["rewards/rejected"]
    torch.testing.assert_close(pairs["rewards/margins"], margins, rtol=0, atol=1e-6)
    # DPO's loss of a pair: -log sigmoid(margin)
    losses = -torch.nn.functional.logsigmoid(margins)
    torch.testing.assert_close(pairs["losses"], losses, rtol=0, atol=1e-5)
    assert not torch.equal(pairs["logps/chosen"], pairs["reference_logps/chosen"])
    # the pairs' means are the held-out metrics
    assert float(losses.mean()) == pytest.approx(validated["val/loss"], abs=1e-5)
    assert float(margins.mean()) == pytest.approx(validated["val/rewards/margins"], abs=1e-5)
    assert float(pairs["logps/chosen"].mean()) == pytest.approx(
        validated["val/logps/chosen"], abs=1e-4
    )
