"""tools/soak.py --short: the serve soak test, run as a user runs it (a subprocess), passes.

The script starts ``lit-dpo serve`` on a tiny random model, drives it with concurrent clients
(streams dropped mid-way, bad JSON, oversized prompts, unknown models, edge values), sends it
SIGTERM under load, and checks its answers; this test reads the report it writes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHECKS = {
    "no 5xx but the documented 503",
    "every answer has a documented status",
    "every stream ends with [DONE] or a clean close",
    "a dropped stream's generation is cancelled",
    "server memory growth within bound",
    "server exits cleanly after SIGTERM",
    "server log has no traceback",
}


def test_short_soak_passes_its_checks(tmp_path):
    report_path = tmp_path / "soak.json"
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "tools/soak.py", "--short", "--json", str(report_path)],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(report_path.read_text())
    assert set(report["checks"]) == CHECKS and all(report["checks"].values()), report
    assert report["passed"] and report["problems"] == []
    # every kind of request of the mix was sent, and answered with the statuses it documents
    kinds = {"chat", "stream", "drop", "bad_json", "oversized", "unknown_model", "edge"}
    assert set(report["by_kind"]) == kinds
    for status in ("200", "400", "404", "422"):
        assert report["by_status"][status] > 0, report["by_status"]
    assert report["requests"] == sum(report["by_status"].values())
    assert set(report["latency_s"]) == {"p50", "p95", "p99"}
    latency = report["latency_s"]
    assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"]
    assert report["tokens_per_s"] > 0
    assert set(report["rss_mib"]) == {"start", "end", "growth"} and report["rss_mib"]["start"] > 0
    cancel = report["cancel"]
    assert cancel["long_tokens"] == report["settings"]["max_tokens_limit"]
    # the report rounds each time to the millisecond: the bound is a quarter of the long reply's
    assert cancel["after_drop_s"] < cancel["bound_s"]
    assert cancel["bound_s"] == pytest.approx(cancel["long_s"] / 4, abs=2e-3)
    # one summary block on stdout, ending with the verdict
    assert done.stdout.count("soak: PASS") == 1 and "checks:" in done.stdout
    assert "FAIL" not in done.stdout
