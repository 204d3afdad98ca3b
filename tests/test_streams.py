"""The random streams' table (vaecli/streams.py) is the one place stream ids live, and no two
streams folded into the same parent key share an id (they would draw the same numbers)."""
from __future__ import annotations

import ast
from collections import Counter

from helpers import ROOT

from vaecli import streams


def test_no_two_streams_of_one_parent_share_an_id():
    ids = Counter((s.parent, s.id) for s in streams.TABLE.values())
    assert [pair for pair, n in ids.items() if n > 1] == []


def test_every_stream_names_a_known_parent_and_fits_fold_in():
    parents = {streams.RUN, streams.STEP, streams.EVAL, streams.GRAD_SNR}
    assert {s.parent for s in streams.TABLE.values()} <= parents
    assert all(0 <= s.id < 2**32 and s.purpose for s in streams.TABLE.values())  # fold_in takes a uint32


def test_no_module_folds_a_literal_integer_into_a_key():
    """A stream id written inline would be outside the table the first test checks."""
    inline = []
    for path in sorted((ROOT / "vaecli").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "fold_in" and len(node.args) > 1
                    and isinstance(node.args[1], ast.Constant)):
                inline.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert inline == []
