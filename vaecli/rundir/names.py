"""The names of a run folder's files and folders, the contract between `vae train`, which
writes it, and the commands that read it (vaecli.rundir.layout opens and creates one).

    runs/<name>-<UTC timestamp>/
      config.yaml      resolved config (overrides applied), written before step 0
      meta.json        versions, devices, argv, start time, data shapes
      metrics.jsonl    one JSON object per log point
      events.*         TensorBoard scalars (same numbers as metrics.jsonl)
      checkpoints/     Orbax checkpoints, one folder per step
      checkpoint_sums/ size and CRC32 of each file of a finished checkpoint, one JSON per step
      samples/         PNG grids written at each evaluation, and `vae sample`'s pictures
      eval/            one JSON per `vae eval-elbo` protocol, `vae eval-samples` protocol, `vae grad-snr` and
                       `vae eval-disentanglement` call
      plots/           `vae plot`'s figures (and their arrays)
      summary.json     status (running | completed | paused | interrupted | failed | pruned), last checkpoint
                       step, final metrics, timings; rewritten atomically at every epoch
      train.lock       held (flock) by the process training the run; the OS releases it
                       when that process dies, however it dies

Every name above is spelled here and nowhere else: `Folder` (and `Run`, an opened one) gives
the paths, and `Output` the names of the files the commands write into `eval/`, `samples/`
and `plots/`, with their options, and reads them back (`Output.parse`).
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from vaecli import config as config_lib


def read_json(path: Path) -> dict | None:
    """A JSON file's object, or None when it is missing or unreadable."""
    try:
        out = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return out if isinstance(out, dict) else None


CONFIG, META, SUMMARY, METRICS, LOCK = "config.yaml", "meta.json", "summary.json", "metrics.jsonl", "train.lock"
EVENTS = "events.out.tfevents.*"  # TensorBoard's writer names its files; this is their pattern
CHECKPOINTS, CHECKPOINT_SUMS = "checkpoints", "checkpoint_sums"
EVAL, SAMPLES, PLOTS = "eval", "samples", "plots"


@dataclass(frozen=True)
class Folder:
    """The paths of a run folder, whether or not it exists or is complete."""

    path: Path

    config_file = property(lambda self: Path(self.path) / CONFIG)
    meta_file = property(lambda self: Path(self.path) / META)
    summary_file = property(lambda self: Path(self.path) / SUMMARY)
    metrics_file = property(lambda self: Path(self.path) / METRICS)
    lock_file = property(lambda self: Path(self.path) / LOCK)
    checkpoint_dir = property(lambda self: Path(self.path) / CHECKPOINTS)
    checkpoint_sums_dir = property(lambda self: Path(self.path) / CHECKPOINT_SUMS)
    eval_dir = property(lambda self: Path(self.path) / EVAL)
    samples_dir = property(lambda self: Path(self.path) / SAMPLES)
    plots_dir = property(lambda self: Path(self.path) / PLOTS)

    def event_files(self) -> list[Path]:
        return sorted(Path(self.path).glob(EVENTS))

    def summary(self) -> dict | None:
        """summary.json's object, or None when there is none (or it is unreadable)."""
        return read_json(self.summary_file)

    def output(self, name: "Output", ext: str | None = None, out: str | Path | None = None) -> Path:
        """Where `name` goes: in `out` when given (a command's --out), else in this folder's
        own folder for its kind (eval/, samples/ or plots/)."""
        folder = Path(out) if out is not None else Path(self.path) / _OUTPUTS[name.kind].folder
        return folder / name.file(ext)

    def outputs(self, kind: str) -> list["Output"]:
        """The `kind` outputs in this folder's own folder for it (none when it is missing)."""
        try:
            names = os.listdir(Path(self.path) / _OUTPUTS[kind].folder)
        except OSError:
            return []
        return [o for o in map(Output.parse, names) if o is not None and o.kind == kind]


def is_run(names) -> bool:
    """Whether a folder holding the files `names` is a run folder (for a walk over folders)."""
    return CONFIG in names and META in names


def marks_raw(cfg: config_lib.Config, params_kind: str) -> bool:
    """Whether an output of `params_kind` parameters ("ema" or "raw") is named `-raw`: only
    where the run also has EMA ones, whose files it then never overwrites."""
    return params_kind == "raw" and cfg.train.ema_decay > 0


@dataclass(frozen=True)
class _Kind:
    folder: str
    exts: tuple[str, ...]  # the first is the default
    pattern: re.Pattern


_STEP, _RAW = r"-step(?P<step>\d+)", r"(?P<raw>-raw)?"
_SPLIT = "train|validation|test"  # vaecli.data.SPLITS, spelled out: `vae runs` reads names without loading data/
_OUTPUTS = {  # a file name matches the pattern of one kind at most
    "elbo": _Kind(EVAL, (".json",), re.compile(rf"^(?P<split>{_SPLIT}){_STEP}-k(?P<k>\d+){_RAW}$")),
    "grad-snr": _Kind(EVAL, (".json",), re.compile(rf"^grad-snr{_STEP}{_RAW}$")),
    "disentanglement": _Kind(EVAL, (".json",), re.compile(rf"^disentanglement{_STEP}{_RAW}$")),
    "samples": _Kind(EVAL, (".json",), re.compile(
        rf"^samples-(?P<split>{_SPLIT}){_STEP}-n(?P<n>\d+)-seed(?P<seed>\d+)"
        rf"(?:-t(?P<temperature>[0-9.]+(?:e[-+]\d+)?|inf))?-f(?P<features>[a-z0-9_]+){_RAW}$")),
    "sample": _Kind(SAMPLES, (".png", ".npy", ".gif", "-labels.npy"), re.compile(
        rf"^(?P<mode>[a-z]+){_STEP}-seed(?P<seed>\d+)(?:-n(?P<n>\d+))?(?:-steps(?P<steps>\d+))?"
        rf"(?:-t(?P<temperature>[0-9.]+(?:e[-+]\d+)?|inf))?(?:-label(?P<label>\d+))?{_RAW}$")),
    "picture": _Kind(SAMPLES, (".png",), re.compile(rf"^(?P<mode>prior|recon){_STEP}$")),
    "curves": _Kind(PLOTS, (".png", ".npy"), re.compile(rf"^curves{_STEP}$")),
}
OUTPUT_KINDS = tuple(_OUTPUTS)


@dataclass(frozen=True)
class Output:
    """The name of a file a command writes about one checkpoint step, with the options that
    change its content: `<head>-step<S>[-<option><value>...][-raw]` and an extension.

    kind "elbo": `<split>-step<S>-k<K>` (eval-elbo, one per K); "samples":
    `samples-<split>-step<S>-n<N>-seed<s>[-t<T>]-f<features>` (eval-samples; `features` the
    feature file's hash prefix or a feature function's name); "grad-snr" and
    "disentanglement": `<kind>-step<S>`; "sample": `<mode>-step<S>-seed<s>[-n<n>][-steps<m>]
    [-t<T>][-label<L>]` (vae sample; -t only for the prior mode, T to 6 significant digits);
    "picture":
    `<prior|recon>-step<S>` (training's grids); "curves": `curves-step<S>` (the last step
    plotted by `vae plot`). `raw`: `-raw`, the raw parameters of a run with EMA (`marks_raw`)."""

    kind: str
    step: int
    raw: bool = False
    split: str | None = None
    k: int | None = None
    mode: str | None = None
    seed: int | None = None
    n: int | None = None
    steps: int | None = None
    temperature: float = 1.0
    features: str | None = None
    label: int | None = None  # sample: a conditional run's class (`vae sample --label`)

    def __post_init__(self):
        if self.kind not in _OUTPUTS:
            raise ValueError(f"unknown output kind {self.kind!r} (one of {', '.join(OUTPUT_KINDS)})")
        if self.mode != "prior" and self.kind != "samples":  # only these read it: other names do not carry it
            object.__setattr__(self, "temperature", 1.0)

    @property
    def stem(self) -> str:
        head = {"elbo": self.split, "sample": self.mode, "picture": self.mode,
                "samples": f"samples-{self.split}"}.get(self.kind, self.kind)
        opts = ""
        if self.kind == "elbo":
            opts = f"-k{self.k}"
        elif self.kind == "samples":
            opts = (f"-n{self.n}-seed{self.seed}" + (f"-t{self.temperature:g}" if self.temperature != 1 else "")
                    + f"-f{self.features}")
        elif self.kind == "sample":
            opts = (f"-seed{self.seed}" + (f"-n{self.n}" if self.n else "")
                    + (f"-steps{self.steps}" if self.steps else "")
                    + (f"-t{self.temperature:g}" if self.temperature != 1 else "")
                    + (f"-label{self.label}" if self.label is not None else ""))
        return f"{head}-step{self.step}{opts}" + ("-raw" if self.raw else "")

    @property
    def exts(self) -> tuple[str, ...]:
        """The extensions an output of this kind is written as (the first: its default)."""
        return _OUTPUTS[self.kind].exts

    def file(self, ext: str | None = None) -> str:
        exts = self.exts
        if ext is not None and ext not in exts:
            raise ValueError(f"a {self.kind} output is written as {', '.join(exts)}, not {ext}")
        return self.stem + (ext if ext is not None else exts[0])

    @classmethod
    def parse(cls, file_name: str) -> "Output | None":
        """The Output a file name spells (`Output.file`), or None for any other name."""
        for kind, spec in _OUTPUTS.items():
            for ext in sorted(spec.exts, key=len, reverse=True):
                if file_name.endswith(ext) and (m := spec.pattern.match(file_name[: -len(ext)])):
                    g = {k: v for k, v in m.groupdict().items() if v is not None}
                    ints = {k: int(g[k]) for k in ("step", "k", "seed", "n", "steps", "label") if k in g}
                    temp = {"temperature": float(g["temperature"])} if "temperature" in g else {}
                    out = cls(kind, raw="raw" in g, split=g.get("split"), mode=g.get("mode"), **ints, **temp,
                              features=g.get("features"))
                    return out if out.file(ext) == file_name else None  # e.g. step05: not a name vaecli writes
        return None
