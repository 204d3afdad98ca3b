"""The training objectives, one registry entry each: `OBJECTIVES[name]` for `objective.name`.

An objective says what training minimises and what evaluation may report:

    loss(model, x, key, cfg, kl_weight) -> batch means (loss, recon, kl); `cfg` is the run's
        ObjectiveConfig, `kl_weight` the step's KL weight (β after the warm-up); `recon` is the
        reconstruction loss −E_q[log p(x|z)] in nats and `kl` the KL as for the ELBO, so the
        logs read the same whatever is minimised
    reads           the ObjectiveConfig fields the loss uses: a field it does not read must stay
                    at its default (config validation says so, naming the key)
    draws_samples   False: z is the encoder's mean (training and evaluation draw no noise)
    defines_density False: no p(x), so evaluation reports only the reconstruction
    check(cfg)      the objective's own config checks (ConfigError naming the dotted key)

This module imports no JAX at import time (config validation consults it); the losses
import it when they run. The math they are made of is vaecli.densities.

    log p(x) ≥ E_q[log p(x|z)] − KL(q(z|x) ‖ p(z))                         (ELBO)
    log p(x) ≥ E[log (1/K) Σ_k p(x, z_k) / q(z_k|x)],  z_k ~ q(z|x)        (IWAE, K samples)

The K-sample bound is the importance-sampled estimate of log p(x) with q as proposal;
it never decreases with K and tends to log p(x) as K → ∞.

Models offer `encode`, `noise_dim`, `log_terms` and `kl_per_dim` (vaecli.models).
To add an objective: a class here, its entry in OBJECTIVES, any new field in
config.ObjectiveConfig, and a test.
"""
from __future__ import annotations

import math

from vaecli import choices
from vaecli.errors import ConfigError

_KL_TERMS = ("beta", "warmup_epochs")  # fields that weight the KL term of the ELBO


def _log_terms(model, x, key, samples: int, draw: bool):
    """(log p(x|z), log p(z), log q(z|x)), each (S, B), at `samples` reparameterized draws of
    all latents, or at z = the encoder's mean (S = 1) when `draw` is False; and q."""
    import jax.numpy as jnp

    from vaecli.densities import draw_noise

    q = model.encode(x)
    if draw:
        eps = draw_noise(key, model, x.shape[0], samples)
    else:
        eps = jnp.zeros((1, x.shape[0], model.noise_dim), x.dtype)
    return model.log_terms(x, q, eps), q


class Objective:
    name = ""
    summary = ""  # one line: what is minimised
    reads: tuple[str, ...] = ()
    draws_samples = True
    defines_density = True
    no_density_note = ""  # defines_density False: why evaluation reports only the reconstruction

    def loss(self, model, x, key, cfg, kl_weight=1.0, free_bits=None):
        """Batch means (loss, recon, kl). `kl_weight` and `free_bits` (default: cfg's) may be
        traced values: replicas of one program differ in them (state["hyper"])."""
        raise NotImplementedError

    def check(self, cfg) -> None:
        """Refuse settings this objective cannot honour; `cfg` is the whole Config."""
        o = cfg.objective
        if o.free_bits > 0 and "free_bits" not in self.reads:
            raise ConfigError("objective.free_bits: needs the per-dimension analytic KL "
                              "(objective.name=elbo, objective.kl=analytic, one layer, model.prior=normal)")
        for key in _KL_TERMS:
            if key not in self.reads and getattr(o, key) != _default(key):
                raise ConfigError(f"objective.{key}: weights the KL of the ELBO; objective.name={o.name} has no "
                                  f"such term (use objective.name=elbo)")
        if "samples" not in self.reads and o.samples != 1:
            raise ConfigError(f"objective.samples: {self.summary} (objective.name={o.name}) draws no samples; "
                              "set objective.samples=1")


def _default(key: str):
    from vaecli.config import ObjectiveConfig

    return getattr(ObjectiveConfig(), key)


class Elbo(Objective):
    """recon + kl_weight·KL from `samples` reparameterized draws; the KL analytic (per
    dimension, floored at `free_bits` nats after the batch mean: Kingma et al. 2016) or
    Monte Carlo, log q(z|x) − log p(z) at the draws."""

    name, summary = "elbo", "the evidence lower bound"
    reads = ("samples", "kl", "beta", "warmup_epochs", "free_bits")

    def check(self, cfg) -> None:
        o, m = cfg.objective, cfg.model
        if o.kl == "analytic" and not choices.closed_form_kl(m):
            raise ConfigError("objective.kl: the KL has no closed form with "
                              + ("two stochastic layers" if m.latent_dim2 is not None else f"model.prior={m.prior}")
                              + "; set objective.kl=mc")
        if o.free_bits > 0 and o.kl != "analytic":
            raise ConfigError("objective.free_bits: needs the per-dimension analytic KL "
                              "(objective.name=elbo, objective.kl=analytic, one layer, model.prior=normal)")
        super().check(cfg)

    def loss(self, model, x, key, cfg, kl_weight=1.0, free_bits=None):
        import jax.numpy as jnp

        free_bits = cfg.free_bits if free_bits is None else free_bits
        (log_px, log_pz, log_qz), q = _log_terms(model, x, key, cfg.samples, draw=True)
        recon = -jnp.mean(log_px)
        if cfg.kl == "mc":
            kl_mc = jnp.mean(log_qz - log_pz)
            return recon + kl_weight * kl_mc, recon, kl_mc
        per_dim = jnp.mean(model.kl_per_dim(q), axis=0)  # (D,): the batch mean per latent dimension
        # a where, not an if: free_bits may be a traced per-replica value (state["hyper"])
        penalty = jnp.where(free_bits > 0, jnp.sum(jnp.maximum(per_dim, free_bits)), jnp.sum(per_dim))
        return recon + kl_weight * penalty, recon, jnp.sum(per_dim)


class Iwae(Objective):
    """−log (1/K) Σ_k p(x, z_k)/q(z_k|x), K = `samples` (Burda et al. 2016); kl reported is
    the Monte Carlo KL at the same draws."""

    name, summary = "iwae", "the K-sample importance-weighted bound"
    reads = ("samples",)

    def loss(self, model, x, key, cfg, kl_weight=1.0, free_bits=None):
        import jax
        import jax.numpy as jnp

        (log_px, log_pz, log_qz), _ = _log_terms(model, x, key, cfg.samples, draw=True)
        bound = jax.nn.logsumexp(log_px + log_pz - log_qz, axis=0) - math.log(cfg.samples)
        return -jnp.mean(bound), -jnp.mean(log_px), jnp.mean(log_qz - log_pz)


class Autoencoder(Objective):
    """−log p(x|z) at z = the encoder's mean: no sampling, no KL (kl reported as 0)."""

    name, summary = "ae", "the deterministic autoencoder"
    draws_samples = False
    defines_density = False
    no_density_note = ("objective.name=ae: a deterministic autoencoder has no prior over codes and draws no z, so it "
                       "defines no density p(x) and no ELBO; only the reconstruction −log p(x|z) at z = the encoder's "
                       "mean is reported (K is ignored)")

    def loss(self, model, x, key, cfg, kl_weight=1.0, free_bits=None):
        import jax.numpy as jnp

        (log_px, _, _), _ = _log_terms(model, x, key, 1, draw=False)
        recon = -jnp.mean(log_px)
        return recon, recon, jnp.zeros_like(recon)


OBJECTIVES: dict[str, Objective] = {o.name: o for o in (Elbo(), Iwae(), Autoencoder())}


def of(cfg) -> Objective:
    """The objective of a Config (or of an ObjectiveConfig)."""
    return OBJECTIVES[getattr(cfg, "objective", cfg).name]


def training_loss(model, x, key, cfg, kl_weight=1.0, free_bits=None):
    """Batch means (loss, recon, kl) of the objective `cfg` (an ObjectiveConfig) names."""
    return OBJECTIVES[cfg.name].loss(model, x, key, cfg, kl_weight, free_bits)
