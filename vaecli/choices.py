"""The named choices of a model: kinds, likelihoods, priors. Importable without JAX.

Each dict is the registry of its choice: its keys are the names `model.kind`,
`model.likelihood` and `model.prior` accept (config validation lists them), each entry
says where its implementation lives (imported on first use: that is where JAX is) and
what the rest of vaecli needs to know about it without building a model. To add a
choice, add an entry here pointing at its implementation, and a test.

    model kind   impl(cfg: ModelConfig, image_shape, activation, rngs) -> (encoder, decoder);
                 the encoder x -> (mean, logvar), the decoder z -> one output per pixel
                 with an `output_bias` parameter (see vaecli.models)
    likelihood   impl(dim, cfg: ModelConfig) -> module with log_prob(out, x), mean(out),
                 bias_for_mean(pixel_mean) (see vaecli.likelihoods)
    prior        impl(cfg: ModelConfig, in_dim) -> module with log_prob(z, encode),
                 sample(key, n, encode), kl_per_dim(q) (see vaecli.priors)
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Choice:
    impl: str  # "module:attribute", imported by `load`
    help: str

    def load(self):
        module, _, attr = self.impl.partition(":")
        return getattr(importlib.import_module(module), attr)


@dataclass(frozen=True)
class ModelKind(Choice):
    dense: bool = True  # False: convolutions, which take elementwise activations only (no 'gated')


@dataclass(frozen=True)
class Likelihood(Choice):
    discrete: bool = True  # a probability of the pixel values: bits/dim are defined


@dataclass(frozen=True)
class Prior(Choice):
    closed_form_kl: bool = False  # KL(N(m, diag v) ‖ p) per latent dimension in closed form
    standard_normal: bool = False  # p(z) = N(0, I): sampling at a temperature T means z ~ N(0, T²I)


MODEL_KINDS: dict[str, ModelKind] = {
    "mlp": ModelKind("vaecli.models:mlp_nets", "dense encoder and decoder (model.hidden)"),
    "conv": ModelKind("vaecli.models:conv_nets", "stride-2 convolutions (model.channels), then dense layers",
                      dense=False),
}

LIKELIHOODS: dict[str, Likelihood] = {
    "bernoulli": Likelihood("vaecli.likelihoods:Bernoulli", "binary pixels (or [0, 1] targets)"),
    "gaussian": Likelihood("vaecli.likelihoods:Gaussian", "N(x; out, σ²) per pixel, σ learned or fixed",
                           discrete=False),
    "logistic": Likelihood("vaecli.likelihoods:DiscretizedLogistic", "discretized logistic over 256 levels"),
}

PRIORS: dict[str, Prior] = {
    "normal": Prior("vaecli.priors:StandardNormal", "N(0, I)", closed_form_kl=True, standard_normal=True),
    "vamp": Prior("vaecli.priors:VampPrior", "VampPrior: a mixture of q(z|u_k) at learned pseudo-inputs"),
}


def closed_form_kl(model) -> bool:
    """Whether the run's KL(q(z|x) ‖ p(z)) has a closed form (per latent dimension): the one
    place that decides it. A prior that has one, and one stochastic layer (with two, p(z1)
    is the marginal of p(z1|z2) p(z2), which has none). `model` is a ModelConfig."""
    return PRIORS[model.prior].closed_form_kl and model.latent_dim2 is None


def standard_normal_prior(model) -> bool:
    """Whether the decoded latent's prior is N(0, I) (a temperature can scale it)."""
    return PRIORS[model.prior].standard_normal and model.latent_dim2 is None


def names(registry: dict) -> str:
    """'a, b or c': the valid names, for messages and help."""
    keys = list(registry)
    return ", ".join(keys[:-1]) + " or " + keys[-1] if len(keys) > 1 else keys[0]
