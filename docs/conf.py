"""Sphinx configuration of the critdiff_ref documentation site.

Build: ``pip install -e ".[docs]"`` then ``sphinx-build -W -b html docs docs/_build/html``.
Pages are MyST Markdown; the API reference is generated from the docstrings at build time
(``_ext/api_pages.py`` walks the package), the CLI reference from the argparse parsers
(``_ext/cli_reference.py``); MathJax is bundled (``sphinx-mathjax-offline``), so no page needs the network.
"""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))  # document this checkout's package, not an installed copy
sys.path.insert(0, str(DOCS / "_ext"))

import critdiff_ref  # noqa: E402

project = "critdiff_ref"
author = "critdiff_ref contributors"
copyright = "critdiff_ref contributors"
release = critdiff_ref.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",
    "cli_reference",
    "api_pages",
    "optional_doc",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = [
    "_build",
    "THEORY_additions.md",          # the working notes merged into theory/
    "phi4_figures/**", "report/**", "learned_cumulants/**",  # run outputs; the results pages show them
    "results/phi4_exact_dm/**",     # the exact DM-MCMC result files (a sweep's table.md among them)
    "coverage.md",                  # included by results/coverage.md
]

myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
myst_dmath_double_inline = True

autodoc_default_options = {"members": True, "undoc-members": False, "ignore-module-all": True}
autodoc_inherit_docstrings = False  # a method without a docstring shows none (not pytest's or torch's)
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_mock_imports: list[str] = []
napoleon_numpy_docstring = True
napoleon_google_docstring = True
napoleon_use_rtype = False

html_theme = "furo"
html_title = f"critdiff_ref {release}"
html_static_path: list[str] = []
html_show_sourcelink = False
smartquotes = False  # keep "--flag" and quotes as typed (CLI text)
