"""``critdiff report``: reproduce the papers' phenomena with figures, numbers and pass/fail checks.

- :mod:`.document`: the section list, the markdown/JSON document, the command;
- :mod:`.sections`: section types and the Gaussian-field sections (THEORY 3-5);
- :mod:`.nongaussian`: cumulants, symmetry breaking and condensation, lattice phi^4 (THEORY 6-8);
- :mod:`.learned`: learned cumulants, a trained score MLP vs the cumulants paper's Table 1 (THEORY 6).
"""

from .sections import (
    Check,
    Section,
    Context,
    section_training,
    section_generation,
    section_local,
)
from .document import (
    SECTIONS,
    write_report,
    add_report_parser,
    run_report,
)

__all__ = [
    "Check",
    "Section",
    "Context",
    "section_training",
    "section_generation",
    "section_local",
    "SECTIONS",
    "write_report",
    "add_report_parser",
    "run_report",
]
