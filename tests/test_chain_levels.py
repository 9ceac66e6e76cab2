"""Chains without a depth are trimmed to whole levels: every level keeps its "+" and "-" column."""
import torch

import fcinterp_fast


def test_trimmed_chain_keeps_both_columns_of_its_deepest_level():
    row = torch.linspace(-1, 2, 50)[None]  # the + chain reaches level 6, the - chain level 5
    fit = fcinterp_fast.fit(row, min_size=2)
    assert fit.nodes[-2:] == ["++++++", "------"]
    assert fit.count[0, -2:].tolist() == [1, 0]
    assert not fit.mask("------").any()
    assert fit.column("-*", 0) == fit.nodes.index("-----")
