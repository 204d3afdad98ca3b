"""The named choices of a run, one registry each: `model.kind`, `model.likelihood`,
`model.prior` and `objective.name`. Importable without JAX.

Each entry names its implementation ("module:attribute", imported on first use: that is
where JAX is) and says what the rest of vaecli needs to know about it without building a
model: config validation lists the names and runs the entry's checks, evaluation reads
whether a likelihood is discrete or an objective defines a density. To add a choice, add
an entry here pointing at its implementation, and a test.

    model kind   impl(cfg: ModelConfig, image_shape, activation, rngs) -> (encoder, decoder);
                 the encoder x -> (mean, logvar), the decoder z -> one output per pixel
                 with an `output_bias` parameter (vaecli.models.networks)
    likelihood   impl.from_config(dim, cfg: ModelConfig) -> module with log_prob(out, x),
                 mean(out), bias_for_mean(pixel_mean) (vaecli.models.likelihoods)
    prior        impl.from_config(cfg: ModelConfig, in_dim) -> module with log_prob(z, encode),
                 sample(key, n, encode), kl_per_dim(q) (vaecli.models.priors)
    objective    impl(model, x, key, cfg: ObjectiveConfig, kl_weight, free_bits) -> batch
                 means (loss, recon, kl) (vaecli.models.objectives)
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass

from vaecli.errors import ConfigError


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


_KL_TERMS = ("beta", "warmup_epochs")  # objective fields that weight the KL term of the ELBO


@dataclass(frozen=True)
class Objective(Choice):
    """What training minimises (`impl`) and what evaluation may report about it.

    reads            the ObjectiveConfig fields the loss uses: a field it does not read must
                     stay at its default (`check` says so, naming the key)
    draws_samples    False: z is the encoder's mean (training and evaluation draw no noise)
    defines_density  False: no p(x), so evaluation reports only the reconstruction
    """

    reads: tuple[str, ...] = ()
    draws_samples: bool = True
    defines_density: bool = True
    no_density_note: str = ""  # defines_density False: why evaluation reports only the reconstruction

    def check(self, cfg) -> None:
        """Refuse settings this objective cannot honour; `cfg` is the whole Config."""
        o, m = cfg.objective, cfg.model
        default = type(o)()
        if "kl" in self.reads and o.kl == "analytic" and not closed_form_kl(m):
            raise ConfigError("objective.kl: the KL has no closed form with "
                              + ("two stochastic layers" if m.latent_dim2 is not None else f"model.prior={m.prior}")
                              + "; set objective.kl=mc")
        if o.free_bits > 0 and ("free_bits" not in self.reads or o.kl != "analytic"):
            raise ConfigError("objective.free_bits: needs the per-dimension analytic KL "
                              "(objective.name=elbo, objective.kl=analytic, one layer, model.prior=normal)")
        for key in _KL_TERMS:
            if key not in self.reads and getattr(o, key) != getattr(default, key):
                raise ConfigError(f"objective.{key}: weights the KL of the ELBO; objective.name={o.name} has no "
                                  f"such term (use objective.name=elbo)")
        if "samples" not in self.reads and o.samples != 1:
            raise ConfigError(f"objective.samples: {self.help} (objective.name={o.name}) draws no samples; "
                              "set objective.samples=1")


MODEL_KINDS: dict[str, ModelKind] = {
    "mlp": ModelKind("vaecli.models.networks:mlp_nets", "dense encoder and decoder (model.hidden)"),
    "conv": ModelKind("vaecli.models.networks:conv_nets", "stride-2 convolutions (model.channels), then dense layers",
                      dense=False),
}

LIKELIHOODS: dict[str, Likelihood] = {
    "bernoulli": Likelihood("vaecli.models.likelihoods:Bernoulli", "binary pixels (or [0, 1] targets)"),
    "gaussian": Likelihood("vaecli.models.likelihoods:Gaussian", "N(x; out, σ²) per pixel, σ learned or fixed",
                           discrete=False),
    "logistic": Likelihood("vaecli.models.likelihoods:DiscretizedLogistic", "discretized logistic over 256 levels"),
}

PRIORS: dict[str, Prior] = {
    "normal": Prior("vaecli.models.priors:StandardNormal", "N(0, I)", closed_form_kl=True, standard_normal=True),
    "vamp": Prior("vaecli.models.priors:VampPrior", "VampPrior: a mixture of q(z|u_k) at learned pseudo-inputs"),
}

OBJECTIVES: dict[str, Objective] = {
    "elbo": Objective("vaecli.models.objectives:elbo", "the evidence lower bound",
                      reads=("samples", "kl", "beta", "warmup_epochs", "free_bits")),
    "iwae": Objective("vaecli.models.objectives:iwae", "the K-sample importance-weighted bound", reads=("samples",)),
    "ae": Objective("vaecli.models.objectives:autoencoder", "the deterministic autoencoder",
                    draws_samples=False, defines_density=False,
                    no_density_note=("objective.name=ae: a deterministic autoencoder has no prior over codes and "
                                     "draws no z, so it defines no density p(x) and no ELBO; only the reconstruction "
                                     "−log p(x|z) at z = the encoder's mean is reported (K is ignored)")),
}


def objective(cfg) -> Objective:
    """The objective entry of a Config (or of an ObjectiveConfig)."""
    return OBJECTIVES[getattr(cfg, "objective", cfg).name]


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
