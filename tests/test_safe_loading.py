"""Loading runs no code it was handed: safetensors weights, no hub code, no pickled objects."""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import make_adapter, tiny_fit_args

import lit_dpo
from lit_dpo.cli import main
from lit_dpo.errors import ConfigError, ModelSourceError
from lit_dpo.models.inference import load_for_inference
from lit_dpo.models.policy import load_policy


@pytest.fixture(scope="module")
def pickled_model_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny model with its weights as a pickle (pytorch_model.bin) and no safetensors."""
    from safetensors.torch import load_file

    path = tmp_path_factory.mktemp("pickled-llama")
    for item in tiny_model_dir.iterdir():
        if item.suffix != ".safetensors":
            shutil.copy(item, path / item.name)
    torch.save(load_file(tiny_model_dir / "model.safetensors"), path / "pytorch_model.bin")
    return path


def test_pickled_model_weights_are_refused_unless_allowed(pickled_model_dir, tiny_model_dir):
    with pytest.raises(ModelSourceError) as error:
        load_policy(str(pickled_model_dir), quantization="none")
    message = str(error.value)
    assert (
        f"model {pickled_model_dir} holds its weights only as pickle files (pytorch_model.bin)"
        in (message)
    )
    assert "set model.load.allow_pickle true (fit, validate) or pass --allow_pickle true" in message

    policy = load_policy(str(pickled_model_dir), quantization="none", allow_pickle=True)
    reference = load_policy(str(tiny_model_dir), quantization="none")
    ids = torch.tensor([[3, 4, 5, 6]])
    assert torch.equal(policy(input_ids=ids).logits, reference(input_ids=ids).logits)


def test_fit_on_pickled_weights_stops_with_one_line(
    pickled_model_dir, tiny_data_dir, tmp_path, capsys
):
    with pytest.raises(SystemExit) as exit_info:
        main(tiny_fit_args(pickled_model_dir, tiny_data_dir, tmp_path))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"lit-dpo: error: model.model: model {pickled_model_dir} holds its weights" in err
    assert not (tmp_path / "lightning_logs").exists()  # refused before data or model loaded


def _pickled_adapter(tiny_model_dir, tmp_path) -> tuple[Path, Path]:
    """(adapter saved as safetensors, the same adapter saved as adapter_model.bin only)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    saved = make_adapter(tiny_model_dir, tmp_path / "safe")
    pickled = tmp_path / "pickled"
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), saved)
    model.save_pretrained(pickled, safe_serialization=False)
    assert [p.name for p in pickled.glob("adapter_model.*")] == ["adapter_model.bin"]
    return saved, pickled


def test_pickled_adapter_is_refused_unless_allowed(tiny_model_dir, tmp_path):
    saved, pickled = _pickled_adapter(tiny_model_dir, tmp_path)

    with pytest.raises(ConfigError, match="adapter .*pickled holds its weights only as pickle"):
        load_for_inference(pickled, str(tiny_model_dir), quantization="none")
    with pytest.raises(ConfigError, match="--allow_pickle"):
        load_policy(str(tiny_model_dir), quantization="none", adapter=str(pickled))
    allowed = load_for_inference(
        pickled, str(tiny_model_dir), quantization="none", allow_pickle=True
    ).model
    expected = load_for_inference(saved, str(tiny_model_dir), quantization="none").model
    ids = torch.tensor([[3, 4, 5, 6]])
    assert torch.equal(allowed(input_ids=ids).logits, expected(input_ids=ids).logits)


def test_export_takes_a_pickled_adapter_only_with_allow_pickle(tiny_model_dir, tmp_path, capsys):
    _, pickled = _pickled_adapter(tiny_model_dir, tmp_path)
    export = ["export", f"--adapter={pickled}", f"--model={tiny_model_dir}", "--dtype=fp32"]
    with pytest.raises(SystemExit) as exit_info:
        main([*export, f"--out={tmp_path / 'refused'}"])
    assert exit_info.value.code == 2
    assert "holds its weights only as pickle files (adapter_model.bin)" in capsys.readouterr().err
    assert not (tmp_path / "refused").exists()
    main([*export, f"--out={tmp_path / 'merged'}", "--allow_pickle=true"])
    assert (tmp_path / "merged" / "model.safetensors").is_file()


def test_model_code_in_the_folder_is_never_run(tiny_model_dir, tmp_path):
    """A folder whose config asks for its own Python code: the code would leave a marker file."""
    from lit_dpo.data.datamodule import load_tokenizer

    folder = shutil.copytree(tiny_model_dir, tmp_path / "custom")
    marker = tmp_path / "code-ran"
    code = f"open({str(marker)!r}, 'w').close()\nfrom transformers import *  # noqa\n"
    (folder / "modeling_custom.py").write_text(code + "CustomModel = LlamaForCausalLM\n")
    (folder / "tokenization_custom.py").write_text(code + "CustomTok = PreTrainedTokenizerFast\n")
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_custom.CustomModel"}
    (folder / "config.json").write_text(json.dumps(config))
    tokenizer_config = json.loads((folder / "tokenizer_config.json").read_text())
    tokenizer_config["auto_map"] = {"AutoTokenizer": [None, "tokenization_custom.CustomTok"]}
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))

    policy = load_policy(str(folder), quantization="none")
    tokenizer = load_tokenizer(str(folder))
    assert type(policy.get_base_model()).__name__ == "LlamaForCausalLM"
    assert tokenizer.chat_template
    assert not marker.exists()


def test_a_model_that_only_its_own_code_can_load_stops_fit(
    tiny_model_dir, tiny_data_dir, tmp_path, capsys
):
    folder = shutil.copytree(tiny_model_dir, tmp_path / "custom")
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="custom-llama", auto_map={"AutoConfig": "configuration_x.XConfig"})
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(SystemExit) as exit_info:
        main(tiny_fit_args(folder, tiny_data_dir, tmp_path))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"lit-dpo: error: model.model: model {folder} needs its own Python code" in err
    assert "set model.load.trust_remote_code true only if you trust it" in err


def test_every_from_pretrained_says_whether_to_trust_remote_code():
    """Each Auto*.from_pretrained in lit_dpo passes trust_remote_code (or load_kwargs)."""
    unsafe = []
    for source in Path(lit_dpo.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            owner = node.func.value
            if node.func.attr != "from_pretrained" or not isinstance(owner, ast.Name):
                continue
            if not owner.id.startswith("Auto"):
                continue
            named = {k.arg for k in node.keywords}
            spread = [ast.unparse(k.value) for k in node.keywords if k.arg is None]
            if "trust_remote_code" not in named and not spread:
                unsafe.append(f"{source.name}:{node.lineno}")
    assert unsafe == []


class _RunsCode:
    """Unpickling this would call open(path, 'w'): code a checkpoint file can carry."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return open, (str(self.path), "w")


def test_resume_refuses_a_checkpoint_holding_more_than_tensors(
    tiny_model_dir, tiny_data_dir, tmp_path, capsys
):
    marker = tmp_path / "code-ran"
    checkpoint = tmp_path / "crafted.ckpt"
    torch.save({"state_dict": {}, "payload": _RunsCode(marker)}, checkpoint)
    with pytest.raises(SystemExit) as exit_info:
        main(tiny_fit_args(tiny_model_dir, tiny_data_dir, tmp_path, f"--ckpt_path={checkpoint}"))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "lit-dpo: error: refused to unpickle a file that holds more than tensors" in err
    assert not marker.exists()
