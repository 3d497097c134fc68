"""``lit-dpo export``: an adapter merged into its base, as a transformers folder or GGUF, or the
adapter alone as llama.cpp's LoRA GGUF (see :mod:`lit_dpo.export.command`)."""

from lit_dpo.export.command import export

__all__ = ["export"]
