"""The README's Python examples run as written (a user copies them first).

Every ```python block is executed in a fresh namespace; blocks that name the user's own code
(``my_sampler``, ``mypkg``) are skipped, blocks using k-diffusion run only where it is importable
(its light install is optional, README), and the mutant power matrix (~45 s, also covered by
tests/test_mutants.py) runs only with CRITDIFF_SLOW=1.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
PLACEHOLDERS = ("my_sampler", "mypkg")


def _kdiffusion_importable() -> bool:
    try:
        from critdiff_ref.validate.runners.kdiffusion import load_sampling

        load_sampling()
    except ImportError:
        return False
    return True


def _params():
    for i, block in enumerate(BLOCKS):
        marks = [pytest.mark.slow] if "power_matrix(" in block else []
        if any(name in block for name in PLACEHOLDERS):
            marks.append(pytest.mark.skip(reason="uses the reader's own sampler"))
        if "kdiffusion" in block and not _kdiffusion_importable():
            marks.append(pytest.mark.skip(reason="k-diffusion is not installed (optional: README, k-diffusion)"))
        yield pytest.param(block, id=f"block{i}", marks=marks)


def test_readme_has_examples():
    assert len(BLOCKS) >= 5


@pytest.mark.parametrize("block", list(_params()))
def test_readme_example_runs(block, capsys):
    exec(compile(block, str(README), "exec"), {"__name__": "__readme__"})
