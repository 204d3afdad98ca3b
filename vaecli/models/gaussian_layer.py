"""One Gaussian stochastic layer: the part of the model interface (vaecli.models.vae's
docstring) that the VAE and the conditional VAE share. A subclass keeps `encoder`,
`latent_dim` and `prior`, and defines `log_likelihood(x, z)`; everything the trainer and
the estimator call about the latent is here, once.
"""
from __future__ import annotations

from flax import nnx

from vaecli.models import densities


class GaussianLayer(nnx.Module):
    """q(z|x) a diagonal Gaussian from `encoder`, z reparameterized from standard-normal eps."""

    @property
    def noise_dim(self) -> int:
        return self.latent_dim

    def encode(self, x):
        return self.encoder(x)

    def log_prior(self, z):
        return self.prior.log_prob(z, self.encoder)

    def log_terms(self, x, q, eps):
        mean, logvar = q
        z = densities.reparameterize(mean, logvar, eps)
        return self.log_likelihood(x, z), self.log_prior(z), densities.gaussian_log_prob(z, mean, logvar)

    def kl_per_dim(self, q):
        return self.prior.kl_per_dim(q)

    def point(self, q):
        return q[0]
