"""The named choices of a run, one registry each: `model.kind`, `model.likelihood`,
`model.prior` and `objective.name`. Importable without JAX.

Each entry names its implementation ("module:attribute", imported on first use: that is
where JAX is) and says what the rest of vaecli needs to know about it without building a
model: config validation lists the names and runs the entry's checks, evaluation reads
whether a likelihood is discrete or an objective defines a density. To add a choice, add
an entry here pointing at its implementation, and a test.

    model kind   impl(cfg: ModelConfig, image_shape, act, rngs) -> (encoder, decoder);
                 the encoder x -> (mean, logvar), the decoder z -> one output per pixel
                 with an `output_bias` parameter (vaecli.models.networks)
    likelihood   impl.from_config(dim, cfg: ModelConfig) -> module with log_prob(out, x),
                 mean(out), bias_for_mean(pixel_mean) (vaecli.models.likelihoods)
    prior        impl.from_config(cfg: ModelConfig, in_dim) -> module with log_prob(z, encode),
                 sample(key, n, encode), kl_per_dim(q) (vaecli.models.priors)
    objective    impl(model, x, key, cfg: ObjectiveConfig, v: Values) -> dict of batch
                 means: loss, recon, kl and the entry's `logs` (vaecli.models.objectives)
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
    of_posterior: bool = False  # p(z) is made of the posterior's density at other inputs (the VampPrior)


_KL_TERMS = ("beta", "warmup_epochs")  # objective fields that weight a term of the loss (the KL, for the ELBO)

# Why the estimators that hold q's parameters fixed cannot take a flow posterior.
NO_FLOW_ESTIMATOR = ("evaluate log q(z|x) at a fixed z with q's parameters held, and a flow has no inverse: its "
                      "density is known only along its own draws")


# Why the estimators that hold q's parameters fixed are not offered for the HVAE.
NO_HVAE_ESTIMATOR = ("need log q(z|x) with q's parameters held along the reparameterized path, which is implemented "
                     "for one layer and the chain of two, not for the hvae hierarchy (q(z1|x, z2))")


@dataclass(frozen=True)
class Objective(Choice):
    """What training minimises (`impl`) and what evaluation may report about it.

    reads            the ObjectiveConfig fields the loss uses: a field it does not read must
                     stay at its default (`check` says so, naming the key)
    gradients        the `objective.gradient` estimators it offers (vaecli.models.gradients)
    logs             the loss's terms beyond loss, recon and kl: logged with every training record
    diagonal_normal  the loss splits the KL per dimension: q(z|x) a diagonal Gaussian (no flow),
                     p(z) = N(0, I), one stochastic layer
    aux              "module" of an auxiliary network trained beside the model, with an
                     optimizer of its own (its `init`, `network`, `optimizer`, `step`): state["aux"]
    draws_samples    False: z is the encoder's mean (training and evaluation draw no noise)
    defines_density  False: no p(x), so evaluation reports only the reconstruction
    """

    reads: tuple[str, ...] = ()
    gradients: tuple[str, ...] = ("reparam",)
    logs: tuple[str, ...] = ()
    diagonal_normal: bool = False
    aux: str | None = None
    draws_samples: bool = True
    defines_density: bool = True
    no_density_note: str = ""  # defines_density False: why evaluation reports only the reconstruction

    def check(self, cfg) -> None:
        """Refuse settings this objective cannot honour; `cfg` is the whole Config."""
        o, m = cfg.objective, cfg.model
        if "kl" in self.reads and o.kl == "analytic" and not closed_form_kl(m):
            raise ConfigError("objective.kl: the KL has no closed form with " + _no_closed_form(m)
                              + "; set objective.kl=mc")
        if o.free_bits > 0 and ("free_bits" not in self.reads or o.kl != "analytic"):
            raise ConfigError("objective.free_bits: needs the per-dimension analytic KL "
                              "(objective.name=elbo, objective.kl=analytic, one layer, model.prior=normal)")
        self._unread(o)
        self._gradient(o, m)
        if o.capacity_epochs > 0 and o.capacity == 0:
            raise ConfigError("objective.capacity_epochs: ramps the target KL objective.capacity, which is 0 (off); "
                              "set objective.capacity (nats), e.g. 25")
        if o.capacity > 0 and (o.gradient != "reparam" or o.free_bits > 0):
            raise ConfigError("objective.capacity: the capacity-annealed β-VAE takes plain reparameterization and no "
                              "free bits; set objective.gradient=reparam and objective.free_bits=0")
        if m.flow.kind is not None and not self.draws_samples:
            raise ConfigError(f"model.flow.kind: objective.name={o.name} draws no z, so a flow posterior would "
                              "never be used; set model.flow.kind=null")
        if self.diagonal_normal and not standard_normal_prior(m):
            raise ConfigError(f"model.prior: objective.name={o.name} splits the KL to N(0, I) per dimension; "
                              "set model.prior=normal and model.latent_dim2=null")
        if self.diagonal_normal and m.flow.kind is not None:
            raise ConfigError(f"model.flow.kind: objective.name={o.name} splits the KL of a diagonal-Gaussian "
                              "q(z|x) per dimension, which a flow posterior is not; set model.flow.kind=null")
        if o.name == "ciwae" and o.beta > 1:
            raise ConfigError(f"objective.beta: {o.beta} mixes β·ELBO + (1 − β)·IWAE, so it must be in [0, 1]")
        if self.diagonal_normal and cfg.train.batch_size < 2:
            raise ConfigError(f"train.batch_size: objective.name={o.name} estimates q(z) from the other "
                              "examples of the batch; use at least 2")

    def _unread(self, o) -> None:
        """A field the loss does not read, set away from its default: refused, naming it."""
        default = type(o)()
        for key in _KL_TERMS:
            if key not in self.reads and getattr(o, key) != getattr(default, key):
                raise ConfigError(f"objective.{key}: weights the KL of the ELBO; objective.name={o.name} has no "
                                  f"such term (use objective.name=elbo)")
        if "samples" not in self.reads and o.samples != 1:
            draws = "draws no samples" if not self.draws_samples else "takes one draw per example"
            raise ConfigError(f"objective.samples: {self.help} (objective.name={o.name}) {draws}; "
                              "set objective.samples=1")
        if "groups" not in self.reads and o.groups != default.groups:
            raise ConfigError("objective.groups: only objective.name=miwae or piwae averages groups of samples; "
                              "set objective.groups=1 (or objective.name=miwae)")
        if "capacity" not in self.reads and (o.capacity, o.capacity_epochs) != (default.capacity,
                                                                               default.capacity_epochs):
            raise ConfigError(f"objective.capacity: the capacity-annealed β-VAE is objective.name=elbo's; "
                              f"set objective.capacity=0 for objective.name={o.name}")
        if self.aux is None and o.discriminator != default.discriminator:
            raise ConfigError(f"objective.discriminator: only objective.name=factorvae trains a discriminator; "
                              f"leave objective.discriminator.* at their defaults for objective.name={o.name}")
        if "commitment" not in self.reads and o.commitment != default.commitment:
            raise ConfigError(f"objective.commitment: the VQ-VAE's commitment weight; objective.name={o.name} has no "
                              f"such term (leave it at {default.commitment} or set objective.name=vq)")
        if "alpha" not in self.reads and o.alpha != default.alpha:
            raise ConfigError(f"objective.alpha: only the Rényi bound (objective.name=vr) has an α; "
                              f"leave it at {default.alpha} or set objective.name=vr")

    def _gradient(self, o, m) -> None:
        if o.gradient not in self.gradients:
            raise ConfigError(f"objective.gradient: {o.gradient} is not an estimator of objective.name={o.name} "
                              f"(choose {' or '.join(self.gradients)})")
        if o.gradient != "reparam" and m.flow.kind is not None:
            raise ConfigError(f"objective.gradient: {o.gradient} would {NO_FLOW_ESTIMATOR}; set "
                              "objective.gradient=reparam or model.flow.kind=null")
        if o.gradient != "reparam" and is_hvae(m):
            raise ConfigError(f"objective.gradient: {o.gradient} would {NO_HVAE_ESTIMATOR}; set "
                              "objective.gradient=reparam")
        if o.gradient == "stl" and "kl" in self.reads and o.kl != "mc":
            raise ConfigError("objective.gradient: stl drops the score term of the Monte Carlo KL (log q(z|x) at "
                              "the draws), which the analytic KL does not have; set objective.kl=mc")


def _no_closed_form(m) -> str:
    if m.latent_dim2 is not None:
        return "two stochastic layers"
    if m.flow.kind is not None:
        return (f"a flow posterior (model.flow.kind={m.flow.kind}: log q(z|x) is known only along its own draws, "
                "with the flow's log-determinants)")
    return f"model.prior={m.prior}"


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
    "vamp": Prior("vaecli.models.priors:VampPrior", "VampPrior: a mixture of q(z|u_k) at learned pseudo-inputs",
                  of_posterior=True),
}

_BOUND_READS = ("samples", "gradient")
OBJECTIVES: dict[str, Objective] = {
    "elbo": Objective("vaecli.models.objectives:elbo", "the evidence lower bound",
                      reads=("samples", "kl", "beta", "warmup_epochs", "free_bits", "gradient", "capacity"),
                      gradients=("reparam", "stl")),
    "iwae": Objective("vaecli.models.objectives:iwae", "the K-sample importance-weighted bound",
                      reads=_BOUND_READS, gradients=("reparam", "stl", "dreg")),
    "miwae": Objective("vaecli.models.objectives:miwae", "the mean of M K-sample IWAE bounds (Rainforth et al. 2018)",
                       reads=(*_BOUND_READS, "groups"), gradients=("reparam", "dreg")),
    "piwae": Objective("vaecli.models.objectives:piwae", "the decoder on the M·K-sample IWAE bound, the encoder on "
                       "MIWAE(M, K) (Rainforth et al. 2018)", reads=(*_BOUND_READS, "groups"),
                       gradients=("reparam", "dreg"), logs=("encoder_loss",)),
    "ciwae": Objective("vaecli.models.objectives:ciwae", "β·ELBO + (1 − β)·IWAE over the same K draws "
                       "(Rainforth et al. 2018)", reads=(*_BOUND_READS, "beta"), gradients=("reparam", "dreg")),
    "vr": Objective("vaecli.models.objectives:vr", "the Rényi bound of order α (Li & Turner 2016)",
                    reads=(*_BOUND_READS, "alpha"), gradients=("reparam", "dreg")),
    "btcvae": Objective("vaecli.models.objectives:btcvae", "β-TCVAE: the KL as index-code MI + β·total correlation "
                        "+ dimension-wise KL (Chen et al. 2018)",
                        reads=("beta",), logs=("mi", "tc", "dim_kl"), diagonal_normal=True),
    "factorvae": Objective("vaecli.models.objectives:factorvae", "FactorVAE: recon + KL + γ·total correlation, "
                           "TC from a discriminator trained beside the model (Kim & Mnih 2018)",
                           reads=("kl", "beta"), logs=("tc", "disc_loss", "disc_accuracy"), diagonal_normal=True,
                           aux="vaecli.models.factorvae"),
    "ae": Objective("vaecli.models.objectives:autoencoder", "the deterministic autoencoder",
                    draws_samples=False, defines_density=False,
                    no_density_note=("objective.name=ae: a deterministic autoencoder has no prior over codes and "
                                     "draws no z, so it defines no density p(x) and no ELBO; only the reconstruction "
                                     "−log p(x|z) at z = the encoder's mean is reported (K is ignored)")),
    "vq": Objective("vaecli.models.vq:loss", "the VQ-VAE's loss: reconstruction at the quantised code, the "
                    "codebook loss (model.codebook_update=loss) and β·commitment (van den Oord et al. 2017)",
                    reads=("commitment",), logs=("commitment", "perplexity", "codes_used"), draws_samples=False,
                    defines_density=False,
                    no_density_note=("model.latent=vq: the codes are discrete, so there is no importance-sampled "
                                     "log p(x); `vae eval-elbo` reports the discrete-latent bound "
                                     "−log p(x|z_q) − log p_prior(z_q) once `vae train-prior` has fitted the prior")),
}


def objective(cfg) -> Objective:
    """The objective entry of a Config (or of an ObjectiveConfig)."""
    return OBJECTIVES[getattr(cfg, "objective", cfg).name]


def closed_form_kl(model) -> bool:
    """Whether the run's KL(q(z|x) ‖ p(z)) has a closed form (per latent dimension): the one
    place that decides it. A prior that has one, and one stochastic layer (with two, p(z1)
    is the marginal of p(z1|z2) p(z2), which has none), and no flow posterior (its log q(z|x)
    is known only along its draws). `model` is a ModelConfig."""
    return PRIORS[model.prior].closed_form_kl and model.latent_dim2 is None and model.flow.kind is None


def standard_normal_prior(model) -> bool:
    """Whether the decoded latent's prior is N(0, I) (a temperature can scale it)."""
    return PRIORS[model.prior].standard_normal and model.latent_dim2 is None


def is_hvae(model) -> bool:
    """Whether a ModelConfig is the VampPrior paper's hierarchical VAE (vaecli.models.hvae)."""
    return model.latent_dim2 is not None and model.hierarchy == "hvae"


def code_dim(model) -> int:
    """The dimension of the code that encoding and decoding use (pictures, `vae sample`, the
    Python API): z, or z1 of the chain's two layers, or z2 of the hvae's (q(z1|x, z2) needs z2)."""
    return model.latent_dim2 if is_hvae(model) else model.latent_dim


def names(registry: dict) -> str:
    """'a, b or c': the valid names, for messages and help."""
    keys = list(registry)
    return ", ".join(keys[:-1]) + " or " + keys[-1] if len(keys) > 1 else keys[0]
