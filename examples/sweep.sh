#!/usr/bin/env bash
# A sweep is a shell loop: one `vae train` per combination of values, then one table.
#
#   examples/sweep.sh                                  # 2 learning rates x 3 seeds of bmnist_mlp
#   examples/sweep.sh --set train.epochs=5             # extra arguments go to every `vae train`
#                                                      # (the loop's values win over them)
#   LRS="1e-3 3e-4 1e-4" SEEDS="0 1" RUNS_DIR=runs/lr examples/sweep.sh
#
# Each run gets its own folder under $RUNS_DIR; a failed run does not stop the others
# (its folder says `failed`, and the script exits 1 at the end). The second and later
# runs load their compiled programs from JAX's compile cache instead of compiling.
set -uo pipefail

CONFIG=${CONFIG:-configs/bmnist_mlp.yaml}
RUNS_DIR=${RUNS_DIR:-runs/sweep}
LRS=${LRS:-"1e-3 3e-4"}
SEEDS=${SEEDS:-"0 1 2"}

failed=0
for lr in $LRS; do
  for seed in $SEEDS; do
    # stdout of `vae train` is the run folder; progress and errors go to stderr.
    if run=$(vae train --config "$CONFIG" "$@" --set "optim.lr=$lr" --set "seed=$seed" \
                       --name "lr$lr-seed$seed" --runs-dir "$RUNS_DIR"); then
      echo "done: $run" >&2
    else
      echo "failed: lr=$lr seed=$seed (exit $?)" >&2
      failed=1
    fi
  done
done

# One row per learning rate: mean ± standard deviation over the seeds.
vae runs "$RUNS_DIR" --group-by optim.lr --sort val_elbo --reverse
exit $failed
