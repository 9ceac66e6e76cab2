"""Where heads come from: found in models (``find``), read from files (``files``), validated and
read in row blocks (``source``), and delivered to the fitting device (``stream``).

``head_weight`` is the one way to get the (K, D) weight of a head from whatever a user has.
"""

from .find import head_module, head_weight, open_head

__all__ = ["head_weight", "head_module", "open_head"]
