"""Compiled, chunked evaluation of the ELBO and the K-sample importance-sampled log p(x).

One compiled program covers a split, in at most PROGRESS_STEPS calls queued at once (so a
long evaluation can say how far it is): a `lax.scan` over batches of examples, and inside
it a `lax.scan` over chunks of the K samples, so memory is bounded by batch_size × chunk
rows whatever K is, and nothing returns to the host until the end.
The chunk is chosen automatically (`compile_estimator`): as many rows as the backend's
default allows, halved until XLA's account of the program's scratch memory fits the
memory budget. The same pass gives the analytic KL per latent dimension, the encoder
means (for active units) and, optionally, a Monte Carlo KL from draws of its own.

Randomness is per (example, sample index): the numbers do not depend on the batch size,
the chunk size or the device, only on (seed, split, K) and the checkpoint.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from vaecli import clock, streams
from vaecli.compiled import cache, devices
from vaecli.errors import OutOfTime
from vaecli.models import densities
from vaecli.models.vae import Functional

TRACES = {"estimator": 0}  # incremented at trace time; tests read it to prove one compile
PROGRESS_STEPS = 100  # a split is evaluated in at most this many calls of its program


def chunk_size(k: int, batch_size: int, max_rows: int) -> int:
    """How many of the K samples to draw at once so that batch_size·chunk ≤ max_rows."""
    return max(1, min(k, max_rows // max(batch_size, 1)))


def default_max_rows() -> int:
    # Rows of (batch × samples) decoded at once. 2^16 rows of the 784-500-20 MLP decoder
    # take 0.6 GB of scratch memory on the CPU (XLA's memory analysis); a GPU wants bigger
    # chunks to stay busy (2^19 rows: 4.5 GB).
    return 2**16 if jax.default_backend() == "cpu" else 2**19


def memory_budget() -> int:
    """Scratch bytes one evaluation program may use: half the accelerator's memory, or 4 GiB
    of host RAM on the CPU (the machine is usually shared)."""
    device = jax.devices()[0]
    stats = device.memory_stats() if device.platform != "cpu" else None
    if stats and stats.get("bytes_limit"):
        return int(stats["bytes_limit"]) // 2
    return 4 * 2**30


def _scratch_bytes(compiled) -> int | None:
    try:
        return int(compiled.memory_analysis().temp_size_in_bytes)
    except Exception:  # not every backend reports it
        return None


def _draws(example_keys, sample_ids, d: int):
    """eps[s, b] ~ N(0, I_d) from key (example b, sample s): independent of batching and chunking."""
    per_sample = lambda s: jax.vmap(lambda kb: jax.random.normal(jax.random.fold_in(kb, s), (d,)))(example_keys)
    return jax.vmap(per_sample)(sample_ids)


def _chunked(total: int, chunk: int, step, init):
    """Fold `step(carry, sample_ids, valid)` over sample indices 0..total-1 in chunks of `chunk`
    (a `lax.scan`: one chunk of rows is alive at a time, whatever `total` is)."""

    def body(carry, c):
        ids = c * chunk + jnp.arange(chunk)
        return step(carry, ids, (ids < total)[:, None]), None

    out, _ = jax.lax.scan(body, init, jnp.arange(math.ceil(total / chunk)))
    return out


def _kl_monte_carlo(q, key, index, samples: int, max_rows: int):
    """Per example, the mean of log q(z|x) − log p(z) at `samples` fresh z ~ q: no decoder,
    so a row costs a few latent-sized vectors; chunks of at least 4096 rows keep the scan
    short even when K is 1."""
    mean, logvar = q
    kl_keys = jax.vmap(jax.random.fold_in, (None, 0))(jax.random.fold_in(key, streams.KL_MC), index)

    def monte_carlo(total, ids, valid):
        z = densities.reparameterize(mean, logvar, _draws(kl_keys, ids, mean.shape[-1]))
        return total + jnp.where(valid, densities.kl_monte_carlo(z, mean, logvar), 0.0).sum(0)

    b = mean.shape[0]
    return _chunked(samples, chunk_size(samples, b, max_rows), monte_carlo, jnp.zeros((b,))) / samples


def make_estimator_fn(fn: Functional, k: int, k_chunk: int, scale: int, kl_mc_samples: int = 0,
                   deterministic: bool = False, batch_sharding=None):
    """Compiled f(params, batches uint8 (nb, B, D), key, first_batch) -> per-example arrays
    (nb, B[, latent]) of the batches numbered first_batch, first_batch + 1, ... of the split.

    Any model offering `encode`, `noise_dim`, `log_terms` and `kl_per_dim` (vaecli.models.vae):
    the log-weight of a sample is log p(x|z) + log p(z) − log q(z|x) over all its latents.
    The KL is the closed form where the model has one (then also per dimension, and the
    Monte Carlo KL of `kl_mc_samples` fresh draws beside it), else the mean of log q − log p
    over the K draws. `deterministic` (an objective that draws no samples, the autoencoder:
    `not registry.objective(cfg).draws_samples`): z = the encoder's mean, no noise, and the KL is 0
    (the autoencoder has none), so −(recon + kl) is its objective.
    `batch_sharding` (several devices): each batch of examples is split over the mesh.
    """

    def one_batch(params, x_u8, first_index, key):
        vae = fn.bind(params)
        if batch_sharding is not None:
            x_u8 = jax.lax.with_sharding_constraint(x_u8, batch_sharding)
        x = x_u8.astype(jnp.float32) / scale
        q = vae.encode(x)
        b, d = x.shape[0], vae.noise_dim
        index = first_index + jnp.arange(b)
        example_keys = jax.vmap(jax.random.fold_in, (None, 0))(key, index)
        kl_closed = None if deterministic else vae.kl_per_dim(q)  # (B, latent) or None

        def importance(carry, ids, valid):
            lse, log_px_sum, kl_sum = carry
            eps = _draws(example_keys, ids, d)
            log_px, log_pz, log_qz = vae.log_terms(x, q, jnp.zeros_like(eps) if deterministic else eps)
            log_w = jnp.where(valid, log_px + log_pz - log_qz, -jnp.inf)
            return (jnp.logaddexp(lse, jax.nn.logsumexp(log_w, axis=0)),
                    log_px_sum + jnp.where(valid, log_px, 0.0).sum(0),
                    kl_sum + jnp.where(valid, log_qz - log_pz, 0.0).sum(0))

        init = (jnp.full((b,), -jnp.inf), jnp.zeros((b,)), jnp.zeros((b,)))
        lse, log_px_sum, kl_sum = _chunked(k, k_chunk, importance, init)
        if deterministic:
            kl = jnp.zeros((b,))
        else:
            kl = kl_sum / k if kl_closed is None else kl_closed.sum(-1)
        out = {"recon": -log_px_sum / k, "kl": kl, "log_likelihood": lse - math.log(k), "encoder_mean": vae.point(q)}
        if kl_closed is not None:
            out["kl_per_dim"] = kl_closed
            if kl_mc_samples:
                out["kl_mc"] = _kl_monte_carlo(q, key, index, kl_mc_samples, max(k_chunk * b, 4096))
        return out

    def run(params, batches, key, first_batch):
        TRACES["estimator"] += 1
        bsz = batches.shape[1]

        def body(_, inp):
            i, xb = inp
            return None, one_batch(params, xb, (first_batch + i) * bsz, key)

        _, out = jax.lax.scan(body, None, (jnp.arange(batches.shape[0]), batches))
        return out

    return jax.jit(run)


def batch_split(images: np.ndarray, batch_size: int) -> tuple[np.ndarray, int]:
    """Flatten and pad (N, ...) images to a whole number of batches -> ((nb, B, D), N)."""
    n = len(images)
    images = images.reshape(n, -1)
    bsz = min(batch_size, n)
    nb = math.ceil(n / bsz)
    padded = np.zeros((nb * bsz, *images.shape[1:]), images.dtype)
    padded[:n] = images
    return padded.reshape(nb, bsz, *images.shape[1:]), n


def compile_estimator(fn: Functional, params, images: np.ndarray, scale: int, k: int, batch_size: int,
                      max_rows: int | None = None, kl_mc_samples: int = 0, deterministic: bool = False,
                      mesh=None):
    """Put `images` on the device and compile the estimator for them, ahead of time.

    Returns (estimate, plan): `plan` says how K was chunked and the program's scratch bytes;
    `estimate(params, seed, report=None, deadline=None)` runs the one compiled program over
    the split (in up to PROGRESS_STEPS calls, calling `report(examples_done)` after each;
    raising OutOfTime as soon as the calls done so far say the rest would end past
    `deadline`, a `vaecli.clock.now()` time) and gives host
    arrays per example: recon, kl, log_likelihood (K-sample log p̂(x)), kl_mc
    (when kl_mc_samples > 0), and per example and latent dimension encoder_mean and
    kl_per_dim (N·latent floats: small next to the images, and it saves a second pass).
    With a `mesh` of several devices the examples of each batch are split over it (the
    parameters replicated), so K=5000 scales with the devices; the numbers stay the same.
    """
    batches, n = batch_split(images, batch_size)
    sharded = mesh is not None and mesh.size > 1
    if sharded:
        devices.check_batch(batches.shape[1], mesh, "--batch-size")
        params = devices.replicate(params, mesh)
    calls = _calls(batches)
    put = (lambda b: jax.device_put(b, devices.NamedSharding(mesh, devices.P(None, devices.AXIS)))) if sharded \
        else jax.device_put
    calls = [put(c) for c in calls]
    place = (lambda p: devices.replicate(p, mesh)) if sharded else (lambda p: p)
    bsz = batches.shape[1]
    rows = max_rows or default_max_rows()
    budget = memory_budget()
    while True:
        # Automatic chunking: a bigger model gets smaller chunks of the K samples, until XLA's
        # own account of the program's scratch memory fits the budget (one sample at a time is
        # the floor; then only a smaller --batch-size helps). An explicit max_rows is obeyed.
        k_chunk = chunk_size(k, bsz, rows)
        batch_sharding = devices.batch_sharding(mesh) if sharded else None
        key = cache.key("estimator", fn, k, k_chunk, scale, kl_mc_samples, deterministic, batch_sharding,
                           cache.signature(params), cache.signature(calls[0]))
        compiled = cache.get(key, lambda: make_estimator_fn(fn, k, k_chunk, scale, kl_mc_samples, deterministic,
                                                            batch_sharding).lower(
            params, calls[0], jax.random.key(0), 0).compile())
        scratch = _scratch_bytes(compiled)
        if max_rows is not None or scratch is None or scratch <= budget or k_chunk == 1:
            break
        rows = k_chunk * bsz // 2
    plan = {"sample_chunk": k_chunk, "batch_size": bsz, "scratch_bytes": scratch, "memory_budget_bytes": budget,
            "devices": mesh.size if sharded else 1}

    def estimate(params, seed: int, report=None, deadline: float | None = None) -> dict[str, np.ndarray]:
        out = jax.device_get(_run_calls(compiled, place(params), calls, jax.random.key(seed), report, deadline, n))
        return {name: np.concatenate([np.asarray(o[name]).reshape(-1, *o[name].shape[2:]) for o in out])[:n]
                for name in out[0]}

    return estimate, plan


def _run_calls(compiled, params, calls: list, key, report, deadline: float | None, n: int) -> list:
    """The compiled program over each of `calls`, reporting examples done and keeping to
    `deadline` as `compile_estimator`'s `estimate` says; its outputs, on the device."""
    step, bsz = calls[0].shape[:2]
    # Without a deadline every call is queued at once (they run in order); with one, at most
    # two are in flight, so that giving up leaves no queued work running behind it.
    ahead, outs, started = (len(calls) if deadline is None else 2), [], clock.now()
    if deadline is not None and started >= deadline:
        raise OutOfTime("its deadline had passed before it started")
    for i in range(len(calls)):
        while len(outs) < min(len(calls), i + ahead):
            outs.append(compiled(params, calls[len(outs)], key, len(outs) * step))
        if report is None and deadline is None:
            continue
        jax.block_until_ready(outs[i])
        if report is not None:
            report(min((i + 1) * step * bsz, n))
        if deadline is not None and i + 1 < len(calls):
            _check_deadline(deadline, clock.now() - started, i + 1, len(calls), outs)
    return outs


def _check_deadline(deadline: float, elapsed: float, done: int, total: int, outs) -> None:
    """OutOfTime when the `total - done` calls left, at the mean time of the `done` ones, end
    past `deadline`; the call in flight is waited for first, so nothing runs on after."""
    rest = elapsed / done * (total - done)
    if clock.now() + rest > deadline:
        jax.block_until_ready(outs)
        left = max(0.0, deadline - clock.now())
        raise OutOfTime(f"stopped after {done} of {total} parts ({clock.format_duration(elapsed)}): the rest needs "
                        f"about {clock.format_duration(rest)}, only {clock.format_duration(left)} are left")


def _calls(batches: np.ndarray) -> list[np.ndarray]:
    """The batches in at most PROGRESS_STEPS equal runs of the one compiled program, so a long
    evaluation (K=5000 on a CPU: minutes) can report how far it is; the last run is padded
    with empty batches (less than one run's worth: at most 1/PROGRESS_STEPS more work)."""
    per_call = math.ceil(len(batches) / PROGRESS_STEPS)
    count = math.ceil(len(batches) / per_call)
    padded = np.zeros((count * per_call, *batches.shape[1:]), batches.dtype)
    padded[:len(batches)] = batches
    return list(padded.reshape(count, per_call, *batches.shape[1:]))


def per_example(fn: Functional, params, images: np.ndarray, scale: int, k: int, seed: int,
                batch_size: int, max_rows: int | None = None, kl_mc_samples: int = 0) -> dict[str, np.ndarray]:
    """Per-example estimates over `images` (host uint8 or float); see `compile_estimator`."""
    estimate, _ = compile_estimator(fn, params, images, scale, k, batch_size, max_rows, kl_mc_samples)
    return estimate(params, seed)
