"""The checks a GPU machine runs, in one script for one device call.

    python benchmarks/gpu_check.py --cache-dir .cache/data --reference .gpu/reference_epoch.py --out $OUT
    python benchmarks/gpu_check.py --cache-dir .cache/data --reference .gpu/reference_epoch.py --out $OUT \
        --only steps [--rounds 5]      # the per-step table alone (a few minutes)

Needs only vaecli's data cache (no TensorFlow/TFDS: GPU machines have none). It
0. times vaecli's compiled epoch per step next to the bare fused loop and the
   reference's loop (benchmarks/step_overhead.py) for bmnist_mlp (a whole epoch per
   measurement, so its per-epoch time too) and the IWAE-paper network at K=1 and K=50, once
   per train.precision and once per candidate XLA flag set (each in a fresh process: XLA
   reads XLA_FLAGS once, when the backend starts);
1. rebuilds the reference's .amat input from the cache and times reference_epoch.py and
   vaecli's epoch alternately (benchmarks/epoch_time.py), on this device;
2. trains the full 30-epoch bmnist_mlp and evaluates the test split with K=1 and K=5000,
   reporting the evaluation time after compilation;
3. times 4 and 8 seeds of bmnist_mlp and of the IWAE-paper network, 2 epochs, as sequential
   `vae train` processes against one `vae train --seeds` program laid out over the machine's
   devices (vaecli.compiled.devices.replica_layout: over the GPUs when there are several),
   whole processes (benchmarks/replicas.py --layout), with the devices JAX sees.

    python benchmarks/gpu_check.py --cache-dir .cache/data --reference R --out $OUT --only replicas
Prints JSON lines; nothing is asserted.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def write_amat(cache_dir: str, folder: Path) -> None:
    from vaecli import config, data

    cfg = config.load(None, [f"data.cache_dir={cache_dir}"])
    folder.mkdir(parents=True, exist_ok=True)
    flat = data.load_split(cfg.data, "train").flat
    chars = (flat + ord("0")).astype(np.uint8)
    rows = np.full((len(flat), 784 * 2), ord(" "), np.uint8)
    rows[:, 0::2] = chars
    rows[:, -1] = ord("\n")
    (folder / "binarized_mnist_train.amat").write_bytes(rows.tobytes())


# Candidate XLA flags for the fused GPU step, measured by check 0 before vaecli relies on any
# (vaecli sets none today; one adopted would be set by vaecli itself, before the backend starts).
XLA_CANDIDATES = {"none": "", "triton_gemm_any": "--xla_gpu_triton_gemm_any=true",
                  "no_triton_gemm": "--xla_gpu_enable_triton_gemm=false"}
STEP_CONFIGS = "configs/bmnist_mlp.yaml=390,configs/paper/iwae_vae_k1.yaml=2500,configs/paper/iwae_k50.yaml=2500"


def step_table(cache_dir: str, reference: str, rounds: int) -> None:
    """Check 0: benchmarks/step_overhead.py per precision (no flags) and per XLA flag set (float32)."""
    import os

    runs = [(f"precision={p}", "", p) for p in ("float32", "tf32", "bfloat16")]
    runs += [(f"xla={name}", flags, "float32") for name, flags in XLA_CANDIDATES.items() if flags]
    for label, flags, precision in runs:
        env = {**os.environ, "XLA_FLAGS": " ".join(filter(None, [os.environ.get("XLA_FLAGS", ""), flags]))}
        t = time.perf_counter()
        out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "step_overhead.py"), "--cache-dir", cache_dir,
                              "--rounds", str(rounds), "--configs", STEP_CONFIGS, "--reference", reference, "--set", f"train.precision={precision}"],
                             capture_output=True, text=True, env=env, cwd=ROOT)
        sys.stderr.write(out.stderr[-2000:] if out.returncode else "")
        for line in out.stdout.splitlines():
            if line.startswith("{"):
                print(json.dumps({"check": "step_overhead", "variant": label, **json.loads(line)}), flush=True)
            elif line.strip():
                print(f"# {label}: {line}", flush=True)
        print(json.dumps({"check": "step_overhead_done", "variant": label, "rc": out.returncode,
                          "wall_s": round(time.perf_counter() - t, 1)}), flush=True)


def vae(*args: str) -> str:
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "vaecli.cli", *args], check=True, capture_output=True,
                         text=True, cwd=ROOT)
    sys.stderr.write(out.stderr[-3000:])
    print(json.dumps({"command": " ".join(args[:2]), "wall_s": round(time.perf_counter() - t, 2)}), flush=True)
    return out.stdout


def replica_layouts(cache_dir: str) -> None:
    import replicas

    devices = json.loads(subprocess.run([sys.executable, "-c", "import jax, json; print(json.dumps("
                                         "[str(d) for d in jax.devices()]))"], check=True, capture_output=True,
                                        text=True).stdout)
    print(json.dumps({"check": "replica_layouts", "devices": devices}), flush=True)
    replicas.layouts(cache_dir, str(ROOT.parent / "shared" / "data" / "binarized_mnist"),
                     [ROOT / "configs" / "bmnist_mlp.yaml", ROOT / "configs" / "paper" / "iwae_vae_k1.yaml"],
                     [4, 8], epochs=2, rounds=1)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache-dir", required=True)
    ap.add_argument("--reference", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--only", choices=["steps", "rest", "replicas"], default=None,
                    help="steps: check 0 alone (the per-step table); rest: checks 1-3; replicas: check 3 alone")
    args = ap.parse_args()
    out = Path(args.out)
    if args.only == "replicas":
        replica_layouts(args.cache_dir)
        sys.exit(0)
    if args.only != "rest":
        step_table(args.cache_dir, args.reference, max(args.rounds, 3))
    if args.only == "steps":
        sys.exit(0)
    amat = Path("/tmp/vaecli_amat")
    write_amat(args.cache_dir, amat)

    import epoch_time

    refs, ours = [], []
    for _ in range(args.rounds):
        refs.append(epoch_time.reference_epoch(str(amat), 5, Path(args.reference)))
        ours.append(epoch_time.vaecli_epoch(str(amat), 10, args.cache_dir)["epoch_s_median"])
    print(json.dumps({"check": "epoch_time", "reference": refs, "vaecli_epoch_s": ours}), flush=True)

    runs_dir = out / "runs"
    run = vae("train", "--config", "configs/bmnist_mlp.yaml", "--set", f"data.cache_dir={args.cache_dir}",
              "--set", "log.tensorboard=false", "--runs-dir", str(runs_dir)).strip().splitlines()[-1]
    from vaecli.rundir import layout

    summary = json.loads(layout.Folder(run).summary_file.read_text())
    print(json.dumps({"check": "train_30_epochs", **{k: summary[k] for k in
                      ("epoch_s_median", "epoch_s_first", "compile_s", "wall_s", "final_validation")}}), flush=True)
    report = json.loads(vae("eval-elbo", run, "--split", "test", "--samples", "1,50,5000", "--json"))
    for res in report["results"]:
        print(json.dumps({"check": f"eval_k{res['samples']}", **{f: res[f] for f in
                          ("elbo", "recon", "kl", "kl_mc", "kl_mc_stderr", "log_likelihood", "log_likelihood_stderr",
                           "nll", "num_examples", "active_units")},
                          "timing": res["timing"], "chunk": res["protocol"]["sample_chunk"]}), flush=True)
    replica_layouts(args.cache_dir)
