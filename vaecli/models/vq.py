"""The VQ-VAE (van den Oord et al. 2017), `model.latent: vq` with `objective.name: vq`.

The encoder's output z_e is cut into L codes of D numbers (vaecli.models.vq_networks), each
replaced by its nearest of the K codebook vectors e_k; the decoder sees the quantised z_q.
The loss per image, summed over the L codes and their D numbers like the reconstruction is
summed over pixels:

    −log p(x|z_q) + |sg[z_e] − e|² (model.codebook_update=loss only) + β·|z_e − sg[e]|²

with the straight-through gradient: z_q = z_e + sg[e − z_e], so d loss/d z_e = d loss/d z_q.
With `codebook_update: ema` the codebook is not learned by gradient but set after every step
from moving averages (the paper's appendix): counts N_k ← γ N_k + (1 − γ) n_k, sums
m_k ← γ m_k + (1 − γ) Σ_{z_e ↦ k} z_e, e_k = m_k / Ñ_k with the Laplace-smoothed
Ñ_k = (N_k + ε) / (Σ N + K ε) · Σ N. Those statistics are variables of the model
(`CodebookStat`), so they live in the state's params, are checkpointed and restored with
them, and the trainer writes the values the loss returns under "assign" after each update
(vaecli.compiled.epoch). N_k starts at 1 and m_k at e_k, so a code no encoder output has
reached stays where it was. A dead code (N_k below model.dead_code_threshold) is moved onto
an encoder output of the batch drawn with the step's key, its statistics reset (N_k = 1).

The posterior is a point mass on the nearest codes, so with a uniform prior over the K codes
KL = L·log K, which the logs report as `kl` (the ELBO of the logs is the uniform-prior
bound). The learned prior over the codes is a second stage (vaecli.models.pixelcnn).

The model offers the interface of vaecli.models.vae: `encode` gives (z_e, −inf): the
continuous pre-quantisation code and the log-variance of a point mass; decoding any z
quantises it first, so pictures, interpolation and the Python API work in the continuous
pre-quantisation space and every decoded point is a grid of codebook vectors.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from vaecli.models import vq_networks

LAPLACE_EPS = 1e-5  # the Laplace smoothing of the counts, as the paper's reference code
_stop = jax.lax.stop_gradient


class CodebookStat(nnx.Variable):
    """A moving-average statistic of the codebook: set by the trainer, never by the optimizer
    (its gradient is zero, and the value the loss returns replaces it after each update)."""


def nearest(flat, codebook):
    """The index of the nearest codebook row for each row of `flat` (N, D): |z|² − 2 z·e + |e|²."""
    d2 = jnp.sum(flat**2, -1, keepdims=True) - 2 * flat @ codebook.T + jnp.sum(codebook**2, -1)
    return jnp.argmin(d2, axis=-1)


def ema_codebook(cluster_size, embed_sum, flat, idx, decay: float):
    """The moving-average update: (counts N, sums m, codebook) after one batch of codes
    `flat` (N, D) assigned to `idx` (N,)."""
    k = cluster_size.shape[0]
    onehot = jax.nn.one_hot(idx, k, dtype=flat.dtype)
    counts = decay * cluster_size + (1 - decay) * onehot.sum(0)
    sums = decay * embed_sum + (1 - decay) * (onehot.T @ flat)
    return counts, sums


def smoothed_codebook(counts, sums):
    """e_k = m_k / Ñ_k, Ñ the Laplace-smoothed counts (no division by an empty count)."""
    total = jnp.sum(counts)
    smooth = (counts + LAPLACE_EPS) / (total + counts.shape[0] * LAPLACE_EPS) * total
    return sums / smooth[:, None]


class Quantizer(nnx.Module):
    """K codebook vectors of D numbers, and the moving averages of their use."""

    def __init__(self, k: int, d: int, update: str, decay: float, threshold: float, *, rngs: nnx.Rngs):
        # uniform in ±1/K, as the reference implementations start it
        self.codebook = nnx.Param(jax.random.uniform(rngs.params(), (k, d), minval=-1.0 / k, maxval=1.0 / k))
        self.cluster_size = CodebookStat(jnp.ones((k,)))  # moving-average count per batch, both updates
        if update == "ema":
            self.embed_sum = CodebookStat(jnp.copy(self.codebook[...]))
        self.update, self.decay, self.threshold = update, decay, threshold

    def assigned(self, flat, idx, key) -> dict:
        """The statistics (and with `ema` the codebook) after the batch `flat` (N, D) chose
        `idx`: what the trainer writes into the parameters after the optimizer's update."""
        ema = self.update == "ema"
        counts, sums = ema_codebook(self.cluster_size[...], self.embed_sum[...] if ema else self.codebook[...],
                                    flat, idx, self.decay)
        if not ema:
            return {"cluster_size": counts}
        if self.threshold > 0:  # dead codes onto encoder outputs of this batch
            dead = counts < self.threshold
            rows = flat[jax.random.randint(key, (counts.shape[0],), 0, flat.shape[0])]
            sums = jnp.where(dead[:, None], rows, sums)
            counts = jnp.where(dead, 1.0, counts)
        return {"cluster_size": counts, "embed_sum": sums, "codebook": smoothed_codebook(counts, sums)}


class VQVAE(nnx.Module):
    """Encoder, quantiser, decoder and likelihood; `grid` the shape of the code grid (L,) or (h, w)."""

    def __init__(self, encoder, decoder, quantizer: Quantizer, likelihood, grid: tuple[int, ...], code_dim: int):
        self.encoder, self.decoder, self.quantizer, self.likelihood = encoder, decoder, quantizer, likelihood
        self.prior = None  # the code prior is a model of its own (vaecli.models.pixelcnn)
        self.grid, self.code_dim = tuple(grid), code_dim
        self.latent_dim = math.prod(grid) * code_dim

    @property
    def noise_dim(self) -> int:
        return 1  # draws no noise: the estimator's numbers are ignored

    @property
    def num_codes(self) -> int:
        return math.prod(self.grid)

    def encode(self, x):
        z = self.encoder(x)
        return z, jnp.full_like(z, -jnp.inf)

    def split(self, z):
        """(..., L·D) -> (..., L, D)."""
        return z.reshape(*z.shape[:-1], self.num_codes, self.code_dim)

    def codes(self, x):
        """Images (..., pixels) -> the indices of their codes (..., L), L in raster order."""
        return nearest(self.split(self.encoder(x)), self.quantizer.codebook[...])

    def quantise(self, z):
        """z (..., L·D) -> the nearest codebook vectors, in the same shape."""
        return self.from_codes(nearest(self.split(z), self.quantizer.codebook[...]))

    def from_codes(self, idx):
        """Indices (..., L) -> the quantised code (..., L·D)."""
        e = self.quantizer.codebook[...][idx]
        return e.reshape(*idx.shape[:-1], self.latent_dim)

    def decode_codes(self, idx):
        """Indices (..., L) -> mean images E[x|z_q]."""
        return self.likelihood.mean(self.decoder(self.from_codes(idx)))

    def log_px_codes(self, x, idx):
        """log p(x|z_q) of images x at the codes `idx`."""
        return self.likelihood.log_prob(self.decoder(self.from_codes(idx)), x)

    def log_terms(self, x, q, eps):
        """(log p(x|z_q), 0, 0) per example, broadcast over the S rows of `eps`: the
        reconstruction; the prior over codes is not part of this model."""
        log_px = self.likelihood.log_prob(self.decoder(self.quantise(q[0])), x)
        log_px = jnp.broadcast_to(log_px, eps.shape[:-1])
        return log_px, jnp.zeros_like(log_px), jnp.zeros_like(log_px)

    def kl_per_dim(self, q):
        return None

    def point(self, q):
        return q[0]

    def mean_image(self, z):
        return self.likelihood.mean(self.decoder(self.quantise(z)))

    def reconstruct(self, x):
        return self.mean_image(self.encoder(x))

    def generate(self, key, n: int):
        """Codes drawn uniformly: the model's own prior is uniform; `vae sample --mode prior`
        draws from the learned prior instead (vaecli.evaluation.vq_prior)."""
        idx = jax.random.randint(key, (n, self.num_codes), 0, self.quantizer.codebook.shape[0])
        return self.decode_codes(idx)


def loss(model: VQVAE, x, key, cfg, v):
    """The VQ-VAE's loss (module docstring); cfg.commitment is β. Logs the commitment term,
    the batch's codebook perplexity exp(H) of the code frequencies and the codes it used."""
    z_e = model.encoder(x)
    flat = z_e.reshape(-1, model.code_dim)
    codebook = model.quantizer.codebook[...]
    idx = nearest(_stop(flat), _stop(codebook))
    e = codebook[idx]
    z_q = flat + _stop(e - flat)  # straight through: the decoder's gradient reaches z_e unchanged
    recon = -jnp.mean(model.likelihood.log_prob(model.decoder(z_q.reshape(z_e.shape)), x))
    batch = x.shape[0]
    commitment = jnp.sum((flat - _stop(e)) ** 2) / batch
    total = recon + cfg.commitment * commitment
    if model.quantizer.update == "loss":
        total = total + jnp.sum((_stop(flat) - e) ** 2) / batch
    k = codebook.shape[0]
    freq = jnp.mean(jax.nn.one_hot(idx, k), axis=0)
    perplexity = jnp.exp(-jnp.sum(jnp.where(freq > 0, freq * jnp.log(jnp.where(freq > 0, freq, 1.0)), 0.0)))
    kl = jnp.full((), model.num_codes * math.log(k), jnp.float32)
    assign = {"quantizer": model.quantizer.assigned(_stop(flat), idx, key)}
    return {"loss": total, "recon": recon, "kl": kl, "commitment": commitment, "perplexity": perplexity,
            "codes_used": jnp.sum(freq > 0).astype(jnp.float32), "assign": assign}


def build(cfg, image_shape, act, rngs: nnx.Rngs, likelihood) -> VQVAE:
    """The VQ-VAE of a ModelConfig (model.latent=vq)."""
    encoder, decoder, grid = vq_networks.networks(cfg, image_shape, act, rngs)
    quantizer = Quantizer(cfg.codebook_size, cfg.code_dim, cfg.codebook_update, cfg.codebook_decay,
                          cfg.dead_code_threshold, rngs=rngs)
    return VQVAE(encoder, decoder, quantizer, likelihood, grid, cfg.code_dim)
