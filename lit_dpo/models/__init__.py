"""The network: the 4-bit base with LoRA adapters (``policy``), adapter folders (``adapters``),
loading a trained adapter for inference (``inference``) and generating answers (``generate``)."""
