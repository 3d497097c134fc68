"""Reports written whole or not at all: to a temporary file beside the target, then renamed.

A crash or a full disk mid-write leaves the previous report (or none), never half of one.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def write_atomically(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(temporary_path)``, then rename the result to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, staging = tempfile.mkstemp(prefix=f".{path.name}-", suffix=path.suffix, dir=path.parent)
    os.close(handle)
    try:
        write(Path(staging))
        os.replace(staging, path)
    finally:
        if os.path.exists(staging):
            os.unlink(staging)
    return path


def write_text_atomically(path: str | Path, text: str) -> Path:
    """``path.write_text(text)`` (UTF-8), atomically."""
    return write_atomically(path, lambda staging: staging.write_text(text, encoding="utf-8"))
