"""Peak memory of one DPO training step, from the model's shape and the run's settings (pure maths).

A step runs the policy over the batch with gradients, the same network with adapters off (or with a
frozen reference adapter on) and no gradient (the reference), then backward. The peak is at the
start of backward: every activation the policy saved is alive, and the log-prob maths has just made
its gradients. With ``tokens`` the
padded tokens the policy sees in a step (2B rows, or B rows when a pair shares its prompt):

- quantized weights: NF4 is 4 bits a weight plus block scales (double quantization: an 8-bit scale
  per 64 weights, an fp32 scale per 256 scales);
- other weights: embeddings, untied output head and norms, which QLoRA casts to fp32;
- LoRA: weights and gradients (fp32) and optimizer state;
- a reference adapter (``model.load.reference adapter``): a second set of LoRA weights, fp32,
  frozen (no gradient, no optimizer state); its pass runs without gradient, so it saves no
  activations;
- activations: what autograd saves per decoder layer and token (``SAVED_PER_LAYER``, counted with
  ``torch.autograd.graph.saved_tensors_hooks``), or only each layer's input under gradient
  checkpointing;
- log-probs: with full logits (``logps_chunk_size`` null), the (tokens, V) logits, their fp32 copy
  and ``LOGIT_GRAD_COPIES`` fp32 gradients of that size made in backward; with the chunked head,
  ``chunk`` rows of fp32 logits at a time and a (tokens, H) gradient kept for backward;
- runtime: Python and the libraries on CPU, the CUDA context on a GPU;
- on CPU, two more: the model file, which stays memory-mapped while weights point into it, and
  the freed memory glibc keeps. With 4-bit weights ``load_policy`` reads the file tensor by tensor
  (or copies the few unquantized weights out of its map), so no map stays open and the file does
  not count; without quantization the map holds the weights and does. The activations a forward
  makes are many mid-sized tensors that glibc, left to itself, serves from its heap and, once freed,
  keeps resident and fragmented; the resident set of such a run grows by
  ``CPU_RETAINED_FRACTION[mode]`` of them over the first steps, by what
  ``DPOModule(return_freed_memory=mode)`` has glibc do with them: ``keep`` keeps them,
  ``between_steps`` (the default) trims the heap after each step, ``promptly`` unmaps them when
  freed as well, which leaves none measurable (calibrated on measured runs: see
  docs/preflight-and-health.md). Tensors over 32 MiB, like full logits, are unmapped when freed
  either way and do not count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from lit_dpo.device import GIB
from lit_dpo.host_memory import DEFAULT_FREED_MEMORY, freed_memory_mode

# Bytes per NF4 weight: 4 bits, one 8-bit absmax per block of 64, one fp32 absmax per 256 blocks.
NF4_BYTES_PER_WEIGHT = 0.5 + 1 / 64 + 4 / (64 * 256)
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

# Tensors autograd saves per decoder layer and token, as (count at the activation width, count in
# fp32), by per-token size: hidden (h), attention (heads * head_dim), intermediate (MLP width).
# Counted on a 4-bit Llama with LoRA on every projection. Under 16-bit autocast the residual stream
# stays fp32 (QLoRA keeps the embeddings fp32 and bitsandbytes returns its input's dtype), so many
# tensors stay fp32; LoRA dropout adds a dropped copy of each projection's input.
SAVED_PER_LAYER = {
    # (16-bit autocast, lora dropout) -> {size: (activation-width count, fp32 count)}
    (False, False): {"hidden": (4, 0), "attention": (4, 0), "intermediate": (4, 0)},
    (False, True): {"hidden": (12, 0), "attention": (6, 0), "intermediate": (5, 0)},
    (True, False): {"hidden": (5, 2), "attention": (5, 0), "intermediate": (1, 3)},
    (True, True): {"hidden": (5, 7), "attention": (5, 1), "intermediate": (1, 4)},
}
# fp32 (tokens, V) tensors alive at once in backward beside the saved logits, with full logits:
# the gradients of logsumexp and of the gather, and their sum.
LOGIT_GRAD_COPIES = 3
# Python + torch + Lightning + transformers + datasets + a tokenizer in one process (measured).
CPU_RUNTIME_BYTES = 0.6 * GIB
# CUDA context and kernels, which the caching allocator does not count but the card holds.
CUDA_RUNTIME_BYTES = 0.5 * GIB
# Freed memory glibc keeps resident past the live peak, as a share of the activations one forward
# makes, by ``return_freed_memory`` (calibrated on CPU runs of SmolLM2 with configs/cpu.yaml; see
# docs/preflight-and-health.md): ``keep``, left to itself (fitted on four runs); ``between_steps``,
# the heap trimmed after each step, so only what one step's own frees leave behind (one run: 4.17
# GiB measured, 4.166 estimated); ``promptly``, freed blocks unmapped as well (a run peaked
# within 1% of the estimate without this term).
CPU_RETAINED_FRACTION = {"keep": 0.9, "between_steps": 0.85, "promptly": 0.0}


@dataclass(frozen=True)
class ModelShape:
    """What memory depends on in a decoder-only transformer's config."""

    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    tie_word_embeddings: bool
    max_position_embeddings: int

    @classmethod
    def from_config(cls, config: Any) -> ModelShape:
        """From a transformers config or a config.json dict (Llama, Qwen2, Mistral key names).

        Raises:
            ValueError: a key every decoder-only config has is missing.
        """
        if not isinstance(config, dict):
            config = config.to_dict()
        config = config.get("text_config") or config
        missing = [
            key
            for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size")
            if not config.get(key)
        ]
        if missing:
            raise ValueError(f"model config lacks {', '.join(missing)}: not a decoder-only LM?")
        hidden, heads = config["hidden_size"], config["num_attention_heads"]
        return cls(
            hidden_size=hidden,
            num_layers=config["num_hidden_layers"],
            num_heads=heads,
            num_kv_heads=config.get("num_key_value_heads") or heads,
            head_dim=config.get("head_dim") or hidden // heads,
            intermediate_size=config.get("intermediate_size") or 4 * hidden,
            vocab_size=config["vocab_size"],
            tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
            max_position_embeddings=config.get("max_position_embeddings") or 0,
        )


# The published config of Qwen/Qwen2-0.5B-Instruct, for estimates without the hub.
QWEN2_0_5B_INSTRUCT = ModelShape(
    hidden_size=896,
    num_layers=24,
    num_heads=14,
    num_kv_heads=2,
    head_dim=64,
    intermediate_size=4864,
    vocab_size=151936,
    tie_word_embeddings=True,
    max_position_embeddings=32768,
)


@dataclass(frozen=True)
class StepPlan:
    """The settings of a training step that memory depends on.

    Args:
        batch_size: pairs per batch.
        seq_len: padded tokens of a row in the longest batch (prompt + reply, or prompt + both
            replies when pairs share their prompt).
        rows_per_pair: 2 (chosen and rejected rows) or 1 (``share_prompt``: one packed row).
        quantization: ``nf4`` or ``none``.
        weight_bytes: bytes of a base weight without quantization (the compute dtype's).
        autocast_16bit: activations in fp16/bf16 (``16-mixed``, ``bf16-mixed``, 16-bit compute).
        lora_r: LoRA rank.
        lora_targets: adapted projections of each layer.
        lora_dropout: LoRA dropout above zero (each projection keeps a dropped input copy).
        reference_lora_parameters: weights of the frozen reference adapter; 0 when the reference
            is the base (adapters off).
        gradient_checkpointing: keep only each layer's input and recompute the rest in backward.
        optimizer_state_bytes: optimizer bytes per trainable weight (8 AdamW, 2 8-bit AdamW).
        logps_chunk_size: rows of logits made at a time by the chunked output head; None for
            full (tokens, V) logits.
        device: ``cpu`` or ``cuda``: which runtime and allocator terms apply.
        model_file_bytes: size of the model's weight files (on CPU, without quantization, they
            stay memory-mapped).
        return_freed_memory: on CPU, what glibc does with freed activations
            (``lit_dpo.host_memory.FreedMemory``, DPOModule's setting).
        batch_tokens: tokens a step's policy runs, where known to be fewer than
            ``batch_size * rows_per_pair * seq_len`` (a CPU lays uneven packed pairs end to end
            without padding: ``lit_dpo.train.forward``); None: the padded rows.
    """

    batch_size: int
    seq_len: int
    rows_per_pair: int = 2
    quantization: str = "nf4"
    weight_bytes: int = 4
    autocast_16bit: bool = False
    lora_r: int = 16
    lora_targets: tuple[str, ...] = PROJECTIONS
    lora_dropout: bool = False
    reference_lora_parameters: int = 0
    gradient_checkpointing: bool = False
    optimizer_state_bytes: float = 8.0
    logps_chunk_size: int | None = None
    device: str = "cpu"
    model_file_bytes: float = 0.0
    return_freed_memory: str = DEFAULT_FREED_MEMORY
    batch_tokens: int | None = None

    @property
    def tokens(self) -> int:
        """Tokens the policy runs in one step: the padded rows, or ``batch_tokens``."""
        padded = self.batch_size * self.rows_per_pair * self.seq_len
        return padded if self.batch_tokens is None else min(padded, self.batch_tokens)


def row_lengths(
    prompt: list[int], chosen: list[int], rejected: list[int], packed: bool
) -> list[int]:
    """Tokens of the row(s) a pair becomes: the longer of prompt + reply, or the packed row
    (prompt once, both replies) under ``share_prompt``. Lists hold per-pair token counts."""
    if packed:
        return [p + c + r for p, c, r in zip(prompt, chosen, rejected, strict=True)]
    return [p + max(c, r) for p, c, r in zip(prompt, chosen, rejected, strict=True)]


@dataclass(frozen=True)
class MemoryEstimate:
    """Peak bytes of one training step, by component."""

    quantized_weights: float
    other_weights: float
    lora: float
    activations: float
    logps: float
    runtime: float
    model_file: float = 0.0
    cpu_retained: float = 0.0
    reference_lora: float = 0.0

    @property
    def total(self) -> float:
        return sum(value for _, value in self.rows())

    def rows(self) -> list[tuple[str, float]]:
        """(label, bytes) for a table, in the order a reader adds them up."""
        rows = [
            ("quantized base weights", self.quantized_weights),
            ("other weights (embeddings, norms)", self.other_weights),
            ("LoRA weights + grads + optimizer", self.lora),
        ]
        if self.reference_lora:
            rows.append(("reference LoRA weights (frozen)", self.reference_lora))
        rows += [
            ("activations", self.activations),
            ("logits / log-prob gradients", self.logps),
            ("runtime (libraries, CUDA context)", self.runtime),
        ]
        if self.model_file:
            rows.append(("model file, memory-mapped (CPU)", self.model_file))
        if self.cpu_retained:
            rows.append(("freed memory glibc keeps (CPU)", self.cpu_retained))
        return rows


def projection_shapes(shape: ModelShape) -> dict[str, tuple[int, int]]:
    """(in_features, out_features) of each projection of one decoder layer."""
    h, i = shape.hidden_size, shape.intermediate_size
    attention, kv = shape.num_heads * shape.head_dim, shape.num_kv_heads * shape.head_dim
    return {
        "q_proj": (h, attention),
        "k_proj": (h, kv),
        "v_proj": (h, kv),
        "o_proj": (attention, h),
        "gate_proj": (h, i),
        "up_proj": (h, i),
        "down_proj": (i, h),
    }


def lora_parameters(shape: ModelShape, r: int, targets: tuple[str, ...] = PROJECTIONS) -> int:
    """Trainable LoRA weights: r * (in + out) per adapted projection and layer."""
    shapes = projection_shapes(shape)
    return shape.num_layers * sum(r * sum(shapes[name]) for name in targets if name in shapes)


def base_weight_bytes(shape: ModelShape, plan: StepPlan) -> tuple[float, float]:
    """(quantized projection bytes, bytes of the other weights: embeddings, untied head, norms)."""
    projections = shape.num_layers * sum(i * o for i, o in projection_shapes(shape).values())
    other = shape.vocab_size * shape.hidden_size * (1 if shape.tie_word_embeddings else 2)
    other += (2 * shape.num_layers + 1) * shape.hidden_size
    if plan.quantization == "nf4":
        # prepare_model_for_kbit_training casts every non-quantized weight to fp32.
        return projections * NF4_BYTES_PER_WEIGHT, other * 4.0
    return 0.0, (projections + other) * plan.weight_bytes


def layer_activation_bytes(shape: ModelShape, plan: StepPlan) -> float:
    """Bytes autograd saves per token in one decoder layer, without checkpointing."""
    width = 2 if plan.autocast_16bit else 4
    sizes = {
        "hidden": shape.hidden_size,
        "attention": shape.num_heads * shape.head_dim,
        "intermediate": shape.intermediate_size,
    }
    counts = SAVED_PER_LAYER[(plan.autocast_16bit, plan.lora_dropout)]
    total = sum(sizes[k] * (n_act * width + n_fp32 * 4) for k, (n_act, n_fp32) in counts.items())
    # LoRA's rank-r intermediates; attention's per-head logsumexp and two norm scales (fp32); the
    # padding mask, which attention turns into a (T, T) bias of its own in every layer.
    total += len(plan.lora_targets) * plan.lora_r * 4 + (shape.num_heads + 2) * 4
    return total + plan.seq_len * width


def logps_bytes(shape: ModelShape, plan: StepPlan) -> float:
    """Memory of turning the last hidden states into log-probs, at its backward peak."""
    if plan.logps_chunk_size is None:
        saved = 4 if not plan.autocast_16bit else 2 + 4
        return plan.tokens * shape.vocab_size * (saved + 4 * LOGIT_GRAD_COPIES)
    # A chunk's fp32 logits and their exp (in place), the 16-bit copy for the matmul under
    # autocast; the gathered hidden states and their (tokens, H) fp32 gradient, kept for backward.
    chunk = min(plan.logps_chunk_size, plan.tokens)
    chunk_bytes = chunk * shape.vocab_size * (4 + (2 if plan.autocast_16bit else 4))
    return chunk_bytes + 2 * plan.tokens * shape.hidden_size * 4


def activation_bytes(shape: ModelShape, plan: StepPlan) -> float:
    """Activations alive at the peak (start of backward) for the whole network."""
    per_layer = layer_activation_bytes(shape, plan)
    if not plan.gradient_checkpointing:
        return plan.tokens * shape.num_layers * per_layer
    # Checkpointing keeps each layer's fp32 input (and the final norm's) and recomputes one layer
    # at a time in backward, after the log-prob gradients are gone: the larger of the two counts.
    inputs = plan.tokens * (shape.num_layers + 1) * shape.hidden_size * 4
    return inputs + max(0.0, plan.tokens * per_layer - logps_bytes(shape, plan))


def estimate_step_memory(shape: ModelShape, plan: StepPlan) -> MemoryEstimate:
    """Peak bytes of one DPO training step (policy + reference forward, backward, optimizer).

    Raises:
        ValueError: a batch or sequence length below 1.
    """
    if plan.batch_size < 1 or plan.seq_len < 1:
        raise ValueError(
            f"batch_size and seq_len must be at least 1, got {plan.batch_size}, {plan.seq_len}"
        )
    quantized, other = base_weight_bytes(shape, plan)
    lora = lora_parameters(shape, plan.lora_r, plan.lora_targets)
    activations = activation_bytes(shape, plan)
    forward_activations = plan.tokens * shape.num_layers * layer_activation_bytes(shape, plan)
    logps = logps_bytes(shape, plan)
    cpu = plan.device == "cpu"
    retained = CPU_RETAINED_FRACTION[freed_memory_mode(plan.return_freed_memory)]
    return MemoryEstimate(
        quantized_weights=quantized,
        other_weights=other,
        lora=lora * (4 + 4 + plan.optimizer_state_bytes),
        activations=activations,
        logps=logps,
        runtime=CPU_RUNTIME_BYTES if cpu else CUDA_RUNTIME_BYTES,
        # 4-bit: the map is closed once the unquantized weights are copied out (load_policy)
        model_file=plan.model_file_bytes if cpu and plan.quantization != "nf4" else 0.0,
        cpu_retained=retained * forward_activations if cpu else 0.0,
        # peft keeps a loaded adapter's weights fp32 (it casts 16-bit ones up)
        reference_lora=plan.reference_lora_parameters * 4.0,
    )


@dataclass(frozen=True)
class Fix:
    """Settings (config names -> values) that bring the estimated peak under the budget."""

    changes: dict[str, Any]
    peak: float


def suggest_fixes(
    shape: ModelShape,
    plan: StepPlan,
    budget: float,
    accumulate: int = 1,
    max_length: int | None = None,
    min_length: int = 128,
) -> list[Fix]:
    """Each single change that fits ``budget`` bytes; if none does, one combination, or nothing.

    In order of what they cost: gradient checkpointing (about a third more compute), a smaller
    batch with more accumulation (the same pairs per optimizer step, slower), a shorter max_length
    (cuts data).

    Args:
        shape: the model.
        plan: the step as configured.
        budget: bytes the step may use.
        accumulate: the configured ``trainer.accumulate_grad_batches``.
        max_length: the configured ``data.max_length`` (``plan.seq_len`` when None).
        min_length: shortest max_length worth suggesting.
    """
    max_length = max_length or plan.seq_len
    fixes = []

    def peak(candidate: StepPlan) -> float:
        return estimate_step_memory(shape, candidate).total

    if not plan.gradient_checkpointing:
        candidate = replace(plan, gradient_checkpointing=True)
        if peak(candidate) <= budget:
            fixes.append(Fix({"model.efficiency.gradient_checkpointing": True}, peak(candidate)))
    for batch in _halvings(plan.batch_size):
        candidate = replace(plan, batch_size=batch)
        if peak(candidate) <= budget:
            factor = math.ceil(plan.batch_size / batch)
            changes = {
                "data.batch_size": batch,
                "trainer.accumulate_grad_batches": accumulate * factor,
            }
            fixes.append(Fix(changes, peak(candidate)))
            break
    length = _longest_fitting_length(shape, plan, budget, max_length, min_length)
    if length is not None:
        candidate = _with_max_length(plan, length)
        fixes.append(Fix({"data.max_length": length}, peak(candidate)))
    if fixes:
        return fixes
    smallest = replace(plan, gradient_checkpointing=True, batch_size=1)
    changes = {
        "model.efficiency.gradient_checkpointing": True,
        "data.batch_size": 1,
        "trainer.accumulate_grad_batches": accumulate * plan.batch_size,
    }
    if peak(smallest) <= budget:
        return [Fix(changes, peak(smallest))]
    length = _longest_fitting_length(shape, smallest, budget, max_length, min_length)
    if length is None:
        return []
    changes["data.max_length"] = length
    return [Fix(changes, peak(_with_max_length(smallest, length)))]


def _halvings(batch_size: int) -> list[int]:
    """8 -> [4, 2, 1]."""
    sizes = []
    while batch_size > 1:
        batch_size //= 2
        sizes.append(batch_size)
    return sizes


def _with_max_length(plan: StepPlan, length: int) -> StepPlan:
    """The plan with rows cut to ``data.max_length = length``; a packed row holds two replies."""
    longest_row = length * (2 if plan.rows_per_pair == 1 else 1)
    return replace(plan, seq_len=min(plan.seq_len, longest_row))


def _longest_fitting_length(
    shape: ModelShape, plan: StepPlan, budget: float, max_length: int, min_length: int, step=64
) -> int | None:
    """The longest max_length below ``max_length``, a multiple of ``step``, that fits."""
    length = (max_length - 1) // step * step
    while length >= min_length:
        if estimate_step_memory(shape, _with_max_length(plan, length)).total <= budget:
            return length
        length -= step
    return None
