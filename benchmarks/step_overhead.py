"""Time per training step: vaecli's compiled epoch next to a bare fused loop and the reference, in one run.

    python benchmarks/step_overhead.py --cache-dir /work/cache/data [--rounds 5] [--before REV]
        [--configs configs/bmnist_mlp.yaml=390,configs/paper/iwae_vae_k1.yaml=2500,...]

For each config (`path=steps`: the steps one measurement runs; a fraction of an epoch is
fine) it builds, on the same data and the same network:
  vaecli     the compiled epoch as the trainer builds it (state.init_state + epoch.make_epoch_fn);
  bare       benchmarks/bare_loop.py: same model and objective, plain optax.adam, lax.scan, no checks;
  reference  ../shared/bench/reference_epoch.py's way: one jitted step per batch, batches sliced
             and copied from the host. For bmnist_mlp its own network and loss (imported from the
             file); for other configs the same pattern around vaecli's network and objective;
  before     (with --before REV) vaecli's compiled/epoch.py and state.py as at git revision REV,
             loaded beside the current ones, so a cure is measured against its absence in one run.
Then it runs one measurement of each, alternating, `--rounds` times (compilation and one warm-up
call excluded) and prints, per config, the median time per step of each and the ratios
vaecli/bare and vaecli/reference (median of the per-round paired ratios, which cancel most of
the load other processes put on the machine), both as wall time and as this process's CPU
time (all threads), and XLA's count of the bytes one step accesses (load-independent). One
JSON line per config at the end; nothing is asserted.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np
import optax

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
REFERENCE = ROOT.parent / "shared" / "bench" / "reference_epoch.py"
DEFAULT_CONFIGS = "configs/bmnist_mlp.yaml=390,configs/paper/iwae_vae_k1.yaml=2500,configs/paper/iwae_k50.yaml=500"

from bare_loop import make_bare_epoch  # noqa: E402
from vaecli import config as config_lib, data  # noqa: E402
from vaecli.models import objectives  # noqa: E402


def load_file(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def vaecli_modules(rev: str | None, tmp: Path):
    """(state module, epoch module): the current ones, or those of git revision `rev`."""
    if rev is None:
        from vaecli.compiled import epoch, state
        return state, epoch
    mods = []
    for name in ("state", "epoch"):
        src = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:vaecli/compiled/{name}.py"], check=True,
                             capture_output=True, text=True).stdout
        (tmp / f"before_{name}.py").write_text(src)
        mods.append(load_file(tmp / f"before_{name}.py", f"vaecli_before_{name}"))
    return tuple(mods)


def timed(call) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process, all threads) of one call."""
    t, c = time.perf_counter(), time.process_time()
    jax.block_until_ready(call())
    return time.perf_counter() - t, time.process_time() - c


def bytes_per_step(variant) -> float | None:
    """XLA's own count of the bytes one compiled step reads and writes (the scan body is counted
    once): a figure no other process on the machine can disturb. None for the reference loop."""
    if not isinstance(variant, Compiled):
        return None
    cost = variant.fn.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return cost.get("bytes accessed")


class Compiled:
    """A fused variant: one call runs `steps` steps; the state is carried from call to call."""

    def __init__(self, epoch_fn, state, images):
        self.images = images
        self.state = state
        self.fn = epoch_fn.lower(state, images).compile()
        self.run()  # warm-up

    def run(self):
        self.state, out = self.fn(self.state, self.images)
        return out


def vaecli_variant(mods, cfg, split, n, images):
    state_lib, epoch_lib = mods
    fn, tx, state = state_lib.init_state(cfg, split.image_shape, train=split)
    return Compiled(epoch_lib.make_epoch_fn(fn, tx, cfg, n, split.scale), state, images)


class Reference:
    """reference_epoch.py's loop: a jitted step per batch, the batch sliced and copied from the host."""

    def __init__(self, cfg, split, n, ref_module=None):
        self.batch, self.steps = cfg.train.batch_size, n // cfg.train.batch_size
        self.train = split.flat[:n].astype(np.float32) / split.scale
        tx = optax.adam(cfg.optim.lr, **({} if cfg.optim.name == "sgd" else {"eps": cfg.optim.eps}))
        if ref_module is not None:  # the reference's own network and loss
            params, loss_fn = ref_module.init(jax.random.key(0)), ref_module.negative_elbo
        else:
            from vaecli.models import vae as models
            fn = models.functional(cfg.model, split.image_shape, cfg.seed, train=(split.flat, split.scale))
            obj = cfg.objective
            params = fn.params
            loss_fn = lambda p, x, key: objectives.training_loss(fn.bind(p), x, key, obj, kl_weight=obj.beta)[0]

        @jax.jit
        def step(params, opt, x, key):
            loss, g = jax.value_and_grad(loss_fn)(params, x, key)
            upd, opt = tx.update(g, opt, params)
            return optax.apply_updates(params, upd), opt, loss

        self.step, self.params, self.opt = step, params, tx.init(params)
        self.key, self.rng = jax.random.key(1), np.random.default_rng(0)
        self.run()  # compile + warm-up

    def run(self):
        perm, loss = self.rng.permutation(len(self.train)), None
        for i in range(self.steps):
            self.key, sub = jax.random.split(self.key)
            self.params, self.opt, loss = self.step(self.params, self.opt,
                                                    self.train[perm[i * self.batch:(i + 1) * self.batch]], sub)
        return loss


def build(path: str, steps: int, cache_dir: str, rev: str | None, tmp: Path, overrides: list[str],
          reference: Path = REFERENCE):
    cfg = config_lib.load(ROOT / path, [f"data.cache_dir={cache_dir}", *overrides])
    split = data.load_split(cfg.data, "train")
    n = min(len(split), steps * cfg.train.batch_size)
    images = jax.device_put(split.flat[:n])
    variants = {"vaecli": vaecli_variant(vaecli_modules(None, tmp), cfg, split, n, images)}
    if rev is not None:
        variants["before"] = vaecli_variant(vaecli_modules(rev, tmp), cfg, split, n, images)
    bare_fn, bare_state = make_bare_epoch(cfg, split, n)
    variants["bare"] = Compiled(bare_fn, bare_state, images)
    ref_module = load_file(reference, "reference_epoch") if Path(path).name == "bmnist_mlp.yaml" else None
    variants["reference"] = Reference(cfg, split, n, ref_module)
    return cfg, n // cfg.train.batch_size, len(split) // cfg.train.batch_size, variants


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache-dir", required=True, help="vaecli data cache holding binarized_mnist")
    ap.add_argument("--configs", default=DEFAULT_CONFIGS, help="comma-separated path=steps (default: %(default)s)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--before", default=None, help="also time vaecli's epoch.py/state.py at this git revision")
    ap.add_argument("--reference", default=str(REFERENCE), help="path of reference_epoch.py")
    ap.add_argument("--set", action="append", default=[], help="config override for every config (key=value)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        benches = []
        for item in args.configs.split(","):
            path, _, steps = item.partition("=")
            t = time.perf_counter()
            cfg, n_steps, epoch_steps, variants = build(path, int(steps or 500), args.cache_dir, args.before,
                                                         Path(tmp), args.set, Path(args.reference))
            print(f"# {path}: {n_steps} steps per measurement, built and compiled in "
                  f"{time.perf_counter() - t:.1f} s", flush=True)
            benches.append((path, n_steps, epoch_steps, variants))
        times = {(p, v): [] for p, _, _, vs in benches for v in vs}
        cpu = {key: [] for key in times}
        mbytes = {(p, v): bytes_per_step(x) for p, _, _, vs in benches for v, x in vs.items()}
        for r in range(args.rounds):
            for path, n_steps, _, variants in benches:
                row = []
                for name, variant in variants.items():
                    wall, cpu_s = timed(variant.run)
                    times[path, name].append(wall / n_steps)
                    cpu[path, name].append(cpu_s / n_steps)
                    row.append(f"{name} {times[path, name][-1] * 1e6:8.1f}/{cpu[path, name][-1] * 1e6:8.1f}")
                print(f"round {r + 1} {path}: " + "  ".join(row) + "  (µs/step wall/CPU)", flush=True)
    print()
    names = list(benches[0][3])
    pairs = [("vaecli", "bare"), ("vaecli", "reference")] + ([("before", "bare"), ("vaecli", "before")]
                                                             if args.before else [])
    print(f"{'config':31} {'':4} " + " ".join(f"{v + ' µs':>12}" for v in names) +
          " " + " ".join(f"{a + '/' + b:>16}" for a, b in pairs))
    records = []
    for path, n_steps, epoch_steps, variants in benches:
        rec = {"config": path, "steps_per_measurement": n_steps, "rounds": args.rounds,
               "device": jax.devices()[0].device_kind, "precision": cfg.train.precision,
               "xla_flags": os.environ.get("XLA_FLAGS", "")}
        for kind, series in (("wall", times), ("cpu", cpu)):
            med = {v: statistics.median(series[path, v]) for v in variants}
            ratio = lambda a, b: statistics.median(x / y for x, y in zip(series[path, a], series[path, b]))
            rec[kind] = {**{f"{v}_us_per_step": round(med[v] * 1e6, 2) for v in variants},
                         **{f"{v}_ms_per_epoch": round(med[v] * epoch_steps * 1e3, 2) for v in variants},
                         **{f"{a}_over_{b}": round(ratio(a, b), 3) for a, b in pairs}}
            print(f"{path:31} {kind:4} " + " ".join(f"{med[v] * 1e6:12.1f}" for v in names) + " " +
                  " ".join(f"{rec[kind][f'{a}_over_{b}']:16.3f}" for a, b in pairs))
        rec["mbytes_per_step"] = {v: round(mbytes[path, v] / 1e6, 2) for v in variants if mbytes[path, v]}
        print(f"{path:31} {'MB':4} " + " ".join(f"{rec['mbytes_per_step'].get(v, float('nan')):12.2f}" for v in names)
              + "   (XLA's bytes accessed per step)")
        records.append(rec)
    print()
    for rec in records:
        print(json.dumps(rec))


if __name__ == "__main__":
    main()
