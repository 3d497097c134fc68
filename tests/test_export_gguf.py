"""lit-dpo export --format gguf / gguf_lora on tiny random Llama and Qwen2 models: llama.cpp's
layout (names, Q/K rows, types, tokenizer metadata), the Modelfile, the refusals, and the round
trip through lit-dpo's own GGUF loader. llama.cpp itself runs the files in
test_export_llama_cpp.py."""

from __future__ import annotations

import gguf
import numpy as np
import pytest
import torch
from conftest import CHATML, ROWS, cli_error, make_adapter

from lit_dpo.cli import main
from lit_dpo.export.gguf_layout import permute_rows
from lit_dpo.export.gguf_writer import write_model_gguf
from lit_dpo.export.modelfile import chatml_default_system, go_template, modelfile
from lit_dpo.sources import resolve_model

pytestmark = pytest.mark.usefixtures("one_thread")

# Qwen2's pre-tokenizer regex, as its tokenizer.json holds it
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
DEFAULT_SYSTEM_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a tiny helper.<|im_end|>\\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def bpe_tokenizer(style: str, chat_template: str = CHATML):
    """A byte-level BPE ChatML tokenizer trained on the fixture text, split as GPT-2 (``gpt-2``)
    or as Qwen2 (``qwen2``), the two families llama.cpp tokenizes as ``gpt2``."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    if style == "qwen2":
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    else:
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    corpus = [" ".join(row) for row in ROWS] + ["system user assistant\nYou are helpful. 0 1 2 3"]
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(corpus, trainer)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        unk_token="<|endoftext|>",
    )
    wrapped.chat_template = chat_template
    return wrapped


def tiny_model(path, model_type: str):
    """A 2-layer, hidden-64 model of ``model_type`` with random weights (biases included, so
    Qwen2's q/k/v biases are checked), tied embeddings and a 384-row embedding: past the
    tokenizer's 320 tokens, as Qwen2 pads its own."""
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    tokenizer = bpe_tokenizer("qwen2" if model_type == "qwen2" else "gpt-2")
    config_class, model_class = {
        "llama": (LlamaConfig, LlamaForCausalLM),
        "qwen2": (Qwen2Config, Qwen2ForCausalLM),
    }[model_type]
    torch.manual_seed(0)
    config = config_class(
        vocab_size=384,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        rope_theta=10000.0 if model_type == "llama" else 1000000.0,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    model = model_class(config)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith(".bias"):
                parameter.normal_(0, 0.5)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def tiny(request, tmp_path_factory):
    """(model type, base folder, adapter folder with random non-zero LoRA B)."""
    model_type = request.param
    base = tiny_model(tmp_path_factory.mktemp(f"tiny-{model_type}"), model_type)
    adapter = make_adapter(base, tmp_path_factory.mktemp(f"adapter-{model_type}"))
    return model_type, base, adapter


def merged_model(base, adapter):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    return PeftModel.from_pretrained(model, adapter).merge_and_unload().eval()


def logits(model, input_ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=input_ids).logits.float()


def field(reader: gguf.GGUFReader, key: str):
    return reader.fields[key].contents()


def tensors(reader: gguf.GGUFReader) -> dict[str, np.ndarray]:
    """Every tensor of a GGUF file, dequantized to fp32, in transformers' row-major shape."""
    return {
        t.name: gguf.quants.dequantize(t.data, t.tensor_type).reshape(
            [int(n) for n in reversed(t.shape)]
        )
        for t in reader.tensors
    }


def test_permute_rows_interleaves_each_heads_halves():
    """Two heads of 4 rows: per head ``[x0, x1, y0, y1]`` -> ``[x0, y0, x1, y1]`` (llama.cpp's
    RoPE rotates neighbouring pairs, transformers' the two halves)."""
    rows = np.arange(8.0)[:, None] * np.ones((1, 3))
    assert permute_rows(rows, 2)[:, 0].tolist() == [0, 2, 1, 3, 4, 6, 5, 7]
    assert permute_rows(np.arange(8.0), 2).tolist() == [0, 2, 1, 3, 4, 6, 5, 7]
    with pytest.raises(ValueError, match="cannot split 6 rows into 2 heads"):
        permute_rows(np.zeros((6, 2)), 2)


def test_f32_gguf_holds_llama_cpp_layout_and_reads_back_with_the_same_logits(tiny, tmp_path):
    model_type, base, adapter = tiny
    out = tmp_path / "model.gguf"
    main(["export", f"--adapter={adapter}", "--format=gguf", "--gguf_type=f32", f"--out={out}"])
    merged = merged_model(base, adapter)
    reader = gguf.GGUFReader(out)

    assert field(reader, "general.architecture") == model_type
    assert field(reader, "general.type") == "model"
    assert field(reader, "general.file_type") == gguf.LlamaFileType.ALL_F32
    assert field(reader, f"{model_type}.block_count") == 2
    assert field(reader, f"{model_type}.attention.head_count_kv") == 2
    assert field(reader, f"{model_type}.rope.freq_base") == (
        10000.0 if model_type == "llama" else 1000000.0
    )
    assert field(reader, "tokenizer.ggml.model") == "gpt2"
    assert field(reader, "tokenizer.ggml.pre") == ("qwen2" if model_type == "qwen2" else "gpt-2")
    tokens = field(reader, "tokenizer.ggml.tokens")
    assert len(tokens) == 384 and tokens[1] == "<|im_start|>" and tokens[383] == "[PAD383]"
    types = field(reader, "tokenizer.ggml.token_type")
    assert (types[1], types[40], types[383]) == (
        gguf.TokenType.CONTROL, gguf.TokenType.NORMAL, gguf.TokenType.UNUSED
    )
    assert len(field(reader, "tokenizer.ggml.merges")) > 10
    assert field(reader, "tokenizer.ggml.bos_token_id") == 1
    assert field(reader, "tokenizer.ggml.eos_token_id") == 2
    assert field(reader, "tokenizer.ggml.add_bos_token") is False
    assert field(reader, "tokenizer.chat_template") == CHATML

    stored = tensors(reader)
    # tied embeddings: no output.weight, llama.cpp reuses token_embd
    assert "output.weight" not in stored and "token_embd.weight" in stored
    assert ("blk.0.attn_q.bias" in stored) == (model_type == "qwen2")
    weights = {name: p.detach().numpy() for name, p in merged.state_dict().items()}
    q = weights["model.layers.1.self_attn.q_proj.weight"]
    k = weights["model.layers.1.self_attn.k_proj.weight"]
    if model_type == "llama":  # 4 query heads, 2 key-value heads of 16 rows
        q, k = permute_rows(q, 4), permute_rows(k, 2)
    np.testing.assert_array_equal(stored["blk.1.attn_q.weight"], q)
    np.testing.assert_array_equal(stored["blk.1.attn_k.weight"], k)
    np.testing.assert_array_equal(
        stored["blk.0.ffn_down.weight"], weights["model.layers.0.mlp.down_proj.weight"]
    )

    # the round trip: --model FILE.gguf, through lit-dpo's GGUF loader
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = resolve_model(str(out))
    reread = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    input_ids = torch.randint(3, 320, (2, 24), generator=torch.Generator().manual_seed(0))
    base_model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32).eval()
    expected = logits(merged, input_ids)
    assert (expected - logits(base_model, input_ids)).abs().max() > 0.1, "the adapter is a no-op"
    # the same fp32 numbers, read back: only the graph's summation order may differ
    assert (logits(reread, input_ids) - expected).abs().max() < 1e-5
    tokenizer = AutoTokenizer.from_pretrained(folder)
    messages = [{"role": "user", "content": "What is 2 + 2? Paris, 2024."}]
    original = AutoTokenizer.from_pretrained(adapter)
    assert tokenizer.apply_chat_template(messages, tokenize=False) == (
        original.apply_chat_template(messages, tokenize=False)
    )
    text = original.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert tokenizer(text)["input_ids"] == original(text)["input_ids"]


@pytest.mark.parametrize("gguf_type", ["f16", "bf16", "q8_0"])
def test_smaller_types_store_matrices_in_that_type_and_vectors_in_f32(
    tiny, tmp_path, gguf_type
):
    model_type, base, adapter = tiny
    if model_type == "qwen2":
        pytest.skip("the types are the architecture's; Llama checks them")
    out = tmp_path / f"model-{gguf_type}.gguf"
    main(["export", f"--adapter={adapter}", "--format=gguf", f"--gguf_type={gguf_type}",
          f"--out={out}"])
    reader = gguf.GGUFReader(out)
    kinds = {t.name: t.tensor_type.name for t in reader.tensors}
    assert kinds["blk.0.attn_norm.weight"] == "F32"
    assert kinds["blk.0.ffn_up.weight"] == gguf_type.upper()
    assert kinds["token_embd.weight"] == gguf_type.upper()

    merged = merged_model(base, adapter)
    up = merged.state_dict()["model.layers.0.mlp.up_proj.weight"].numpy()
    got = tensors(reader)["blk.0.ffn_up.weight"]
    # f16: 11 bits of mantissa; bf16: 8; q8_0: each block of 32 rounds to steps d = absmax / 127
    # (error d / 2), with d itself stored in f16 (127 steps of a 2^-11 error: 0.062 d more)
    error = np.abs(got - up)
    if gguf_type == "q8_0":
        scales = np.abs(up).reshape(-1, 32).max(axis=1, keepdims=True) / 127
        assert (error.reshape(-1, 32) <= scales * (0.5 + 127 * 2**-11)).all()
        assert error.max() > 0, "q8_0 stored the weights exactly: not quantized"
    else:
        relative = {"f16": 2**-11, "bf16": 2**-8}[gguf_type]
        assert (error <= np.abs(up) * relative + 1e-7).all()
    assert (tmp_path / f"model-{gguf_type}.Modelfile").is_file()


def test_lora_gguf_plus_base_gguf_is_the_merged_gguf(tiny, tmp_path):
    """llama.cpp computes ``W + B @ A * alpha / r`` from the base GGUF and the adapter GGUF; done
    here in numpy on the stored tensors, it gives the merged file's weights."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_type, base, adapter = tiny
    lora_out, merged_out, base_out = (tmp_path / f"{n}.gguf" for n in ("lora", "merged", "base"))
    main(["export", f"--adapter={adapter}", "--format=gguf_lora", f"--out={lora_out}"])
    main(["export", f"--adapter={adapter}", "--format=gguf", "--gguf_type=f32",
          f"--out={merged_out}"])
    base_model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    write_model_gguf(base_out, base_model.state_dict(), base_model.config,
                     AutoTokenizer.from_pretrained(base), "f32", name="base")

    lora = gguf.GGUFReader(lora_out)
    assert field(lora, "general.type") == "adapter"
    assert field(lora, "general.architecture") == model_type
    assert field(lora, "adapter.type") == "lora"
    assert field(lora, "adapter.lora.alpha") == 8.0  # make_adapter: r 4, alpha 2 r
    shapes = {t.name: [int(n) for n in t.shape] for t in lora.tensors}
    # GGUF shapes list the fastest dimension first: A is (in, r), B is (r, out)
    assert shapes["blk.0.attn_q.weight.lora_a"] == [64, 4]
    assert shapes["blk.0.attn_k.weight.lora_b"] == [4, 32]
    assert shapes["blk.1.ffn_down.weight.lora_a"] == [128, 4]
    assert len(shapes) == 2 * 7 * 2  # 7 linear modules a layer, 2 layers, A and B
    lora_tensors, merged_tensors = tensors(lora), tensors(gguf.GGUFReader(merged_out))
    base_tensors = tensors(gguf.GGUFReader(base_out))
    changed = 0
    for name, merged_weight in merged_tensors.items():
        expected = base_tensors[name]
        if name + ".lora_a" in lora_tensors:
            update = lora_tensors[name + ".lora_b"] @ lora_tensors[name + ".lora_a"] * 8.0 / 4
            expected = expected + update
            changed += 1
        np.testing.assert_allclose(merged_weight, expected, atol=1e-6, err_msg=name)
    assert changed == 14


def test_modelfile_translates_chatml_with_its_default_system_prompt():
    plain = bpe_tokenizer("gpt-2")
    assert chatml_default_system(plain) == (True, None)
    with_system = bpe_tokenizer("gpt-2", DEFAULT_SYSTEM_TEMPLATE)
    assert chatml_default_system(with_system) == (True, "You are a tiny helper.")
    assert go_template("You are a tiny helper.") == (
        '{{- if or (not .Messages) (ne (index .Messages 0).Role "system") }}<|im_start|>system\n'
        "You are a tiny helper.<|im_end|>\n{{ end }}"
        "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}"
        "<|im_start|>assistant\n"
    )
    text = modelfile("m.gguf", with_system, "m: a title\nA LoRA adapter merged into it.")
    assert text.splitlines()[:3] == [
        "# m: a title", "# A LoRA adapter merged into it.", "FROM ./m.gguf"
    ]
    assert 'TEMPLATE """{{- if or' in text
    assert text.endswith('PARAMETER stop "<|im_start|>"\nPARAMETER stop "<|im_end|>"\n')

    other = bpe_tokenizer("gpt-2", "{% for m in messages %}[{{ m['content'] }}]{% endfor %}")
    assert chatml_default_system(other) == (False, None)
    assert "TEMPLATE" not in modelfile("m.gguf", other, "s").split("lit-dpo wrote no")[0]


def test_gguf_export_refuses_other_architectures_and_bad_outs(tmp_path, capsys):
    from transformers import MistralConfig, MistralForCausalLM

    tokenizer = bpe_tokenizer("gpt-2")
    config = MistralConfig(vocab_size=320, hidden_size=32, intermediate_size=64,
                           num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1)
    base = tmp_path / "mistral"
    MistralForCausalLM(config).save_pretrained(base)
    tokenizer.save_pretrained(base)
    adapter = make_adapter(base, tmp_path / "adapter")
    capsys.readouterr()  # the bars of saving the fixture

    for format_ in ("gguf", "gguf_lora"):
        err = cli_error(["export", f"--adapter={adapter}", f"--format={format_}",
                         f"--out={tmp_path / 'm.gguf'}"], capsys)
        assert "supports the architectures llama, qwen2, not 'mistral'" in err
        assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "m.gguf").exists()
    err = cli_error(["export", f"--adapter={adapter}", "--format=gguf",
                     f"--out={tmp_path / 'm.bin'}"], capsys)
    assert "a GGUF export is one file; name it FILE.gguf" in err
    (tmp_path / "old.gguf").write_text("keep")
    err = cli_error(["export", f"--adapter={adapter}", "--format=gguf",
                     f"--out={tmp_path / 'old.gguf'}"], capsys)
    assert "already exists; pick a new file name" in err
    assert (tmp_path / "old.gguf").read_text() == "keep"
