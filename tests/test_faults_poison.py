"""No kernel reads memory nothing wrote: results are bit-identical under a poisoned allocator.

glibc fills each block ``malloc`` hands out with one byte and each freed block with another when
``MALLOC_PERTURB_`` is set (the byte given and its complement), and every CPU tensor comes from
``malloc``. A kernel that reads memory before writing it (an ``empty`` output it fills only in
part, a tail past a vector width) then sees a different byte in each run, and its results change.
``tests/poisoned_steps.py`` runs three DPO training steps (losses, log-probs of policy and
reference, every LoRA gradient), a validation pass and a greedy generation in a fresh process; these
tests run it with two poison bytes and with each of lit-dpo's ways of handing freed memory back
(``model.efficiency.return_freed_memory``: ``promptly`` maps each activation on its own, so its
pages come fresh and zeroed from the kernel unless poisoned), and require the same bits from every
run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lit_dpo.sources import DEFAULT_MODEL, resolve_model

REPO = Path(__file__).resolve().parents[1]
# (poison byte, model.efficiency.return_freed_memory): two bytes, each allocator setting
RUNS = [(0x11, "keep"), (0xEE, "between_steps"), (0xEE, "promptly")]


def _poisoned_run(model: Path, poison: int, freed_memory: str, steps: int) -> dict:
    env = {
        **os.environ,
        "MALLOC_PERTURB_": str(poison),
        "PYTHONPATH": str(REPO),
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    done = subprocess.run(
        [sys.executable, str(REPO / "tests" / "poisoned_steps.py"), str(model), freed_memory,
         str(steps)],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads(done.stdout.splitlines()[-1])
    # not vacuous: memory nobody wrote holds the poison (glibc fills new blocks with its
    # complement), so a kernel reading it would see a different byte in each run
    assert record.pop("unwritten_byte") == poison ^ 0xFF
    return record


def _differences(first: dict, other: dict) -> list[str]:
    """What differs between two runs, by step and tensor name."""
    found = []
    for step, (a, b) in enumerate(zip(first["train"], other["train"], strict=True)):
        for part in ("logps", "grads"):
            found += [f"step {step} {k}" for k in a[part] if a[part][k] != b[part][k]]
        if a["loss_bits"] != b["loss_bits"]:
            found.append(f"step {step} loss {a['loss']!r} vs {b['loss']!r}")
    found += [f"val {k}" for k in first["val"] if first["val"][k] != other["val"][k]]
    if first["generation"] != other["generation"]:
        found.append(f"generation {first['generation']} vs {other['generation']}")
    return found


def _check_identical(model: Path, steps: int) -> None:
    first, *others = [_poisoned_run(model, poison, mode, steps) for poison, mode in RUNS]
    assert len(first["train"]) == steps and first["train"][0]["grads"]
    assert abs(first["train"][0]["loss"] - 0.6931) > 1e-3, "policy equals reference: vacuous"
    for (poison, mode), other in zip(RUNS[1:], others, strict=True):
        differences = _differences(first, other)
        assert not differences, f"poison {poison:#x}, {mode}: {differences[:10]}"


BNB_PROBE = """
import hashlib, json, torch, bitsandbytes as bnb, bitsandbytes.functional as F
torch.manual_seed(0)
digests = []
for shape in [(576, 576), (1536, 576), (192, 576), (768, 576)]:
    junk = torch.randn(2 * shape[0], shape[1]); del junk  # freed memory for the next blocks
    weight = torch.randn(shape)
    packed, state = F.quantize_4bit(weight, quant_type="nf4", compress_statistics=True)
    x = torch.randn(3, 7, shape[1], requires_grad=True)
    y = bnb.matmul_4bit(x, packed.t(), quant_state=state)
    y.sum().backward()
    for t in (packed, state.absmax, F.dequantize_4bit(packed, state), y, x.grad):
        data = t.detach().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes()
        digests.append(hashlib.sha1(data).hexdigest())
print(json.dumps([torch.empty(1 << 20, dtype=torch.uint8)[-1].item(), digests]))
"""


@pytest.mark.slow
def test_bitsandbytes_4bit_cpu_kernels_do_not_read_unwritten_memory():
    """bitsandbytes' CPU nf4 path at SmolLM2's layer shapes: quantize (double quantization),
    dequantize (a C kernel filling a ``torch.empty``) and ``matmul_4bit`` forward and backward
    give the same bytes whatever the poison, with the mmap threshold at 1 GB so that every block
    comes from the poisoned heap."""
    pytest.importorskip("bitsandbytes")
    results = []
    for poison in (0x11, 0xEE):
        env = {**os.environ, "MALLOC_PERTURB_": str(poison), "MALLOC_MMAP_THRESHOLD_": str(1 << 30),
               "OMP_NUM_THREADS": "1"}
        done = subprocess.run([sys.executable, "-c", BNB_PROBE], env=env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        unwritten, digests = json.loads(done.stdout.splitlines()[-1])
        assert unwritten == poison ^ 0xFF
        results.append(digests)
    assert results[0] == results[1]


@pytest.mark.slow
def test_tiny_model_steps_validation_and_generation_do_not_read_unwritten_memory(tiny_model_dir):
    _check_identical(tiny_model_dir, steps=3)


@pytest.mark.slow
def test_smollm2_steps_validation_and_generation_do_not_read_unwritten_memory():
    """The embedded SmolLM2-135M in 4-bit: bitsandbytes' CPU dequantize kernel writes into an
    ``empty`` output, the chunked head and the packed, masked attention run at real sizes."""
    _check_identical(Path(resolve_model(DEFAULT_MODEL)), steps=2)
