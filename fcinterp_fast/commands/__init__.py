"""The ``fcinterp`` sub-commands written in this package (``fit``, ``demo``); see ``fcinterp_fast.cli``."""
