"""Devices and processes: a 1-D data-parallel mesh over jax.sharding, jax.distributed for
several processes. Nothing home-made: XLA's SPMD partitioner splits the batch and inserts
the gradient all-reduce; this module only says where arrays live.

- Parameters, optimizer state and the training split are replicated on every device. The
  split is replicated, not sharded, because each step gathers a random batch from all of
  it (binarized MNIST is 39 MB as uint8; a sharded split would need an all-to-all per step).
- Each step's batch (and everything computed from it) is sharded over the mesh axis
  "data", so each device, and each process, works on its own slice of every batch.
- With one device nothing is sharded: the single-device program is unchanged.
- The replicas of one program (--seeds, --sweep, `vae tune`) are instead laid out over the
  devices (`replica_layout`): the state's leading replica axis is split over the mesh axis
  "replica", each device advancing its own replicas with the data on every device, so no
  device waits for another. With one replica per device, each runs the single-run program.
"""
from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from vaecli.errors import ConfigError, UsageError

AXIS, REPLICA_AXIS = "data", "replica"


def distributed_init(coordinator: str | None = None, num_processes: int | None = None,
                     process_id: int | None = None) -> None:
    """Join a multi-process job through `jax.distributed.initialize`, which also detects
    Slurm, Open MPI and TPU pod environments when called without arguments. Gloo prints its
    connection notes on file descriptor 1: the caller keeps them off the results (the CLI
    calls this inside vaecli.cli.process.results_alone_on_stdout)."""
    if coordinator is None and "VAECLI_COORDINATOR" in os.environ:
        coordinator = os.environ["VAECLI_COORDINATOR"]
        num_processes = int(os.environ["VAECLI_NUM_PROCESSES"])
        process_id = int(os.environ["VAECLI_PROCESS_ID"])
    # CPU processes need a collectives backend (GPUs and TPUs bring their own); must be
    # set before the first backend use, as must initialize itself.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                                   process_id=process_id)
    except (ValueError, RuntimeError) as e:
        raise UsageError(f"--distributed: cannot join the job ({' '.join(str(e).split())[:200]}); set "
                         f"VAECLI_COORDINATOR/VAECLI_NUM_PROCESSES/VAECLI_PROCESS_ID or run under Slurm/MPI") from None


def is_primary() -> bool:
    """Process 0 writes the run folder; the others compute their share and stay silent."""
    return jax.process_index() == 0


def make_mesh(devices: int | None) -> Mesh:
    """A 1-D mesh over the first `devices` devices of the job (None or 0: all of them)."""
    available = jax.devices()
    n = devices or len(available)
    if n > len(available):
        raise ConfigError(f"train.devices={n}: only {len(available)} device(s) here ({available[0].platform}); "
                          f"lower it or leave it 0 for all")
    if jax.process_count() > 1 and n != len(available):
        raise ConfigError(f"train.devices={n}: a multi-process job uses all {len(available)} devices; leave it 0")
    return Mesh(np.array(available[:n]), (AXIS,))


def check_layout(cfg) -> Mesh:
    """The mesh of `cfg.train.devices`, its batch checked against it: called before a run
    folder is created or reopened, so a layout that cannot run leaves nothing behind."""
    mesh = make_mesh(cfg.train.devices)
    check_batch(cfg.train.batch_size, mesh)
    return mesh


def replica_layout(cfg, replicas: int) -> Mesh | None:
    """The mesh that spreads a program's `replicas` over the devices, or None to keep the
    data-parallel mesh of `train.devices`. Used when there are several replicas, several
    devices of one process, and `train.devices` is 0 (all) or a count the replicas divide
    by; the devices are the most of them (at most train.devices) that the replicas divide
    evenly over, so that every device runs the same program (6 replicas on 4 devices: 3;
    a prime count above the devices: one device on a CPU, the data-parallel mesh on GPUs).
    Replicas are not padded to fill the devices."""
    available = jax.devices()
    if replicas < 2 or len(available) < 2 or jax.process_count() > 1:
        return None
    asked = cfg.train.devices or len(available)
    if asked > len(available):
        make_mesh(asked)  # refused there, naming the devices
    if cfg.train.devices and replicas % asked:
        raise ConfigError(f"train.devices={asked}: the {replicas} replicas of this program do not divide over "
                          f"{asked} devices (each device trains an equal share); set train.devices to a divisor "
                          f"of {replicas}, or 0 to let vaecli choose")
    n = max(d for d in range(1, asked + 1) if replicas % d == 0)
    if n == 1 and not cfg.train.devices and available[0].platform == "cpu":
        return make_mesh(1)  # CPU host devices stand for cores: splitting a small batch over them is slower
    return Mesh(np.array(available[:n]), (REPLICA_AXIS,)) if n > 1 else None


def is_replica_mesh(mesh: Mesh) -> bool:
    return mesh.axis_names == (REPLICA_AXIS,)


def place(tree, mesh: Mesh):
    """A program's state on its mesh: split over the replica axis on a replica mesh,
    replicated otherwise."""
    if not is_replica_mesh(mesh):
        return replicate(tree, mesh)
    return jax.device_put(tree, NamedSharding(mesh, P(REPLICA_AXIS)))


def check_batch(batch_size: int, mesh: Mesh, what: str = "train.batch_size") -> None:
    if batch_size % mesh.size:
        raise ConfigError(f"{what}={batch_size} must divide by the {mesh.size} devices of the mesh "
                          f"(the global batch is split evenly); use a multiple of {mesh.size}")


def batch_sharding(mesh: Mesh) -> NamedSharding | None:
    """Shard the leading (batch) axis; None on one device, where nothing is constrained."""
    return NamedSharding(mesh, P(AXIS)) if mesh.size > 1 else None


def replicate(tree, mesh: Mesh):
    """Every leaf as a global array replicated on the mesh (host values must be the same
    in every process, which they are: they come from the same seed and files)."""
    if mesh.size == 1 and jax.process_count() == 1:
        return jax.device_put(tree, mesh.devices.flat[0])
    sharding = NamedSharding(mesh, P())

    def put(leaf):
        host = np.asarray(leaf)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    return jax.tree.map(put, tree)


def to_host(tree):
    """Owned host numpy copies of (replicated) global arrays, in any process. Owned, because
    the device buffers are donated to the next epoch while Orbax is still writing them."""
    def get(a):
        if isinstance(a, jax.Array) and not a.is_fully_addressable:
            a = a.addressable_data(0)
        return np.array(a, copy=True)

    return jax.tree.map(get, tree)


def local(tree):
    """Arrays a single-device program of this process can take: unchanged in one process,
    host copies of the replicated global arrays in a multi-process job (where validation
    and pictures run on each process's own first device), and of a replica on another
    device than the first."""
    spread = any(isinstance(a, jax.Array) and len(a.sharding.device_set) == 1 and a.devices() != {jax.devices()[0]}
                 for a in jax.tree.leaves(tree))  # a replica held by another device
    return tree if jax.process_count() == 1 and not spread else to_host(tree)


def share_paths(paths):
    """Process 0's run folders, told to every process of the job (identity in one process)."""
    from pathlib import Path

    if jax.process_count() == 1:
        return paths
    from jax.experimental import multihost_utils

    size = 1 << 16
    buf = np.zeros(size, np.uint8)
    if paths is not None:
        raw = "\n".join(str(p) for p in paths).encode()
        buf[:len(raw)] = np.frombuffer(raw, np.uint8)
    out = np.asarray(multihost_utils.broadcast_one_to_all(buf))
    return [Path(p) for p in bytes(out).rstrip(b"\0").decode().split("\n")]
