"""``python -m procto.cli``: the same application as the ``procto`` script."""

import sys

from procto.cli import app

sys.exit(app())
