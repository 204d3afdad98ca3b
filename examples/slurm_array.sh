#!/usr/bin/env bash
# One SLURM array task per line of a sweep file; each line holds the `--set` overrides of
# one run, separated by spaces (no spaces inside a value: model.hidden=[500,500]):
#
#   $ cat sweep.txt
#   optim.lr=1e-3 seed=0
#   optim.lr=3e-4 seed=0
#   objective.kl=mc seed=1
#   $ sbatch --array=1-$(wc -l < sweep.txt) examples/slurm_array.sh sweep.txt [extra vae train args]
#   $ vae runs runs/sweep                                 # once they are done (or while they run)
#
# Task N runs line N as run `<file stem>-N` under $RUNS_DIR. A task that is requeued
# (preemption, node failure, `scontrol requeue`) or submitted again finds its run folder
# and continues it with `vae train --resume` (a completed run: "nothing to do", exit 0),
# so resubmitting the whole array finishes exactly the runs that did not finish.
#
#SBATCH --job-name=vae-sweep
#SBATCH --array=1-3
#SBATCH --cpus-per-task=4
#SBATCH --gres=gpu:1
#SBATCH --time=04:00:00
#SBATCH --requeue
#SBATCH --output=vae-sweep-%A_%a.log
set -euo pipefail

SWEEP_FILE=${1:-${SWEEP_FILE:-}}
[ $# -gt 0 ] && shift
if [ -z "$SWEEP_FILE" ] || [ ! -f "$SWEEP_FILE" ]; then
  echo "error: give the sweep file (one line of overrides per task) as the first argument or SWEEP_FILE" >&2
  exit 2
fi
TASK=${SLURM_ARRAY_TASK_ID:?run under sbatch --array=1-N, or set SLURM_ARRAY_TASK_ID}
if ! [[ "$TASK" =~ ^[1-9][0-9]*$ ]]; then
  echo "error: SLURM_ARRAY_TASK_ID=$TASK: task ids are line numbers of $SWEEP_FILE, from 1 (--array=1-N)" >&2
  exit 2
fi
CONFIG=${CONFIG:-configs/bmnist_mlp.yaml}
RUNS_DIR=${RUNS_DIR:-runs/sweep}
NAME="$(basename "${SWEEP_FILE%.*}")-$TASK"

line=$(sed -n "${TASK}p" "$SWEEP_FILE")
if [ -z "${line// }" ]; then
  echo "error: $SWEEP_FILE has no line $TASK (array task ids are line numbers, from 1)" >&2
  exit 2
fi
read -r -a overrides <<< "$line"
sets=()
for o in "${overrides[@]}"; do sets+=(--set "$o"); done

# This task's run folder from an earlier attempt, if any (the newest one).
previous=""
shopt -s nullglob
for d in "$RUNS_DIR/$NAME"-*/; do  # sorted: timestamps put the newest last
  if [ -f "$d/config.yaml" ]; then previous=${d%/}; fi
done
if [ -n "$previous" ]; then
  echo "task $TASK: resuming $previous" >&2
  exec vae train --resume "$previous"  # its own config.yaml holds the overrides
fi
echo "task $TASK: ${sets[*]}" >&2
# The line's overrides come last: they win over the extra arguments shared by all tasks.
exec vae train --config "$CONFIG" "$@" "${sets[@]}" --name "$NAME" --runs-dir "$RUNS_DIR"
