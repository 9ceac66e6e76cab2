"""Figures of fits and explanations, as ``matplotlib.figure.Figure`` objects built without pyplot.

Nothing here opens a window, depends on the interactive backend or touches pyplot's global state;
``fcinterp_fast.report`` saves them (or ``fig.savefig(path)``: Agg renders PNG).

* ``fits``: the paper's Algorithm 1 plots (``plot_fits``), the split tree of a class
  (``plot_split``, ``plot_node_fits``) and R^2 over all classes (``plot_r2_summary``).
* ``gof``: goodness of fit and null heads: a row against its ALD (``plot_qq``), the trained head
  against null heads (``plot_null_comparison``) and over all classes (``plot_gof_summary``).
* ``cam``: the paper's Fig. 5, what every level of the ``+`` and ``-`` chains sees (``chain_figure``).
"""

from .fits import (
    NodeCurve,
    class_label,
    node_curve,
    node_groups,
    plot_fits,
    plot_node_fits,
    plot_r2_summary,
    plot_split,
    pretty_node,
)
from .gof import plot_gof_summary, plot_null_comparison, plot_qq

__all__ = [
    "NodeCurve",
    "node_curve",
    "node_groups",
    "class_label",
    "pretty_node",
    "plot_fits",
    "plot_split",
    "plot_node_fits",
    "plot_r2_summary",
    "plot_qq",
    "plot_null_comparison",
    "plot_gof_summary",
]
