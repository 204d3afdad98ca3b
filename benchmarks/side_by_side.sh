#!/usr/bin/env bash
# One training with XLA's default threads, one single-threaded and pinned to a core, and two
# single-threaded ones at once on two cores (seeds 0 and 1): is a second core worth more as a
# second thread of one step or as a second training?
#
#   bash benchmarks/side_by_side.sh CACHE_DIR [CONFIG] [ROUNDS] [EPOCHS]
#
# CACHE_DIR holds the config's prepared dataset (`vae data prepare`). Prints, per round, the
# summary.json `epoch_s_median` of each setting. Needs two CPUs numbered 0 and 1 (taskset).
set -euo pipefail
cache=${1:?usage: side_by_side.sh CACHE_DIR [CONFIG] [ROUNDS] [EPOCHS]}
config=$(realpath "${2:-configs/paper/iwae_vae_k1.yaml}")
rounds=${3:-3}
epochs=${4:-5}
single="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
sets=(--set "train.epochs=$epochs" --set "data.cache_dir=$cache" --set eval.every_epochs=1000
      --set checkpoint.every_epochs=1000 --set log.progress=none)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

median() {
  python3 -c "import json, glob, sys; print(round(json.load(open(glob.glob(sys.argv[1] + '/*/summary.json')[0]))['epoch_s_median'], 3))" "$1"
}

for round in $(seq "$rounds"); do
  rm -rf "${tmp:?}"/*
  vae train -c "$config" "${sets[@]}" --runs-dir "$tmp/default" > /dev/null
  XLA_FLAGS="$single" taskset -c 0 vae train -c "$config" "${sets[@]}" --runs-dir "$tmp/alone" > /dev/null
  XLA_FLAGS="$single" taskset -c 0 vae train -c "$config" "${sets[@]}" --runs-dir "$tmp/pair0" > /dev/null &
  XLA_FLAGS="$single" taskset -c 1 vae train -c "$config" "${sets[@]}" --set seed=1 --runs-dir "$tmp/pair1" > /dev/null
  wait
  echo "round $round: default $(median "$tmp/default") s  single-threaded alone $(median "$tmp/alone") s  two at once $(median "$tmp/pair0") s, $(median "$tmp/pair1") s"
done
