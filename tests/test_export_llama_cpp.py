"""llama.cpp itself runs lit-dpo's GGUF exports and answers as lit-dpo's merged model does.

The embedded SmolLM2-135M-Instruct with a LoRA adapter of random, non-zero B (so the merge moves
every matrix) is exported as GGUF in each type and as a LoRA GGUF; llama-cpp-python (llama.cpp
built from its PyPI source, the ``gguf`` extra) loads each file. On three prompts rendered with
the chat template: llama.cpp tokenizes them as transformers does, its logits at every position
match the merged transformers model's (fp32) within the type's tolerance, and its greedy answers
of 32 tokens are the same. The LoRA GGUF applied by llama.cpp to the base's f32 GGUF gives the
merged f32 file's logits.

Run as a script, it prints the agreement table of docs/export-and-plot.md:
``python tests/test_export_llama_cpp.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

llama_cpp = pytest.importorskip(
    "llama_cpp", reason="llama-cpp-python is not installed: pip install -e '.[gguf]'"
)

sys.path.insert(0, str(Path(__file__).parent))
from conftest import make_adapter  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about autumn leaves.",
    "How many legs do 3 spiders have? Explain in 2 sentences.",
]
ANSWER_TOKENS = 32
TYPES = ("f32", "f16", "bf16", "q8_0")
# Largest |llama.cpp - transformers| over every logit of the three prompts (~150 positions x
# 49,152), against SmolLM2 logits of magnitude ~10-30. Measured on 2026-12-06 (the table in
# docs/export-and-plot.md): f32 1.0e-4, f16 0.090, bf16 0.63, q8_0 2.2; the tolerances leave
# about twice that (ten times for f32). f32: only summation order differs. f16 / bf16: the
# weights round to 11 / 8 bits of mantissa, and llama.cpp rounds the activations it multiplies
# them by too. q8_0: weights in 8-bit blocks of 32, activations quantized to 8 bits as well; a
# few logits move by 2, the typical one by 0.3, and the top token stays at 96% of positions.
LOGIT_TOLERANCE = {"f32": 1e-3, "f16": 0.25, "bf16": 1.5, "q8_0": 4.0}
# the same, for the mean |difference| (measured 1e-5, 0.012, 0.082, 0.33)
MEAN_TOLERANCE = {"f32": 1e-4, "f16": 0.03, "bf16": 0.2, "q8_0": 0.6}
# the share of prompt positions whose top token is llama.cpp's too (measured 100% but q8_0, 96%)
TOP1_AGREEMENT = {"f32": 1.0, "f16": 1.0, "bf16": 0.97, "q8_0": 0.9}


def rendered_prompts(tokenizer) -> list[list[int]]:
    return [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=True,
            return_dict=True,
        )["input_ids"]
        for prompt in PROMPTS
    ]


def hf_logits_and_answer(model, ids: list[int], eos: int) -> tuple[np.ndarray, list[int]]:
    """The merged model's logits at every prompt position, and its greedy answer."""
    answer: list[int] = []
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids]), use_cache=True)
        prompt_logits = out.logits[0].float().numpy()
        logits, past = out.logits, out.past_key_values
        while len(answer) < ANSWER_TOKENS:
            answer.append(int(logits[0, -1].argmax()))
            if answer[-1] == eos:
                break
            out = model(input_ids=torch.tensor([[answer[-1]]]), past_key_values=past)
            logits, past = out.logits, out.past_key_values
    return prompt_logits, answer


def open_llama(path: Path, lora: Path | None = None):
    # an f32 KV cache (llama.cpp's default is f16), so the file's type is the only rounding
    return llama_cpp.Llama(
        model_path=str(path),
        lora_path=str(lora) if lora else None,
        n_ctx=256,
        n_batch=256,
        n_threads=1,
        logits_all=True,
        type_k=0,
        type_v=0,
        verbose=False,
    )


def llama_logits_and_answer(llm, ids: list[int], eos: int) -> tuple[np.ndarray, list[int]]:
    """llama.cpp's logits at every prompt position, and its greedy answer (argmax, no sampler)."""
    llm.reset()
    llm.eval(ids)
    prompt_logits = np.array(llm.scores[: len(ids)], dtype=np.float32)
    answer: list[int] = []
    while len(answer) < ANSWER_TOKENS:
        answer.append(int(np.argmax(llm.scores[llm.n_tokens - 1])))
        if answer[-1] == eos:
            break
        llm.eval([answer[-1]])
    return prompt_logits, answer


def agreement(expected: list, got: list) -> dict[str, float]:
    """Max and mean |logit difference|, top-1 agreement over prompt positions, and how many
    answer tokens agree before the first difference (of how many)."""
    pairs = list(zip(expected, got, strict=True))
    diffs = np.concatenate([np.abs(e[0] - g[0]).ravel() for e, g in pairs])
    same_top = np.concatenate([e[0].argmax(-1) == g[0].argmax(-1) for e, g in pairs])
    agreed = total = 0
    for (_, answer), (_, other) in pairs:
        differ = [i for i, (a, b) in enumerate(zip(answer, other, strict=False)) if a != b]
        agreed += differ[0] if differ else min(len(answer), len(other))
        total += len(answer)
    return {
        "max": float(diffs.max()),
        "mean": float(diffs.mean()),
        "top1": float(same_top.mean()),
        "answer_agreed": agreed,
        "answer_tokens": total,
    }


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict:
    return export_all(tmp_path_factory.mktemp("gguf-smollm2"))


def export_all(folder: Path) -> dict:
    """The merged model's answers, and every export's file, of the embedded model + adapter."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lit_dpo.export import export
    from lit_dpo.export.gguf_writer import write_model_gguf
    from lit_dpo.models.inference import load_for_inference
    from lit_dpo.sources import DEFAULT_MODEL, resolve_model

    base_dir = Path(resolve_model(DEFAULT_MODEL))
    adapter = make_adapter(base_dir, folder / "adapter", r=8, std=0.05)
    files = {t: export(str(adapter), str(folder / f"model-{t}.gguf"), model=DEFAULT_MODEL,
                       format="gguf", gguf_type=t) for t in TYPES}
    files["lora"] = export(str(adapter), str(folder / "lora.gguf"), model=DEFAULT_MODEL,
                           format="gguf_lora")
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(adapter)
    files["base"] = write_model_gguf(folder / "base-f32.gguf", base.state_dict(), base.config,
                                     tokenizer, "f32", name="base")
    loaded = load_for_inference(adapter, DEFAULT_MODEL, quantization="none")
    merged = loaded.model.merge_and_unload().eval()
    prompts = rendered_prompts(tokenizer)
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    expected = [hf_logits_and_answer(merged, ids, eos) for ids in prompts]
    base_answers = [hf_logits_and_answer(base, ids, eos) for ids in prompts]
    return {"files": files, "tokenizer": tokenizer, "prompts": prompts, "eos": eos,
            "expected": expected, "base": base_answers}


def measure(exported: dict, gguf_type: str) -> dict[str, float]:
    files, eos = exported["files"], exported["eos"]
    if gguf_type == "lora":
        llm = open_llama(files["base"], lora=files["lora"])
    else:
        llm = open_llama(files[gguf_type])
    got = [llama_logits_and_answer(llm, ids, eos) for ids in exported["prompts"]]
    return agreement(exported["expected"], got) | {"_got": got}


def test_the_adapter_moves_the_model(exported):
    moved = agreement(exported["base"], exported["expected"])
    assert moved["max"] > 1.0 and moved["answer_agreed"] < moved["answer_tokens"], moved


def test_llama_cpp_tokenizes_the_rendered_prompts_as_transformers(exported):
    llm = open_llama(exported["files"]["q8_0"])
    tokenizer = exported["tokenizer"]
    for ids in exported["prompts"]:
        text = tokenizer.decode(ids)
        assert llm.tokenize(text.encode(), add_bos=False, special=True) == ids
    assert llm.metadata["tokenizer.chat_template"] == tokenizer.chat_template


@pytest.mark.parametrize("gguf_type", TYPES)
def test_llama_cpp_logits_and_answers_match_the_merged_model(exported, gguf_type):
    found = measure(exported, gguf_type)
    print("\n" + table_row(gguf_type, found, exported["files"][gguf_type]))
    assert found["max"] < LOGIT_TOLERANCE[gguf_type], found["max"]
    assert found["mean"] < MEAN_TOLERANCE[gguf_type], found["mean"]
    assert found["top1"] >= TOP1_AGREEMENT[gguf_type], found["top1"]
    if gguf_type in ("f32", "f16"):
        answers = [answer for _, answer in found["_got"]]
        assert answers == [answer for _, answer in exported["expected"]]
        assert sum(map(len, answers)) > ANSWER_TOKENS  # not all stopped at once


def test_lora_gguf_on_the_base_gguf_matches_the_merged_gguf(exported):
    with_lora = measure(exported, "lora")
    print("\n" + table_row("lora", with_lora, exported["files"]["lora"]))
    merged = measure(exported, "f32")
    pairs = zip(with_lora["_got"], merged["_got"], strict=True)
    difference = max(float(np.abs(a[0] - b[0]).max()) for a, b in pairs)
    # the same fp32 numbers, B @ A applied beside W instead of added into it
    assert difference < LOGIT_TOLERANCE["f32"], difference
    assert [a for _, a in with_lora["_got"]] == [a for _, a in merged["_got"]]


@pytest.mark.parametrize("model_type", ["llama", "qwen2"])
def test_tiny_llama_and_qwen2_files_run_in_llama_cpp_as_in_transformers(tmp_path, model_type):
    """Both layouts (Llama's permuted Q/K; Qwen2's biases, padded vocabulary and RoPE base 1e6),
    read by llama.cpp's own graph code, with tied embeddings."""
    from test_export_gguf import merged_model, tiny_model

    from lit_dpo.export import export

    base = tiny_model(tmp_path / "base", model_type)
    adapter = make_adapter(base, tmp_path / "adapter")
    out = export(str(adapter), str(tmp_path / "tiny.gguf"), format="gguf", gguf_type="f32")
    ids = torch.randint(3, 320, (40,), generator=torch.Generator().manual_seed(0)).tolist()
    expected = logits_of(merged_model(base, adapter), ids)
    llm = open_llama(out)
    llm.eval(ids)
    got = np.array(llm.scores[: len(ids)], dtype=np.float32)
    # random weights (std 0.02) give logits of magnitude ~0.1-0.6; fp32 in both, summation
    # order apart
    assert np.abs(expected).max() > 0.3
    assert np.abs(got - expected).max() < 1e-4


def logits_of(model, ids: list[int]) -> np.ndarray:
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0].float().numpy()


def main() -> None:
    """Print the agreement table (docs/export-and-plot.md) for this machine's llama.cpp."""
    import datetime
    import tempfile

    data = export_all(Path(tempfile.mkdtemp(prefix="gguf-agreement-")))
    print(f"measured {datetime.date.today()} with llama-cpp-python {llama_cpp.__version__}, "
          "`python tests/test_export_llama_cpp.py`")
    print(TABLE_HEAD)
    for name in (*TYPES, "lora"):
        print(table_row(name, measure(data, name), data["files"][name]))


TABLE_HEAD = (
    "| file | size | max abs logit diff | mean abs diff | same top token | "
    "greedy answer tokens agreeing |\n|---|---|---|---|---|---|"
)


def table_row(name: str, found: dict, file: Path) -> str:
    """One row of the agreement table: a GGUF type (or the LoRA on the base) against the merged
    transformers model."""
    label = f"`--gguf_type {name}`" if name != "lora" else "base f32 GGUF + LoRA GGUF"
    size = Path(file).stat().st_size / 1e6
    return (
        f"| {label} | {size:.1f} MB | {found['max']:.4f} | {found['mean']:.5f} | "
        f"{found['top1']:.1%} | {found['answer_agreed']}/{found['answer_tokens']} |"
    )


if __name__ == "__main__":
    main()
