"""Markdown table of the performance targets and tracked figures from one committed asv result file.

    python -m benchmarks.summary --machine cpu-epyc-2core            # newest result of that machine
    python -m benchmarks.summary --machine h100 --commit 1a2b3c4d     # a given commit (hash prefix)

Reads ``benchmarks/results/<machine>/<commit>-*.json`` (asv's result format: one flattened value per
point of the cartesian product of the parameter lists) and prints the rows of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import ast
import itertools
import json
import math
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"

# (benchmark, label, target) -- target None: tracked for information only
ROWS = (
    ("bench_mcmc.MCMCBandwidth.track_leapfrog_bandwidth_fraction", "leapfrog step / copy roofline (d=2, f32, 16 chains)", ">= 0.8"),
    ("bench_mcmc.FusedMCMCBandwidth.track_leapfrog_bandwidth_fraction", "leapfrog step, fused=True / copy roofline", ">= 0.8"),
    ("bench_mcmc.MCMCBandwidth.track_langevin_bandwidth_fraction", "Langevin step / copy roofline", ">= 0.8"),
    ("bench_mcmc.MCMCBandwidth.track_metropolis_bandwidth_fraction", "Metropolis sweep / copy roofline", ">= 0.8"),
    ("bench_mcmc.FusedMCMCBandwidth.track_langevin_bandwidth_fraction", "Langevin step, fused=True / copy roofline", ">= 0.8"),
    ("bench_mcmc.FusedMCMCBandwidth.track_metropolis_bandwidth_fraction", "Metropolis sweep, fused=True / copy roofline", ">= 0.8"),
    ("bench_mcmc.TritonMCMCBandwidth.track_langevin_bandwidth_fraction", "Langevin step, fused='triton' (in-kernel noise) / copy roofline", ">= 0.8"),
    ("bench_mcmc.TritonMCMCBandwidth.track_metropolis_bandwidth_fraction", "Metropolis sweep, fused='triton' / copy roofline", ">= 0.8"),
    ("bench_mcmc.MCMCBandwidth.track_copy_bandwidth", "copy roofline, GB/s", None),
    ("bench_mcmc.HMCVersusNumpy.track_library_over_numpy", "HMC traj/s, library (compiled trajectory) / plain numpy HMC (d=2, eps 0.1 x 10)", ">= 3 (1 chain, L = 32, 64)"),
    ("bench_mcmc.HMCVersusNumpy.track_eager_over_numpy", "HMC traj/s, library eager / plain numpy HMC", None),
    ("bench_mcmc.HMCVersusNumpy.track_library_roofline_fraction", "HMC run (compiled, with accept/reject, draws, kept samples) / copy roofline", ">= 0.5 (16 chains, L >= 64)"),
    ("bench_samplers.ExactSamplerRatios.track_sampler_over_fft_pair", "exact sampler / real FFT pair (d=2, f32, batch 8)", "<= 1.2"),
    ("bench_samplers.ExactSamplerRatios.track_sites_per_second", "exact sampler, G sites/s", None),
    ("bench_scores.ScoreRatios.track_fft_score_over_fft_pair", "FFT score / real FFT pair (d=2, f32, batch 8)", "<= 1.2"),
    ("bench_samplers.SamplerOverhead.track_rk4_step_over_score_evals", "RK4 sampler step / 4 score evals (d=2, f32)", "<= 2"),
    ("bench_samplers.CapturedSampler.track_captured_step_over_score_evals", "RK4 step, captured sampler (fused=True) / 4 eager score evals", None),
    ("bench_samplers.CapturedSampler.track_eager_over_captured", "RK4 sampler, eager / captured (fused=True), N=16", None),
    ("bench_samplers.CapturedSampler.track_eager_over_graph", "RK4 sampler, eager / recorded replay (fused='graph'), N=16", None),
    ("bench_samplers.CapturedSamplerLaunchOverhead.track_graph_overhead_over_kernel_time", "fused='graph' RK4 sampler: (wall - kernel time) / kernel time, L=32", "<= 2 (GPU)"),
    ("bench_samplers.CapturedSamplerLaunchOverhead.track_overhead_over_kernel_time", "captured RK4 sampler: (wall - kernel time) / kernel time, L=32", "<= 2 (GPU)"),
    ("bench_samplers.SamplerOverhead.track_local_over_fft_sampler", "RK4 sampler, local conv score / FFT score", None),
    ("bench_samplers.LocalVersusUNet.track_unet_over_local_sampler", "RK4 sampler, default U-Net score / local conv score", ">= 100"),
    ("bench_scores.ScoreRatios.track_local_conv_over_fft_score", "local conv score / FFT score", None),
    ("bench_scores.FullConvRatio.track_full_conv_over_fft_score", "full-size conv score / FFT score", "> 1000 at L=256 (H100 ref.)"),
    ("bench_scores.ScoreScaling.track_runtime_exponent", "runtime ~ V^z per score form (d=2, L=32..256; full L=8..24)", None),
    ("bench_trainers.StepsToAccuracy.track_exponent", "steps-to-accuracy ~ L^z (d=2, L=8..64)", "2 / ~1 / 0"),
    ("bench_samplers.SamplerErrors.track_covariance_error", "relative covariance error, exact start, VP, L=32", None),
)


def latest_result(machine: str, commit: str | None = None, results_dir: Path = RESULTS) -> dict:
    """The asv result dict of ``machine`` for ``commit`` (hash prefix), or its newest by run date."""
    folder = Path(results_dir) / machine
    files = sorted(folder.glob("*-*.json"))
    if commit is not None:
        files = [f for f in files if f.name.startswith(commit[:8])]
    if not files:
        raise ValueError(f"no asv results for machine={machine!r} commit={commit!r} under {folder}")
    data = [json.loads(f.read_text()) for f in files]
    return max(data, key=lambda r: r["date"])


def points(result: dict, name: str) -> list[tuple[tuple, float]]:
    """``[(param values, value)]`` of benchmark ``name``, skipped / failed points left out."""
    if name not in result["results"]:
        return []
    columns = result["result_columns"]
    entry = dict(zip(columns, result["results"][name]))
    params = [[ast.literal_eval(v) for v in values] for values in entry["params"]] or [[]]
    values = entry["result"] if isinstance(entry["result"], list) else [entry["result"]]
    out = []
    for combo, value in zip(itertools.product(*params), values):
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            out.append((combo, float(value)))
    return out


def _label(combo: tuple) -> str:
    return ", ".join(str(v) for v in combo if v != "cpu" and v != "cuda") or "-"


def markdown(result: dict, machine: str) -> str:
    """The target table: one line per benchmark, its measured points as ``params: value``."""
    lines = [
        f"machine `{machine}`, commit `{result['commit_hash'][:8]}`",
        "",
        "| figure | target | measured (params: value) |",
        "|---|---|---|",
    ]
    for name, label, target in ROWS:
        pts = points(result, name)
        cells = "; ".join(f"{_label(c)}: {v:.3g}" for c, v in pts) or "not measured"
        lines.append(f"| {label} | {target or '-'} | {cells} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--machine", required=True, help="asv machine name (a folder under benchmarks/results)")
    parser.add_argument("--commit", default=None, help="commit hash prefix (default: the newest result)")
    args = parser.parse_args(argv)
    print(markdown(latest_result(args.machine, args.commit), args.machine))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
