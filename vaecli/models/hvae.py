"""The hierarchical VAE of the VampPrior paper (Tomczak & Welling 2018, "HVAE (L = 2)"),
`model.latent_dim2` with `model.hierarchy: hvae`:

    q(z2|x) q(z1|x, z2)        inference: the top layer first, then the lower one given both
    p(z2) p(z1|z2) p(x|z1, z2) generation: any registered prior on z2 (the VampPrior's mixture
                               is over q(z2|u_k)), Gaussian p(z1|z2), the likelihood on (z1, z2)

All four conditionals are networks of `model.hidden` widths (gated units in the paper); the two
that read two inputs give each input one layer of hidden[0] units and run the rest of the
widths on their concatenation. Every Gaussian's log-variance is clipped to [-6, 2], as in the
authors' code (a hardtanh): with a mixture prior built from the encoder, one posterior that
collapses to a point would otherwise make its component's density, and the loss, blow up.

The model offers the interface of vaecli.models.vae (encode, noise_dim, log_terms, kl_per_dim,
point, mean_image, reconstruct, generate), so the trainer and the estimator take it unchanged.
`encode(x)` is q(z2|x): the code that pictures, `vae sample` and the Python API encode and
decode is z2 (what the VampPrior is over); decoding z2 puts z1 at the mean of p(z1|z2).
`encoder` holds both inference networks (so "the encoder side" of the parameters is all of q),
and calling it gives q(z2|x), which is what the VampPrior's components are made of.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from vaecli.models import densities
from vaecli.models.networks import MLP

LOGVAR_RANGE = (-6.0, 2.0)


class GaussianHead(nnx.Module):
    """hidden features -> (mean, logvar) of a diagonal Gaussian, the log-variance clipped."""

    def __init__(self, in_dim: int, out_dim: int, *, rngs: nnx.Rngs):
        self.mean = nnx.Linear(in_dim, out_dim, rngs=rngs)
        self.logvar = nnx.Linear(in_dim, out_dim, rngs=rngs)

    def __call__(self, h):
        return self.mean(h), jnp.clip(self.logvar(h), *LOGVAR_RANGE)


class TwoInputs(nnx.Module):
    """(a, b) -> features: one activated layer of hidden[0] units for each input, the rest of
    `hidden` on their concatenation. `a` may lack the leading sample axis of `b` (x against
    S draws of z2): its layer then runs once and is broadcast. `out_dim`: the features' width
    (hidden[-1], or both first layers side by side when `hidden` has one width)."""

    def __init__(self, dim_a: int, dim_b: int, hidden, activation, *, rngs: nnx.Rngs):
        self.a = MLP([dim_a, hidden[0]], activation, rngs=rngs, act_last=True)
        self.b = MLP([dim_b, hidden[0]], activation, rngs=rngs, act_last=True)
        self.joint = MLP([2 * hidden[0], *hidden[1:]], activation, rngs=rngs, act_last=True) if len(hidden) > 1 \
            else None
        self.out_dim = hidden[-1] if len(hidden) > 1 else 2 * hidden[0]

    def __call__(self, a, b):
        ha, hb = self.a(a), self.b(b)
        lead = jnp.broadcast_shapes(ha.shape[:-1], hb.shape[:-1])
        h = jnp.concatenate([jnp.broadcast_to(ha, (*lead, ha.shape[-1])),
                             jnp.broadcast_to(hb, (*lead, hb.shape[-1]))], axis=-1)
        return h if self.joint is None else self.joint(h)


class Encoder(nnx.Module):
    """q(z2|x) (calling it) and q(z1|x, z2) (`lower`)."""

    def __init__(self, in_dim: int, hidden, latent_dim: int, latent_dim2: int, activation, *, rngs: nnx.Rngs):
        self.top = MLP([in_dim, *hidden], activation, rngs=rngs, act_last=True)
        self.top_head = GaussianHead(hidden[-1], latent_dim2, rngs=rngs)
        self.bottom = TwoInputs(in_dim, latent_dim2, hidden, activation, rngs=rngs)
        self.bottom_head = GaussianHead(self.bottom.out_dim, latent_dim, rngs=rngs)

    def __call__(self, x):
        return self.top_head(self.top(x))

    def lower(self, x, z2):
        return self.bottom_head(self.bottom(x, z2))


class Conditional(nnx.Module):
    """p(z1|z2): an MLP and a Gaussian head."""

    def __init__(self, in_dim: int, hidden, out_dim: int, activation, *, rngs: nnx.Rngs):
        self.trunk = MLP([in_dim, *hidden], activation, rngs=rngs, act_last=True)
        self.head = GaussianHead(hidden[-1], out_dim, rngs=rngs)

    def __call__(self, z):
        return self.head(self.trunk(z))


class Decoder(nnx.Module):
    """(z1, z2) -> one output per pixel, with the per-pixel `output_bias` data init sets."""

    def __init__(self, latent_dim: int, latent_dim2: int, hidden, out_dim: int, activation, *, rngs: nnx.Rngs):
        self.trunk = TwoInputs(latent_dim, latent_dim2, hidden, activation, rngs=rngs)
        self.out = nnx.Linear(self.trunk.out_dim, out_dim, rngs=rngs)

    def __call__(self, z1, z2):
        return self.out(self.trunk(z1, z2))

    @property
    def output_bias(self) -> nnx.Param:
        return self.out.bias


class HVAE(nnx.Module):
    """q(z2|x) q(z1|x, z2), p(z2) p(z1|z2) p(x|z1, z2). One sample of the latents takes
    latent_dim + latent_dim2 standard-normal numbers: the first latent_dim for z1, the rest
    for z2 (the layout of the IWAE-style two-layer model)."""

    def __init__(self, encoder: Encoder, decoder: Decoder, likelihood, prior, p1: Conditional,
                 latent_dim: int, latent_dim2: int):
        self.encoder, self.decoder, self.likelihood, self.prior, self.p1 = encoder, decoder, likelihood, prior, p1
        self.latent_dim, self.latent_dim2 = latent_dim, latent_dim2

    @property
    def noise_dim(self) -> int:
        return self.latent_dim + self.latent_dim2

    def encode(self, x):
        return self.encoder(x)

    def log_prior(self, z2):
        return self.prior.log_prob(z2, self.encoder)

    def log_terms(self, x, q, eps):
        mean2, logvar2 = q
        z2 = densities.reparameterize(mean2, logvar2, eps[..., self.latent_dim:])
        mean1, logvar1 = self.encoder.lower(x, z2)
        z1 = densities.reparameterize(mean1, logvar1, eps[..., : self.latent_dim])
        log_q = densities.gaussian_log_prob(z1, mean1, logvar1) + densities.gaussian_log_prob(z2, mean2, logvar2)
        log_p = densities.gaussian_log_prob(z1, *self.p1(z2)) + self.log_prior(z2)
        return self.likelihood.log_prob(self.decoder(z1, z2), x), log_p, log_q

    def kl_per_dim(self, q):
        return None  # two layers: p(z1) is the marginal of p(z1|z2) p(z2), no closed form

    def point(self, q):
        return q[0]

    def mean_image(self, z2):
        """E[x | z1, z2] at z1 = the mean of p(z1|z2): the picture of the code z2."""
        return self.likelihood.mean(self.decoder(self.p1(z2)[0], z2))

    def reconstruct(self, x):
        return self.mean_image(self.point(self.encode(x)))

    def generate(self, key, n: int):
        """Mean images of ancestral draws: z2 from the prior (the VampPrior: a pseudo-input's
        posterior), z1 from p(z1|z2)."""
        k2, k1 = jax.random.split(key)
        z2 = self.prior.sample(k2, n, self.encoder)
        mean1, logvar1 = self.p1(z2)
        z1 = densities.reparameterize(mean1, logvar1, jax.random.normal(k1, mean1.shape))
        return self.likelihood.mean(self.decoder(z1, z2))


def build(cfg, in_dim: int, activation, rngs: nnx.Rngs, likelihood, prior_cls) -> HVAE:
    """The HVAE of a ModelConfig: `prior_cls` the registered prior, built over z2."""
    d1, d2, hidden = cfg.latent_dim, cfg.latent_dim2, tuple(cfg.hidden)
    encoder = Encoder(in_dim, hidden, d1, d2, activation, rngs=rngs)
    p1 = Conditional(d2, tuple(reversed(hidden)), d1, activation, rngs=rngs)
    decoder = Decoder(d1, d2, tuple(reversed(hidden)), in_dim, activation, rngs=rngs)
    prior = prior_cls.from_config(dataclasses.replace(cfg, latent_dim=d2), in_dim)  # a prior of z2's size
    return HVAE(encoder, decoder, likelihood, prior, p1, d1, d2)
