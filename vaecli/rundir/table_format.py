"""`vae runs`'s table as text: aligned columns, CSV or JSON; a group's means with ± their
standard deviation."""
from __future__ import annotations

import csv
import io
import json

from vaecli.rundir.table import MEANS, NUMERIC, SAMPLE_COLUMNS, number, show


def _fixed(v, digits: int) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


_DIGITS = {"val_elbo": 2, "test_ll": 2, "wall_s": 1, "epochs": 1, "fid": 3, "kid": 5, "val_fid": 3, "val_kid": 5}


def _cell(row: dict, col: str, grouped: bool) -> str:
    v = row.get(col)
    if grouped and col in MEANS:
        if v is None:
            return "-"
        digits = _DIGITS[col]
        text = _fixed(v, digits)
        if row.get(f"{col}_std") is not None:
            text += f" ± {_fixed(row[f'{col}_std'], digits)}"
        if row[f"{col}_n"] < row["count"]:
            text += f" (n={row[f'{col}_n']})"
        return text
    if col == "epochs" and v is not None:
        return f"{v}/{show(row.get('epochs_total'))}"
    if col in _DIGITS and v is not None:
        return _fixed(v, _DIGITS[col])
    return show(v)


def render(columns: list[str], rows: list[dict], fmt: str, grouped: bool) -> str:
    if fmt == "json":
        return json.dumps(rows, indent=2, default=str)
    if fmt == "csv":
        buf = io.StringIO()
        fields = columns + (["epochs_total", "path"] if not grouped else
                            [f"{c}_n" for c in MEANS])
        writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for r in rows:
            writer.writerow({k: ("" if r.get(k) is None else show(r[k]) if isinstance(r[k], (list, bool)) else r[k])
                             for k in fields})
        return buf.getvalue().rstrip("\n")
    shown = [c for c in columns if not c.endswith("_std")] if grouped else columns
    cells = [[_cell(r, c, grouped) for c in shown] for r in rows]
    widths = [max([len(c)] + [len(line[i]) for line in cells]) for i, c in enumerate(shown)]
    right = [c in NUMERIC or c in SAMPLE_COLUMNS or c == "count" or all(number(r.get(c)) is not None or r.get(c) is None for r in rows)
             for c in shown]
    lines = []
    for line in [shown, *cells]:
        lines.append("  ".join(s.rjust(w) if r else s.ljust(w) for s, w, r in zip(line, widths, right)).rstrip())
    return "\n".join(lines)
