#!/usr/bin/env bash
# One `vae tune` study worked by the tasks of a SLURM array: each task is one worker, and the
# workers share the study through its storage, so no trial runs twice and the pruner sees
# every worker's trials.
#
#   $ sbatch --array=0-7 examples/slurm_tune.sh --space optim.lr=log:1e-4:1e-2 \
#         --space objective.beta=0.5:4 --trials 64 --replicas 8
#   $ vae runs runs/tune/lr-beta-<ts>            # the whole study, while it runs or after
#
# The first task of the array creates the study `$NAME` under $RUNS_DIR (a folder every node
# sees: the trials' run folders live there) and works on it; the others wait for its
# study.json and join it with `vae tune --resume`. A task that is requeued, or an array
# submitted again with the same NAME, joins the existing study: trials left by a killed task
# go on from their checkpoints in the next task that starts, finished ones are never rerun.
#
# STORAGE: `journal` (default; the journal file in the study folder, fine for a handful of
# workers on a shared filesystem) or a database URL for many workers, e.g.
# STORAGE=postgresql://me@dbhost/optuna (put the password in ~/.pgpass, not in the URL: the
# study keeps its URL in study.json).
#
#SBATCH --job-name=vae-tune
#SBATCH --array=0-3
#SBATCH --cpus-per-task=4
#SBATCH --gres=gpu:1
#SBATCH --time=04:00:00
#SBATCH --requeue
#SBATCH --output=vae-tune-%A_%a.log
set -euo pipefail

TASK=${SLURM_ARRAY_TASK_ID:?run under sbatch --array=0-N, or set SLURM_ARRAY_TASK_ID}
FIRST=${SLURM_ARRAY_TASK_MIN:-0}
CONFIG=${CONFIG:-configs/bmnist_mlp.yaml}
RUNS_DIR=${RUNS_DIR:-runs/tune}
NAME=${NAME:-lr-beta}
STORAGE=${STORAGE:-journal}
WAIT_S=${WAIT_S:-600}  # how long a joining task waits for the first task to create the study

study() {  # the newest study folder of this NAME, if any
  local found="" d
  shopt -s nullglob
  for d in "$RUNS_DIR/$NAME"-*/; do  # sorted: timestamps put the newest last
    if [ -f "$d/study.json" ]; then found=${d%/}; fi
  done
  echo "$found"
}

existing=$(study)
if [ -n "$existing" ]; then
  echo "task $TASK: joining $existing" >&2
  exec vae tune --resume "$existing"
fi
if [ "$TASK" = "$FIRST" ]; then
  echo "task $TASK: creating study $NAME under $RUNS_DIR" >&2
  exec vae tune --config "$CONFIG" "$@" --name "$NAME" --runs-dir "$RUNS_DIR" --storage "$STORAGE"
fi
for _ in $(seq "$WAIT_S"); do
  existing=$(study)
  if [ -n "$existing" ]; then
    echo "task $TASK: joining $existing" >&2
    exec vae tune --resume "$existing"
  fi
  sleep 1
done
echo "error: no study $NAME under $RUNS_DIR after ${WAIT_S}s; is task $FIRST of the array running?" >&2
exit 1
