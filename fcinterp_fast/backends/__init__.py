"""Backends: one module each, registered in ``registry`` and chosen by ``fit(backend=...)``.

Import a backend module as ``from fcinterp_fast.backends import torch_vec`` (the package attribute
``fcinterp_fast.backends`` is the listing function, so dotted ``import`` statements of these modules
do not resolve through it).
"""
