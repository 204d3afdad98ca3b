"""The host's view of a program's replicas: every tree it reads has a leading replica axis.

The device program of a single run carries no such axis (it is then the plain, unbatched
program, and its checkpoints have the plain layout); `ReplicaAxis` is the only place that
knows. Host-side code always sees a replica axis: one run is the case of one replica.
"""
from __future__ import annotations

import jax
import numpy as np

from vaecli.compiled import devices


class ReplicaAxis:
    def __init__(self, n: int):
        self.n = n

    def stack(self, trees):
        return trees[0] if self.n == 1 else jax.tree.map(lambda *a: np.stack(a), *trees)

    def take(self, tree, r: int):
        return tree if self.n == 1 else jax.tree.map(lambda a: a[r], tree)

    def put(self, host_tree, r: int, tree):
        """`host_tree` (owned numpy arrays) with slice r replaced by `tree`."""
        if self.n == 1:
            return tree

        def put(a, b):
            a[r] = np.asarray(b)
            return a

        return jax.tree.map(put, host_tree, tree)

    def host(self, tree) -> dict:
        """Device arrays -> numpy with the replica axis first."""
        out = devices.to_host(tree)
        return jax.tree.map(lambda a: np.asarray(a)[None], out) if self.n == 1 else out
