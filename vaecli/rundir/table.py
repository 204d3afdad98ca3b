"""`vae runs`: one table over the run folders under a folder.

Reads only the small files of the run-folder contract (config.yaml, meta.json,
summary.json, metrics.jsonl, eval/*.json) and never imports JAX, so it answers at once
for hundreds of runs. A row per run: its name, its status, the config keys whose values
differ between the listed runs, epochs, best validation ELBO, the latest test
log-likelihood and wall time (and FID and KID on the test and validation splits where a
listed run has them); or, with `group_by`, a row per group with the mean and
standard deviation of the numeric columns over the group's runs (typically seeds).
"""
from __future__ import annotations

import fcntl
import fnmatch
import json
import os
import statistics
from pathlib import Path

from vaecli import config as config_lib
from vaecli import finite
from vaecli.config import dotted
from vaecli.errors import ConfigError, UsageError
from vaecli.rundir import metrics
from vaecli.rundir.names import Folder, is_run, read_json

# Columns every run has, in display order; the differing config keys go after `status`.
NUMERIC = ("epochs", "val_elbo", "test_ll", "test_k", "wall_s")
MEANS = ("epochs", "val_elbo", "test_ll", "wall_s")  # averaged by group_by (test_k is a protocol, not a result)
# Shown when a listed run has them (`vae eval-samples` on the test split; on the validation
# split, as `vae tune --objective fid|kid` measures its trials).
SAMPLE_COLUMNS = ("fid", "kid", "val_fid", "val_kid")
MISSING = object()  # a config key a run's config.yaml does not have


# --------------------------------------------------------------------------- reading


def find(root: Path) -> list[Path]:
    """Every run folder (config.yaml + meta.json) under `root`, `root` included, in path order."""
    found = []
    for here, dirs, files in os.walk(root):
        if is_run(files):
            found.append(Path(here))
            dirs[:] = []  # nothing inside a run folder is another run
        else:
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
    return sorted(found)


def lock_held(run_dir: Path) -> bool:
    """Whether a live process holds `train.lock` (see runs.Lock): a shared, non-blocking
    flock fails only while a trainer holds its exclusive one. Released at once."""
    try:
        fd = os.open(Folder(run_dir).lock_file, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def best_validation_elbo(run_dir: Path) -> float | None:
    best = None
    for rec in metrics.read(run_dir, split="validation"):
        v = finite.number(rec.get("elbo"))
        if v is not None and (best is None or v > best):
            best = v
    return best


def latest_test(run_dir: Path) -> tuple[float | None, int | None]:
    """log p(x) on the test split from `eval/test-step<S>-k<K>.json`: the highest step,
    then the highest K; (None, None) when the run was not evaluated on test."""
    folder = Folder(run_dir)
    found = sorted((o for o in folder.outputs("elbo") if o.split == "test" and not o.raw),
                   key=lambda o: (o.step, o.k), reverse=True)
    for name in found:
        doc = read_json(folder.output(name))
        ll = finite.number(doc.get("log_likelihood")) if doc else None
        if ll is not None:
            return ll, name.k
    return None, None


def latest_samples(run_dir: Path, split: str = "test", prefix: str = "") -> dict:
    """FID and KID on `split` from `eval/samples-<split>-step<S>-n<N>-...json`: the highest
    step, then the largest N, then the newest file; None where there is none. Keys
    `<prefix>fid`, `<prefix>kid`."""
    folder = Folder(run_dir)
    found = [o for o in folder.outputs("samples") if o.split == split and not o.raw]
    for name in sorted(found, key=lambda o: (o.step, o.n, _mtime(folder.output(o))), reverse=True):
        doc = read_json(folder.output(name))
        if doc and finite.number(doc.get("fid")) is not None:
            return {f"{prefix}fid": finite.number(doc["fid"]),
                    f"{prefix}kid": finite.number((doc.get("kid") or {}).get("mean"))}
    return {f"{prefix}fid": None, f"{prefix}kid": None}


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def read_run(run_dir: Path, root: Path) -> dict:
    """One run as {"name", "path", "status", "config": {dotted key: value}, numeric columns}."""
    name = run_dir.relative_to(root).as_posix() if run_dir != root else run_dir.name
    row = {"name": name, "path": str(run_dir), "status": "damaged", "config": {},
           **{c: None for c in NUMERIC}}
    try:
        raw = config_lib.read_yaml(Folder(run_dir).config_file)
    except ConfigError:
        return row
    meta = read_json(Folder(run_dir).meta_file)
    summary_path = Folder(run_dir).summary_file
    summary = read_json(summary_path)
    if meta is None or (summary is None and summary_path.exists()):  # written atomically: unreadable is damage
        return row
    row["config"] = dotted.flatten(raw)
    summary = summary or {}
    status = summary.get("status")
    if status in (None, "running"):
        # No summary yet: the trainer is still loading data, or died doing so.
        status = ("running" if status else "starting") if lock_held(run_dir) else "died"
    row["status"] = str(status)
    done = summary.get("epochs_done")
    row["epochs"] = done if isinstance(done, int) else None
    row["epochs_total"] = summary.get("epochs", row["config"].get("train.epochs"))
    try:
        row["val_elbo"] = best_validation_elbo(run_dir)
    except OSError:  # no permission, or removed while listed: the row says so, the table goes on
        row["status"] = "unreadable"
    row["test_ll"], row["test_k"] = latest_test(run_dir)
    row.update(latest_samples(run_dir))
    row.update(latest_samples(run_dir, "validation", "val_"))
    row["wall_s"] = finite.number(summary.get("wall_s"))
    return row


# ------------------------------------------------------------- selecting and shaping


def value(row: dict, key: str):
    if key in row and key != "config":
        return row[key]
    return row["config"].get(key, MISSING)


def number(v) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):  # YAML 1.1 reads `1e-3` as a string
        try:
            return float(v)
        except ValueError:
            return None
    return None


def matches(actual, wanted) -> bool:
    if actual is MISSING:
        return False
    a, w = number(actual), number(wanted)
    if a is not None and w is not None and not isinstance(actual, str):
        return a == w
    if isinstance(actual, tuple):
        actual = list(actual)
    if isinstance(wanted, str) and isinstance(actual, str) and any(c in wanted for c in "*?["):
        return fnmatch.fnmatchcase(actual, wanted)
    return actual == wanted


def sort_key(v):
    """Missing last, numbers (numerically) before text."""
    if v is None or v is MISSING:
        return (1, 0, 0.0, "")
    n = number(v) if not isinstance(v, str) else None
    return (0, 0, n, "") if n is not None else (0, 1, 0.0, show(v))


def _check_key(key: str, known: set, option: str) -> None:
    if key not in known:
        columns = ", ".join(["name", "status", *[c for c in NUMERIC]])
        raise UsageError(f"{option} {key}: not a column or config key (columns: {columns}; config keys are "
                         f"dotted, e.g. optim.lr)")


def differing(rows: list[dict]) -> list[str]:
    """Config keys whose values are not the same in all `rows`, in config order. Damaged
    runs (no readable config) do not count."""
    rows = [r for r in rows if r["status"] != "damaged"]
    keys: dict[str, None] = {}
    for r in rows:
        keys.update(dict.fromkeys(r["config"]))
    return [k for k in keys if len({_hashable(r["config"].get(k, MISSING)) for r in rows}) > 1]


def _hashable(v):
    return json.dumps(v, sort_keys=True, default=str) if v is not MISSING else "\0missing"


def group(rows: list[dict], keys: list[str]) -> list[dict]:
    """One row per distinct value of `keys`: count, statuses, and for each of MEANS the
    mean, sample standard deviation (n - 1) and number of runs that have a value."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(_hashable([value(r, k) if value(r, k) is not MISSING else None for k in keys]), []).append(r)
    out = []
    for members in groups.values():
        g = {k: _plain(value(members[0], k)) for k in keys}
        g["count"] = len(members)
        statuses: dict[str, int] = {}
        for r in members:
            statuses[r["status"]] = statuses.get(r["status"], 0) + 1
        g["status"] = (next(iter(statuses)) if len(statuses) == 1
                       else ", ".join(f"{n} {s}" for s, n in sorted(statuses.items())))
        for c in MEANS:
            xs = [r[c] for r in members if isinstance(r[c], (int, float))]
            g[c] = statistics.fmean(xs) if xs else None
            g[f"{c}_std"] = statistics.stdev(xs) if len(xs) > 1 else None
            g[f"{c}_n"] = len(xs)
        out.append(g)
    return out


def _plain(v):
    return None if v is MISSING else v


def table(root: str | Path, sort: str | None = None, reverse: bool = False, filters: list[str] = (),
          group_by: str | None = None) -> tuple[list[str], list[dict]]:
    """(columns, rows) for `vae runs`; rows are plain dicts keyed by the columns (run rows
    also carry "path"). UsageError for a missing folder or an unknown key."""
    root = Path(root)
    if not root.is_dir():
        raise UsageError(f"{root}: no such folder (give the folder that holds the run folders, default ./runs)")
    rows = [read_run(p, root) for p in find(root)]
    sampled = [c for c in SAMPLE_COLUMNS if any(r.get(c) is not None for r in rows)]
    known = {"name", "status", *NUMERIC, *sampled} | {k for r in rows for k in r["config"]}
    for text in filters:
        try:
            path, wanted = config_lib.parse_override(text)
        except ConfigError:
            raise UsageError(f"--filter {text!r}: expected key=value, e.g. --filter optim.lr=3e-4") from None
        key = ".".join(path)
        _check_key(key, known, "--filter")
        rows = [r for r in rows if matches(value(r, key), wanted)]
    if group_by is not None:
        keys = [k.strip() for k in group_by.split(",") if k.strip()]
        if not keys:
            raise UsageError("--group-by: give keys separated by commas, e.g. --group-by optim.lr,objective.kl")
        for k in keys:
            _check_key(k, known - {"name"}, "--group-by")
        rows = group(rows, keys)
        columns = [*keys, "count", "status"] + [x for c in MEANS for x in (c, f"{c}_std")]
        extra = {"count", *(f"{c}_std" for c in MEANS), *(f"{c}_n" for c in MEANS)}
    else:
        keys = differing(rows)
        rows = [{"name": r["name"], "status": r["status"], **{k: _plain(value(r, k)) for k in keys},
                 **{c: r[c] for c in (*NUMERIC, *sampled)}, "epochs_total": r.get("epochs_total"), "path": r["path"]}
                for r in rows]
        columns = ["name", "status", *keys, *NUMERIC, *sampled]
        extra = set()
    if sort is not None:
        _check_key(sort, set(columns) | extra | (known if group_by is None else set()), "--sort")
        present = [r for r in rows if r.get(sort) is not None]
        absent = [r for r in rows if r.get(sort) is None]
        rows = sorted(present, key=lambda r: sort_key(r.get(sort)), reverse=reverse) + absent
    return columns, rows


def show(v) -> str:
    if v is None or v is MISSING:
        return "-"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(show(x) for x in v) + "]"
    return str(v)
