"""lit-dpo: Direct Preference Optimization with a 4-bit LoRA policy on Lightning."""

from lit_dpo import _moved, compat

__version__ = "0.2.0"

# before any library loads: bitsandbytes logs a line no user can act on when it is imported
compat.quiet_library_notices()
# lit-dpo 0.1's module paths (lit_dpo.health, lit_dpo.module...) import for one more release
_moved.install()
