"""lit-dpo export: merged weights reproduce base + adapter and load without peft."""

from __future__ import annotations

import pytest
import torch
from conftest import make_adapter
from safetensors import safe_open

from lit_dpo.cli import main
from lit_dpo.errors import ConfigError
from lit_dpo.export import export
from lit_dpo.models.inference import ADAPTER_FILES

# fp32 merge of W + B @ A * alpha / r against the same sum done per forward pass by peft: only
# summation order differs (measured 6.6e-7 on these logits, which the adapter moves by 1.3).
FP32_TOLERANCE = 1e-4


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def adapter(tiny_model_dir, tmp_path_factory):
    """A saved LoRA adapter with random, non-zero lora_B (so merging changes the weights)."""
    return make_adapter(tiny_model_dir, tmp_path_factory.mktemp("adapter"))


def _logits(model, input_ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=input_ids).logits.float()


def test_merged_fp32_logits_match_base_plus_adapter(adapter, tiny_model_dir, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    main(["export", f"--adapter={adapter}", f"--out={tmp_path / 'merged'}", "--dtype=fp32"])
    out = tmp_path / "merged"

    input_ids = torch.randint(3, 60, (2, 24), generator=torch.Generator().manual_seed(0))
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    base_logits = _logits(base, input_ids)
    expected = _logits(PeftModel.from_pretrained(base, adapter).eval(), input_ids)
    merged = AutoModelForCausalLM.from_pretrained(out).eval()
    got = _logits(merged, input_ids)

    assert (expected - base_logits).abs().max() > 1e-2, "the adapter changes nothing"
    assert (got - expected).abs().max() < FP32_TOLERANCE
    assert not any("lora_" in name for name, _ in merged.named_parameters())
    assert type(merged).__name__ == "LlamaForCausalLM"
    names = {p.name for p in out.iterdir()}
    assert not names & set(ADAPTER_FILES)
    assert {"config.json", "model.safetensors", "tokenizer_config.json"} <= names
    tokenizer = AutoTokenizer.from_pretrained(out)
    original = AutoTokenizer.from_pretrained(adapter)
    messages = [{"role": "user", "content": "Who wrote Hamlet?"}]
    assert tokenizer.apply_chat_template(messages, tokenize=False) == (
        original.apply_chat_template(messages, tokenize=False)
    )
    assert merged.config.use_cache is True
    assert not hasattr(merged.config, "quantization_config")


def test_bf16_export_is_half_precision_and_close(adapter, tiny_model_dir, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out = export(str(adapter), str(tmp_path / "merged"), dtype="bf16")
    with safe_open(out / "model.safetensors", framework="pt") as weights:
        dtypes = {weights.get_slice(name).get_dtype() for name in weights.keys()}
    assert dtypes == {"BF16"}

    input_ids = torch.randint(3, 60, (1, 24), generator=torch.Generator().manual_seed(1))
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    expected = _logits(PeftModel.from_pretrained(base, adapter).eval(), input_ids)
    merged = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    got = _logits(merged, input_ids)
    # bf16 keeps 8 bits of mantissa (~0.4% per weight); measured 5.3e-3 on these logits
    assert (got - expected).abs().max() < 2e-2
    assert (got.argmax(-1) == expected.argmax(-1)).float().mean() > 0.9


def test_export_refuses_a_used_folder_and_a_missing_adapter(adapter, tmp_path, capsys):
    used = tmp_path / "used"
    used.mkdir()
    (used / "keep.txt").write_text("precious")
    with pytest.raises(ConfigError, match="already exists and is not empty"):
        export(str(adapter), str(used))
    assert (used / "keep.txt").read_text() == "precious"
    with pytest.raises(SystemExit) as exit_info:
        main(["export", f"--adapter={tmp_path / 'none'}", f"--out={tmp_path / 'new'}"])
    assert exit_info.value.code == 2
    assert "no such folder" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()
