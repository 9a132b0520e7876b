"""asv benchmarks for critdiff_ref: runtime scaling with L, dtype and device, and tracked
figures that matter beyond seconds (scaling exponents, bandwidth fractions, sampler errors).

Modules: ``bench_scores`` (exact FFT, local and full-size convolution scores), ``bench_samplers``
(exact sampler, PF-ODE RK4, reverse SDE, exact sampler errors), ``bench_trainers`` (training
epochs, steps-to-accuracy exponents), ``bench_mcmc`` (HMC, leapfrog, Metropolis, Langevin; DM-MCMC
when :mod:`critdiff_ref.samplers.dmmc` exists).  ``common`` holds the shared plumbing;
``test_micro`` the pytest-benchmark micro-benchmarks (run explicitly, not part of the test suite).
See ``BENCHMARKS.md`` for the commands and the recorded numbers.
"""
