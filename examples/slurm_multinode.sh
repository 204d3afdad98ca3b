#!/usr/bin/env bash
# One run over several nodes: `srun` starts one `vae train --distributed` per node, and
# jax.distributed.initialize() finds the coordinator, the process count and this process's
# rank in the Slurm environment. Each process drives its node's GPUs; the global batch
# (train.batch_size) is split over all of them; only process 0 writes the run folder, which
# must be on a filesystem every node sees.
#
#   sbatch examples/slurm_multinode.sh configs/bmnist_mlp.yaml [extra vae train args]
#   sbatch examples/slurm_multinode.sh --resume runs/<run>        # continue the same job
#
#SBATCH --job-name=vae-multinode
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gres=gpu:4
#SBATCH --cpus-per-task=16
#SBATCH --time=04:00:00
#SBATCH --output=vae-multinode-%j.log
set -euo pipefail

if [ $# -lt 1 ]; then
  echo "error: give a config file, or --resume RUN" >&2
  exit 2
fi
if [ "$1" = "--resume" ]; then
  ARGS=(--resume "$2"); shift 2
else
  ARGS=(--config "$1" --runs-dir "${RUNS_DIR:-runs}"); shift
fi
# Without Slurm (or MPI) set VAECLI_COORDINATOR=host:port, VAECLI_NUM_PROCESSES and
# VAECLI_PROCESS_ID for each process instead; the tests do that on localhost.
srun vae train "${ARGS[@]}" --distributed "$@"
