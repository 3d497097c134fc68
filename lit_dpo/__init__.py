"""lit-dpo: Direct Preference Optimization with a 4-bit LoRA policy on Lightning."""

__version__ = "0.1.0"
