"""A program's replicas laid out over devices (vaecli.compiled.devices.replica_layout): each
device runs the epoch of its own replicas, on its own copy of the data, and JAX dispatches
every device's epoch before waiting for any, so the devices work at once.

A device that holds one replica runs the single-run epoch, the very program the replica
would run alone, so its numbers are those of the run alone bit for bit; a device that holds
several runs the vmapped epoch of its share. The program is compiled once per device (an
XLA executable belongs to its devices); the state between epochs is one global array per
leaf, split over the mesh axis "replica".
"""
from __future__ import annotations

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from vaecli.compiled.devices import REPLICA_AXIS
from vaecli.errors import ResourceError

def _size(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 / 10 else f"{n / 2**20:.1f} MiB"


def free_bytes(device) -> int | None:
    """Memory a program may still take on `device`: what its allocator reports free (GPUs),
    or for CPU host devices, which share the machine's memory, MemAvailable; None if unknown."""
    stats = device.memory_stats()
    if stats and "bytes_limit" in stats:
        return stats["bytes_limit"] - stats.get("bytes_in_use", 0)
    try:
        with open("/proc/meminfo") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        return None


def check_memory(compiled: list, devices: list, per_device: int, free=free_bytes) -> None:
    """Refuse, before the first epoch, a layout whose devices lack the memory XLA's analysis
    of their epoch programs says they need beyond the arguments already placed (outputs and
    temporaries). CPU host devices share one memory, so their needs are summed."""
    need = []
    for c in compiled:
        m = c.memory_analysis()
        need.append(0 if m is None else m.output_size_in_bytes - m.alias_size_in_bytes + m.temp_size_in_bytes)
    groups = [(devices, sum(need))] if devices[0].platform == "cpu" else [([d], n) for d, n in zip(devices, need)]
    for group, bytes_needed in groups:
        available = free(group[0])
        if available is not None and bytes_needed > available:
            where = f"the {len(group)} CPU devices" if len(group) > 1 else str(group[0])
            raise ResourceError(
                f"the epoch program of {per_device} replica(s) per device needs {_size(bytes_needed)} on "
                f"{where} beyond its inputs (XLA's memory analysis), {_size(available)} are free; train fewer "
                "replicas per program (e.g. --seeds 0-3, then 4-7) or smaller batches")


def _on(a: jax.Array, device):
    """The part of global array `a` held by `device`."""
    return next(s.data for s in a.addressable_shards if s.device == device)


class SpreadEpoch:
    """f(state, images) -> (state, metrics), each a global array split over the replicas."""

    def __init__(self, epoch_jit, state, images, mesh: Mesh, replicas: int):
        self.mesh, self.per_device = mesh, replicas // mesh.size
        self.devices = list(mesh.devices.flat)
        self.sharding = NamedSharding(mesh, P(REPLICA_AXIS))
        self.compiled = [epoch_jit.lower(self._local(state, d), _on(images, d)).compile() for d in self.devices]
        check_memory(self.compiled, self.devices, self.per_device)

    def _local(self, tree, device):
        part = jax.tree.map(lambda a: _on(a, device), tree)
        return jax.tree.map(lambda a: a[0], part) if self.per_device == 1 else part

    def __call__(self, state, images):
        # every device's part first: running one donates its buffers, which ends `state`
        parts = [(self._local(state, d), _on(images, d)) for d in self.devices]
        outs = [fn(*part) for fn, part in zip(self.compiled, parts)]
        return jax.tree.map(self._join, *outs)

    def _join(self, *parts):
        parts = [p[None] for p in parts] if self.per_device == 1 else list(parts)
        shape = (parts[0].shape[0] * len(parts), *parts[0].shape[1:])
        return jax.make_array_from_single_device_arrays(shape, self.sharding, parts)
