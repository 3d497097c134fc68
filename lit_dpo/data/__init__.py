"""Rows -> checked pairs -> token ids -> batches: the data path of a fit.

``loading`` reads a source into raw splits, ``pairs`` checks each row and turns it into a
(prompt, chosen, rejected) pair, ``batches`` renders and tokenizes pairs and pads batches,
``sampler`` orders them, and ``datamodule`` wires all of it into a LightningDataModule. The
embedded demo dataset lives in ``embedded/``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lit_dpo.data.datamodule import DatasetPart, PreferenceDataModule

__all__ = ["DatasetPart", "PreferenceDataModule"]


def __getattr__(name: str):
    # imported on first use: ``lit_dpo.data.pairs`` alone should not load Lightning
    if name in __all__:
        from lit_dpo.data import datamodule

        return getattr(datamodule, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
