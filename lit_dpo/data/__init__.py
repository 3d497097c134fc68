"""Rows -> checked pairs -> token ids -> batches: the data path of a fit.

``loading`` reads a source into raw splits, ``pairs`` checks each row and turns it into a
(prompt, chosen, rejected) pair, ``batches`` renders and tokenizes pairs and pads batches,
``sampler`` orders them, and ``datamodule`` wires all of it into a LightningDataModule. The
embedded demo dataset lives in ``embedded/``.
"""

from lit_dpo.data.datamodule import DatasetPart, PreferenceDataModule

__all__ = ["DatasetPart", "PreferenceDataModule"]
