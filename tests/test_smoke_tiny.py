import json

from vaecli import metrics


def test_tiny_run_folder(tiny_run):
    names = {p.name for p in tiny_run.iterdir()}
    assert {"config.yaml", "meta.json", "metrics.jsonl", "summary.json", "checkpoints", "samples"} <= names
    summary = json.loads((tiny_run / "summary.json").read_text())
    assert summary["status"] == "completed"
    recs = metrics.read(tiny_run)
    assert [r["epoch"] for r in recs if r["split"] == "train"] == [1, 2, 3]
