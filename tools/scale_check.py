"""Prepare a full-size preference split and report time and peak memory (no hub needed).

UltraFeedback binarized's train split has about 61k pairs; this writes that many UltraFeedback-
shaped rows (the embedded pairs, each made unique and lengthened to typical UltraFeedback reply
lengths) to a JSONL file, then runs PreferenceDataModule.setup on it twice (the second run should
come from the tokenization cache) in a fresh process each, printing rows, file size, seconds and
peak resident memory. `make scale` runs it.

    python tools/scale_check.py [--pairs 61135] [--max-length 1024] [--num-proc 2]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lit_dpo.sources import DEFAULT_MODEL, EMBEDDED_DATASETS, resolve_model

EMBEDDED = EMBEDDED_DATASETS["ultrafeedback-mini"]


def write_rows(path: Path, pairs: int, seed: int = 0) -> None:
    """``pairs`` rows built from the embedded ones: a numbered prompt, replies repeated to
    UltraFeedback-like lengths (a few hundred tokens)."""
    source = [json.loads(line) for line in (EMBEDDED / "train_prefs.jsonl").open()]
    rng = random.Random(seed)
    with path.open("w") as out:
        for i in range(pairs):
            row = json.loads(json.dumps(source[i % len(source)]))
            prompt = f"[{i}] {row['prompt']}"
            for side in ("chosen", "rejected"):
                row[side][-2]["content"] = prompt
                reply = row[side][-1]["content"]
                row[side][-1]["content"] = " ".join([reply] * rng.randint(1, 6))
            row["prompt"], row["prompt_id"] = prompt, str(i)
            out.write(json.dumps(row) + "\n")


def prepare(path: str, max_length: int, num_proc: int | None) -> None:
    from lit_dpo.data.datamodule import PreferenceDataModule, load_tokenizer

    load_tokenizer(DEFAULT_MODEL)
    baseline_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    data = PreferenceDataModule(
        dataset=path,
        max_length=max_length,
        max_prompt_length=max_length // 2,
        num_proc=num_proc,
        val_fraction=0.01,
    )
    data.prepare_data()
    data.setup("fit")
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({
        "train_pairs": len(data.splits["train"]),
        "val_pairs": len(data.splits["val"]),
        "truncated": data.report["train"]["truncated"],
        "seconds": round(seconds, 1),
        "peak_rss_mb": round(peak_mb),
        "rss_growth_mb": round(peak_mb - baseline_mb),
    }))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=61135)
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--num-proc", type=int, default=None)
    parser.add_argument("--prepare", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.prepare:
        prepare(args.prepare, args.max_length, args.num_proc)
        return
    resolve_model(DEFAULT_MODEL)  # convert the embedded model first, outside the measurement
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "train_prefs.jsonl"
        write_rows(path, args.pairs)
        file_mb = path.stat().st_size / 2**20
        print(f"{args.pairs} rows, {file_mb:.0f} MB of JSONL")
        environment = {**os.environ, "HF_DATASETS_CACHE": str(Path(folder) / "cache")}
        for run in ("first run", "second run (cached)"):
            command = [sys.executable, __file__, "--prepare", str(path),
                       "--max-length", str(args.max_length)]
            if args.num_proc:
                command += ["--num-proc", str(args.num_proc)]
            result = subprocess.run(command, env=environment, capture_output=True, text=True)
            if result.returncode:
                sys.exit(result.stderr[-3000:])
            numbers = json.loads(result.stdout.strip().splitlines()[-1])
            ratio = numbers["rss_growth_mb"] / file_mb
            print(f"{run}: {numbers} -> memory grew by {ratio:.2f} x the JSONL file")


if __name__ == "__main__":
    main()
