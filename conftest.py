"""Hypothesis profiles for the whole suite, chosen by HYPOTHESIS_PROFILE (default: ci).

- ci: derandomized (fixed examples, reproducible in CI), no deadline, no example database, modest
  max_examples so the default suite fits its CI budget.
- dev: random examples with the database on, for local exploration.
- thorough: many examples, for long runs (`HYPOTHESIS_PROFILE=thorough pytest`).
"""

import os

import torch
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    database=None,
    max_examples=12,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("dev", deadline=None, max_examples=30)
settings.register_profile(
    "thorough",
    deadline=None,
    max_examples=400,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# Reference numerics: no TF32 anywhere in the suite (CONVENTIONS: cuDNN TF32 gives ~1e-3 errors).
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False

# CPU threads by the package's policy (critdiff_ref._threads): the suite's tensors are small, so one
# thread unless OMP_NUM_THREADS says otherwise (torch's one-per-core default stalls on a loaded runner).
from critdiff_ref._threads import set_threads  # noqa: E402

set_threads(0)


def pytest_collection_modifyitems(config, items):
    """Tests marked ``slow`` run only with CRITDIFF_SLOW=1 (the thorough runs), as pyproject's marker says."""
    import pytest

    if os.environ.get("CRITDIFF_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow: set CRITDIFF_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
