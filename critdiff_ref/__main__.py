"""``python -m critdiff_ref ARGS``: the ``critdiff`` command (:func:`critdiff_ref.cli.main`), for an environment
whose scripts folder is not on ``PATH``."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
