#!/usr/bin/env bash
# Record one asv run of the benchmarks for the current commit into benchmarks/results/MACHINE
# and write the target table (benchmarks/results/MACHINE/summary-<commit>.md).  Usage:
#     benchmarks/record.sh MACHINE [--targets-only]
# MACHINE names the asv machine (e.g. h100, cpu-epyc-2core).  --targets-only runs just the
# classes behind the performance targets (a few minutes on a GPU); otherwise the whole suite runs first.
# Needs asv >= 0.6 in the current Python (`pip install -e ".[bench]"`); nothing is downloaded.
set -euo pipefail
machine=${1:?usage: benchmarks/record.sh MACHINE [--targets-only]}
cd "$(dirname "$0")/.."
commit=$(git rev-parse HEAD)
if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
    echo "record.sh: the working tree has uncommitted changes; asv would label them as $commit" >&2
    exit 2
fi
targets="MCMCBandwidth|FusedMCMCBandwidth|TritonMCMCBandwidth|LocalVersusUNet|SamplerGPUMemory|ExactSamplerRatios|ScoreRatios|FullConvRatio|SamplerOverhead|CapturedSampler|ScoreScaling"
run=(asv run -E existing --set-commit-hash "$commit" --launch-method forkserver --machine "$machine" -a processes=1)
asv machine --yes --machine "$machine" >/dev/null
if [ "${2:-}" != "--targets-only" ]; then
    "${run[@]}" -a repeat=3 -a warmup_time=0.05       # the whole suite first ...
fi
"${run[@]}" -a repeat=5 -b "$targets"                 # ... then the target classes again, more repeats (asv keeps the newest)
python -m benchmarks.summary --machine "$machine" --commit "${commit:0:8}" | tee "benchmarks/results/$machine/summary-${commit:0:8}.md"
