"""``python -m fcinterp_fast.cli ...``: the ``fcinterp`` command (``torchrun ... -m fcinterp_fast.cli fit`` too)."""

import sys

from . import main

sys.exit(main())
