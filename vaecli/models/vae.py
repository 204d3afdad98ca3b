"""The VAE: a Gaussian encoder q(z|x), a decoder with a likelihood p(x|z), and a prior p(z),
built from a config by name (vaecli.registry), and split for use inside compiled code.

The interface the trainer and the estimator call (one trainer, one estimator, any model):
  encode(x) -> q                      posterior statistics of the first stochastic layer
  noise_dim                           standard-normal numbers one sample of all latents takes
  log_terms(x, q, eps) -> (log p(x|z), log p(z), log q(z|x))   per sample and example, for
                                      eps (S, B, noise_dim); z is reparameterized from eps
  kl_per_dim(q) -> (B, D) or None     the closed-form KL per latent dimension, where one exists
                                      (the prior's; vaecli.registry.closed_form_kl says which
                                      configs have one)
  point(q) -> z                       the posterior's point estimate: the Gaussian's mean, or with a
                                      flow that mean pushed through the flow (what "the encoder
                                      mean" is in pictures, `vae sample` and active units)
  mean_image(z)                       E[x|z], what pictures show
  reconstruct(x), generate(key, n)    mean images, for pictures

Training and evaluation never call the NNX object graph in the hot loop: `Functional`
splits the model once into a static graph and a plain nested dict of parameters, and
`bind` rebuilds it inside a traced function (the graph walk then happens once, at trace
time).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vaecli import registry, streams
from vaecli.config import ModelConfig
from vaecli.errors import ConfigError
from vaecli.models import conditional, densities, flows, hvae, likelihoods, priors, vq
from vaecli.models.gaussian_layer import GaussianLayer
from vaecli.models.networks import GaussianMLPEncoder, activation

class VAE(GaussianLayer):
    """One stochastic layer: q(z|x) Gaussian, p(z) a prior module, p(x|z) a likelihood module.

    Subclasses (and test models) that keep `encoder`, `log_likelihood` and `latent_dim`
    inherit the whole interface the trainer and the estimator use (see the module docstring).
    """

    def __init__(self, encoder: nnx.Module, decoder: nnx.Module, latent_dim: int,
                 likelihood: nnx.Module | None = None, prior: nnx.Module | None = None):
        self.encoder = encoder
        self.decoder = decoder
        self.latent_dim = latent_dim
        self.likelihood = likelihood if likelihood is not None else likelihoods.Bernoulli(0)
        self.prior = prior if prior is not None else priors.StandardNormal(latent_dim)

    def log_likelihood(self, x, z):
        return self.likelihood.log_prob(self.decoder(z), x)

    def mean_image(self, z):
        """E[x|z]: what pictures show."""
        return self.likelihood.mean(self.decoder(z))

    def reconstruct(self, x):
        return self.mean_image(self.point(self.encode(x)))

    def generate(self, key, n: int):
        return self.mean_image(self.prior.sample(key, n, self.encoder))


class FlowVAE(VAE):
    """q(z|x): the encoder's Gaussian pushed through a flow (vaecli.models.flows), so
    log q(z|x) = log N(z0; mean, σ²) − Σ log|det| along each draw, and every objective that
    samples, and the estimator, use it unchanged through `log_terms`. A flow has no inverse:
    the density is known only along its own draws, so there is no closed-form KL. `point` is
    the flow applied to the base mean (eps = 0), a point where the decoder was trained; E_q[z]
    has no closed form."""

    def __init__(self, encoder, decoder, latent_dim: int, likelihood, prior, flow):
        super().__init__(encoder, decoder, latent_dim, likelihood, prior)
        self.flow = flow

    def log_terms(self, x, q, eps):
        z, log_q = flows.sample(self.flow, *q, eps, jnp.concatenate(q, axis=-1))
        return self.log_likelihood(x, z), self.log_prior(z), log_q

    def kl_per_dim(self, q):
        return None

    def point(self, q):
        return self.flow(q[0], jnp.concatenate(q, axis=-1))[0]


class TwoLayerVAE(VAE):
    """Two stochastic layers (Burda et al. 2016, section 5): q(z1|x) q(z2|z1) and
    p(z2) p(z1|z2) p(x|z1), all conditionals diagonal Gaussians with MLPs between layers.
    One sample of the latents takes latent_dim + latent_dim2 standard-normal numbers."""

    def __init__(self, encoder, decoder, likelihood, q2, p1, latent_dim: int, latent_dim2: int):
        super().__init__(encoder, decoder, latent_dim, likelihood, priors.StandardNormal(latent_dim2))
        self.q2, self.p1, self.latent_dim2 = q2, p1, latent_dim2

    @property
    def noise_dim(self) -> int:
        return self.latent_dim + self.latent_dim2

    def log_terms(self, x, q, eps):
        mean1, logvar1 = q
        z1 = densities.reparameterize(mean1, logvar1, eps[..., : self.latent_dim])
        mean2, logvar2 = self.q2(z1)
        z2 = densities.reparameterize(mean2, logvar2, eps[..., self.latent_dim:])
        log_q = densities.gaussian_log_prob(z1, mean1, logvar1) + densities.gaussian_log_prob(z2, mean2, logvar2)
        log_p = densities.gaussian_log_prob(z1, *self.p1(z2)) + densities.standard_normal_log_prob(z2)
        return self.log_likelihood(x, z1), log_p, log_q

    def kl_per_dim(self, q):
        return None

    def generate(self, key, n: int):
        k2, k1 = jax.random.split(key)
        mean1, logvar1 = self.p1(jax.random.normal(k2, (n, self.latent_dim2)))
        return self.mean_image(densities.reparameterize(mean1, logvar1, jax.random.normal(k1, mean1.shape)))


def build(cfg: ModelConfig, image_shape: tuple[int, ...], key: jax.Array) -> VAE:
    """The model of `cfg`: its kind, likelihood and prior looked up in vaecli.registry; with
    two layers, the IWAE paper's chain or the VampPrior paper's HVAE (`model.hierarchy`)."""
    for key_name, names in (("kind", registry.MODEL_KINDS), ("likelihood", registry.LIKELIHOODS),
                            ("prior", registry.PRIORS)):
        if getattr(cfg, key_name) not in names:
            raise ConfigError(f"model.{key_name}: unknown {key_name} '{getattr(cfg, key_name)}' "
                              f"(choose one of {', '.join(names)})")
    image_shape = tuple(image_shape)
    rngs = nnx.Rngs(params=key)
    d = math.prod(image_shape)
    act = activation(cfg.activation)
    if cfg.latent == "vq":  # discrete codes: networks and a quantiser of its own (vaecli.models.vq)
        return vq.build(cfg, image_shape, act, rngs, registry.LIKELIHOODS[cfg.likelihood].load().from_config(d, cfg))
    if registry.is_hvae(cfg):  # networks of its own (vaecli.models.hvae)
        lik = registry.LIKELIHOODS[cfg.likelihood].load().from_config(d, cfg)
        return hvae.build(cfg, d, act, rngs, lik, registry.PRIORS[cfg.prior].load())
    if cfg.conditional:  # networks of its own, which also read the label (vaecli.models.conditional)
        lik = registry.LIKELIHOODS[cfg.likelihood].load().from_config(d, cfg)
        return conditional.build(cfg, image_shape, act, rngs, lik, registry.PRIORS[cfg.prior].load().from_config(cfg, d))
    encoder, decoder = registry.MODEL_KINDS[cfg.kind].load()(cfg, image_shape, act, rngs)
    lik = registry.LIKELIHOODS[cfg.likelihood].load().from_config(d, cfg)
    if cfg.latent_dim2 is None:
        prior = registry.PRIORS[cfg.prior].load().from_config(cfg, d)
        if cfg.flow.kind is not None:  # built after the networks: a run without a flow draws the same init
            return FlowVAE(encoder, decoder, cfg.latent_dim, lik, prior, flows.from_config(cfg.flow, cfg.latent_dim,
                                                                                           rngs=rngs))
        return VAE(encoder, decoder, cfg.latent_dim, lik, prior)
    q2 = GaussianMLPEncoder(cfg.latent_dim, cfg.hidden2, cfg.latent_dim2, act, rngs=rngs)
    p1 = GaussianMLPEncoder(cfg.latent_dim2, tuple(reversed(cfg.hidden2)), cfg.latent_dim, act, rngs=rngs)
    return TwoLayerVAE(encoder, decoder, lik, q2, p1, cfg.latent_dim, cfg.latent_dim2)


def data_init(model: VAE, cfg: ModelConfig, train_flat: np.ndarray, scale: int, seed: int) -> None:
    """The data-dependent starting values, in place: the decoder's output bias at the training
    pixel mean (`output_bias: data_mean`), the VampPrior's pseudo-inputs at random training images."""
    if cfg.output_bias == "data_mean":
        d = model.decoder.output_bias.value.shape[0]  # the pixels: a conditional model's rows also hold the label
        pixel_mean = jnp.asarray(train_flat[:, :d].mean(axis=0, dtype=np.float64) / scale, jnp.float32)
        model.decoder.output_bias.value = model.likelihood.bias_for_mean(pixel_mean)
    if isinstance(model.prior, priors.VampPrior):
        k = model.prior.logits.shape[0]
        idx = np.random.default_rng(seed).choice(len(train_flat), size=k, replace=k > len(train_flat))
        model.prior.set_pseudo_inputs(train_flat[idx].astype(np.float32) / scale)


class Functional:
    """A model split once into (static graph, parameter dict) for use inside jit/scan.
    `key`: what determines the graph (vaecli.compiled.cache keeps the programs compiled for it),
    None when unknown."""

    def __init__(self, model: nnx.Module, key: tuple | None = None):
        self.key = key
        self.graphdef, state = nnx.split(model)
        self.treedef = jax.tree.structure(state)
        self.params = state.to_pure_dict()
        assert [a.shape for a in jax.tree.leaves(self.params)] == [a.shape for a in jax.tree.leaves(state)]

    def bind(self, params) -> VAE:
        """The NNX model holding `params` (a dict shaped like `self.params`)."""
        return nnx.merge(self.graphdef, jax.tree.unflatten(self.treedef, jax.tree.leaves(params)))


def functional(cfg: ModelConfig, image_shape, seed: int, train: tuple[np.ndarray, int] | None = None) -> Functional:
    """Build the model of `cfg` with parameters initialised from `seed`, and from the
    training images `train` = (uint8 (N, D), scale) where the config asks for data init."""
    key = jax.random.fold_in(jax.random.key(seed), streams.MODEL_INIT)
    model = build(cfg, image_shape, key)
    if train is not None:
        data_init(model, cfg, train[0], train[1], seed)  # values only: the graph is cfg's and the shape's
    return Functional(model, key=("model", cfg, tuple(image_shape)))
