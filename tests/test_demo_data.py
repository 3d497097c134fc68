"""The shipped demo data is exactly what tools/build_demo_data.py makes from tools/demo_data/.

A table edited without a rebuild, or a builder change that no longer reproduces the files (in
iteration order, number formatting or the random stream), fails here.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILDER = ROOT / "tools" / "build_demo_data.py"
EMBEDDED = ROOT / "lit_dpo" / "data" / "embedded" / "ultrafeedback_mini"


def first_differing_line(a: bytes, b: bytes) -> int:
    a_lines, b_lines = a.splitlines(), b.splitlines()
    for number, (x, y) in enumerate(zip(a_lines, b_lines, strict=False), start=1):
        if x != y:
            return number
    return min(len(a_lines), len(b_lines)) + 1


def test_rebuild_reproduces_the_shipped_files_byte_for_byte(tmp_path):
    run = subprocess.run(
        [sys.executable, str(BUILDER), "--out", str(tmp_path)], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    shipped = sorted(p.name for p in EMBEDDED.glob("*.jsonl"))
    assert shipped == ["test_prefs.jsonl", "train_prefs.jsonl"]
    assert sorted(p.name for p in tmp_path.iterdir()) == shipped
    for name in shipped:
        built, committed = (tmp_path / name).read_bytes(), (EMBEDDED / name).read_bytes()
        # Compare bytes, and name the first differing line to look at.
        assert built == committed, (
            f"{name}: the rebuild differs from the committed file from line "
            f"{first_differing_line(built, committed)} ({len(built)} vs {len(committed)} bytes). "
            "If you edited tools/demo_data/, run `.venv/bin/python tools/build_demo_data.py` "
            "and commit the result."
        )
