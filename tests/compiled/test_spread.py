"""The memory check of replicas laid out over devices, on real compiled programs."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from vaecli.compiled import spread
from vaecli.errors import ResourceError


def outer_sum_program(n: int):
    """A program whose output is an (n, n) float32 matrix: XLA's analysis counts its bytes."""
    return jax.jit(lambda x: x[:, None] * x[None, :]).lower(jnp.ones(n)).compile()


def test_a_layout_needing_more_than_is_free_is_refused_in_one_line():
    compiled, device = [outer_sum_program(512)] * 2, jax.devices()[0]
    need = 2 * 512 * 512 * 4  # two host devices' outputs, summed: they share the machine's memory
    spread.check_memory(compiled, [device, device], 1, free=lambda d: need)  # just fits
    spread.check_memory(compiled, [device, device], 1, free=lambda d: None)  # unknown: not refused
    with pytest.raises(ResourceError, match=r"needs 2\.0 MiB on the 2 CPU devices.*2\.0 MiB are free.*--seeds 0-3") as e:
        spread.check_memory(compiled, [device, device], 3, free=lambda d: need - 1)
    assert "3 replica(s) per device" in str(e.value) and "\n" not in str(e.value)


def test_the_machine_s_free_memory_is_read():
    free = spread.free_bytes(jax.devices()[0])
    assert free is None or free > 2**20
