"""The README's paper table, filled from the records benchmarks/paper_rows.py writes: the
"measured" cell of each row from paper rows only (latest and best-validation checkpoint),
a row with none says what it needs."""
from __future__ import annotations

import re
from pathlib import Path

from vaecli.rundir import layout

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
README = ROOT / "README.md"
TABLE_BEGIN, TABLE_END = "<!-- paper-rows:begin -->", "<!-- paper-rows:end -->"
NOT_MEASURED = "not yet measured"
# What an unmeasured row needs, from measured epochs on this 2-core CPU (the table "Paper
# protocols on the CPU" in docs/performance.md), and for K > 1 the bare loop's step on an H100
# at K=1 (benchmarks/gpu_check.py); a K=50 step does 50× the decoder work.
NEEDS = {
    "iwae_vae_k1": "not yet measured: 3,280 epochs at 2.3–3.4 s each on this 2-core CPU (2.1–3.1 h of "
                   "training, one seed per core), then K=5000 on the test split",
    "iwae_2layer_vae_k1": "not yet measured: 3,280 epochs at 4.3–5.1 s each on one core of this 2-core CPU "
                          "(10th percentile–median of a run's epochs; 3.9–4.6 h at that pace, 11.8 h of calls "
                          "beside other work), then K=5000 on the test split (19 min per checkpoint on one core)",
    "vampprior": "not yet measured: up to 2,000 epochs (early stopping) at 19–40 s each on one core of this "
                 "2-core CPU (10th percentile–median of a run that stopped after 298 epochs: 1.6–3.3 h), then "
                 "K=5000 on the test split (33–39 min per checkpoint on one core)",
    "vampprior_normgrad": "not yet measured: up to 2,000 epochs (early stopping) at vampprior.yaml's 19–40 s each "
                          "on one core of this 2-core CPU (its run stopped after 298 epochs: 1.6–3.3 h), then "
                          "K=5000 on the test split (33–39 min per checkpoint on one core)",
    "hvae_vampprior": "not yet measured: up to 2,000 epochs (early stopping) at 26–28 s each on one core of this "
                      "2-core CPU (10th percentile–median of its first 206 epochs; validation adds about 4 s; "
                      "300 epochs would be 2.7 h, 2,000 up to 18 h), then K=5000 on the test split",
    "iwae_k5": "needs a GPU: 8.2 M steps of 5 samples; at the H100 bare-loop step (79 µs at K=1) 11 min plus "
               "the K=5 decoder work",
    "iwae_k50": "needs a GPU: 8.2 M steps of 50 samples; at the H100 bare-loop step (79 µs at K=1) 11 min plus "
                "the K=50 decoder work",
}


def read_records(results: Path = RESULTS) -> list[dict]:
    out = []
    for f in sorted(results.glob("*.json")) if results.is_dir() else []:
        rec = layout.read_json(f)
        if isinstance(rec, dict) and rec.get("paper_row") and rec.get("nll") is not None:
            out.append(rec)
    return out


def _figures(r: dict) -> str:
    best = r.get("checkpoints", {}).get("best")
    text = f"{r['nll']:.2f} ± {r['nll_stderr']:.2f}"
    if best:
        text += f" latest / {best['nll']:.2f} ± {best['nll_stderr']:.2f} best (epoch {best['epoch']})"
    hours = f"{r['train_hours']:.1f} h" if "train_hours" in r else f"{r['train_minutes']:.1f} min"
    facts = [f"seed {r['seed']}"]
    if r.get("active_units") is not None:
        facts.append(f"{r['active_units']} active units")
    if r.get("epochs") is not None:
        facts.append(f"{r['epochs']} epochs" + (" (stopped early)" if r.get("stopped_early") else ""))
    facts.append(", ".join(str(x) for x in (r.get("machine") or r["device"], r["date"], hours, r.get("commit")) if x))
    return f"{text} ({'; '.join(facts)})"


def measured_cell(config_names: list[str], records: list[dict]) -> str:
    cells = []
    for name in config_names:
        rows = [r for r in records if r["config_name"] == name]
        if rows:
            cells.append("; ".join(_figures(r) for r in sorted(rows, key=lambda r: r["seed"])))
        elif name in NEEDS:
            cells.append(NEEDS[name])
        else:
            cells.append(NOT_MEASURED)
    return " / ".join(cells)


def render_table(readme: str, records: list[dict]) -> str:
    """The README with the last cell of each row of its paper table filled from `records`."""
    begin, end = readme.index(TABLE_BEGIN), readme.index(TABLE_END)
    lines = readme[begin:end].splitlines()
    for i, line in enumerate(lines):
        cells = line.split(" | ")
        names = re.findall(r"`([\w.-]+)\.yaml`", cells[0])
        if line.startswith("| ") and names and len(cells) > 2:
            lines[i] = " | ".join(cells[:-1] + [measured_cell(names, records) + " |"])
    return readme[:begin] + "\n".join(lines) + "\n" + readme[end:]
