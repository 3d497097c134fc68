#!/usr/bin/env bash
# Win rates of an adapter's answers against the reference's (issue 26, item 5; its first run,
# 2026-12-07, is in docs/quality.md, "Did the answers get better?") on 50 held-out
# HH-harmless prompts of the development data and the built-in edge cases. hh_dev_prompts.json:
# the first human turn of the first 50 pairs of tools/quality.py's dev split (Anthropic HH-RLHF,
# harmless-base, MIT licence), each labelled by hand harmful (27), benign (18) or ambiguous (5).
# The AI judge is
# lit-dpo serve's `reference` model (the embedded SmolLM2-135M-Instruct, full precision, adapters
# off), the strongest chat model this machine can run without a hub. It does not follow the
# pairwise template (nearly every verdict is unparseable) and rambles to any length (replies capped
# at 24 tokens here): point --judge_url at an instruction-following model wherever one can run.
#   tools/judging/judge_study.sh runs/cpu/adapter runs/judge-study
# then the blind page for human votes:  lit-dpo judge --compare runs/judge-study/compare
set -euo pipefail
adapter=${1:?adapter folder}
out=${2:?output folder}
port=${PORT:-8011}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
python -m lit_dpo serve --adapter "$adapter" --quantization none --port "$port" \
    > "$out/judge-serve.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 120); do
    curl -sf "http://127.0.0.1:$port/health" > /dev/null && break
    sleep 2
done
python -m lit_dpo compare --adapter "$adapter" --prompts "$here/hh_dev_prompts.json" \
    --val_size 0 --max_new_tokens 96 --judge_url "http://127.0.0.1:$port/v1" \
    --judge_model reference --judge_max_tokens 24 --judge_cache "$out/judge-cache" \
    --out "$out/compare"
