"""A NaN or infinite loss or gradient: find it, and say what to try.

``model.optimization.on_nonfinite`` stops the run (``stop``) or drops the optimizer step
(``skip``); ``NonFiniteGuard`` is what DPOModule's hooks ask. Either way the step is never
applied, so the weights stay those of the last good step.

Every rank must decide alike under DDP: a rank that raised or skipped backward alone would leave
the others waiting in the next all-reduce. So the loss check is reduced across ranks
(``strategy.reduce_boolean_decision``), and a skipped batch still runs backward, through
:func:`zero_loss`, so DDP reduces the same parameters everywhere. Gradients are checked after
backward, once DDP has averaged them (a NaN anywhere is then a NaN everywhere). Under ``16-mixed``
an infinite gradient is the gradient scaler's business: it skips that step itself and lowers its
scale, so only the loss is checked there.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Literal

import torch

from lit_dpo.errors import NonFiniteError

log = logging.getLogger(__name__)

OnNonFinite = Literal["stop", "skip"]


def all_finite(tensors: Iterable[torch.Tensor]) -> bool:
    """True when no element of any tensor is NaN or infinite (one device sync)."""
    flags = [torch.isfinite(t).all() for t in tensors]
    return bool(torch.stack(flags).all()) if flags else True


def first_nonfinite(named: Iterable[tuple[str, torch.Tensor]]) -> tuple[str, str] | None:
    """(name, 'nan' or 'inf') of the first tensor holding a non-finite value, else None."""
    for name, tensor in named:
        if not torch.isfinite(tensor).all():
            return name, "nan" if torch.isnan(tensor).any() else "inf"
    return None


def zero_loss(parameters: Iterable[torch.Tensor]) -> torch.Tensor:
    """0, with a zero gradient for every parameter: what a skipped batch back-propagates."""
    return torch.stack([p.sum() for p in parameters]).sum() * 0.0


def advice(precision: str, what: str) -> str:
    """What to try after a non-finite ``what`` (``loss``, ``gradient``, ``weights``)."""
    tips = ["lower model.optimizer.lr (or raise model.optimization.warmup_ratio)"]
    if what == "loss":
        tips.append("check that batch's pairs (an empty or extreme reply after truncation)")
    if precision.startswith("16"):
        tips.append(
            "fp16 overflows above 65504: use trainer.precision bf16-mixed where the GPU has bf16, "
            "else 32-true"
        )
    elif precision.startswith("bf16"):
        tips.append("try trainer.precision 32-true")
    if what in ("loss", "gradient"):
        tips.append("or set model.optimization.on_nonfinite skip to drop such steps and go on")
    return "; ".join(tips)


def stop_message(what: str, where: str, step: int, precision: str) -> str:
    """The error a ``stop`` raises."""
    return (
        f"non-finite {what} at optimizer step {step + 1} ({where}); training stopped before "
        f"applying it, so the weights are those after step {step}. Try: " + advice(precision, what)
    )


def loss_where(
    loss: torch.Tensor, epoch: int, batch_idx: int, pair_index: torch.Tensor | None = None
) -> str:
    """Where a non-finite loss came from, for its message: its value (or that another rank's
    was the bad one), the epoch and batch, and the batch's train pairs where it says."""
    value = f"is {loss.item()}" if not torch.isfinite(loss) else "is not finite on another rank"
    where = f"the loss {value}; epoch {epoch}, batch {batch_idx}"
    if pair_index is not None:
        where += f", train pairs {pair_index.tolist()}"
    return where


class NonFiniteGuard:
    """A fit's answer to a non-finite loss or gradient, as ``on_nonfinite`` says: raise, or skip
    the optimizer step and count it (``skipped_steps``, kept in checkpoints).

    Args:
        on_nonfinite: ``stop`` or ``skip``.
    """

    def __init__(self, on_nonfinite: OnNonFinite) -> None:
        self.on_nonfinite = on_nonfinite
        self.skipped_steps = 0
        self._skip_next_step = False

    def bad_loss(
        self, where: str, step: int, precision: str, parameters: Iterable[torch.Tensor]
    ) -> torch.Tensor:
        """Stop, or mark this optimizer step skipped: the zero loss to back-propagate instead.

        Raises:
            NonFiniteError: with ``stop``.
        """
        if self.on_nonfinite == "stop":
            raise NonFiniteError(stop_message("loss", where, step, precision))
        log.warning("step %d skipped: %s", step + 1, where)
        self._skip_next_step = True
        return zero_loss(parameters)

    def skip_step(
        self,
        named_grads: list[tuple[str, torch.Tensor]],
        step: int,
        precision: str,
        check_gradients: bool,
    ) -> bool:
        """Whether the optimizer step about to run is dropped: its loss was bad, or (with
        ``check_gradients``, off where a gradient scaler handles infinities) a gradient is.

        Raises:
            NonFiniteError: a non-finite gradient with ``stop``.
        """
        skip, self._skip_next_step = self._skip_next_step, False
        if not skip and check_gradients and not all_finite(grad for _, grad in named_grads):
            name, kind = first_nonfinite(named_grads)
            where = f"gradient of {name} is {kind}"
            if self.on_nonfinite == "stop":
                raise NonFiniteError(stop_message("gradient", where, step, precision))
            log.warning("step %d skipped: %s", step + 1, where)
            skip = True
        self.skipped_steps += skip
        return skip
