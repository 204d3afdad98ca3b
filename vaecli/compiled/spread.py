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
