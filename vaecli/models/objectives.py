"""The training objectives' losses, one function each, named by `objective.name` in
vaecli.registry.OBJECTIVES (which also says what each reads, which gradient estimators it
offers and which extra terms it logs). Each takes a bound model, a batch x, a key, the run's
ObjectiveConfig (its replica keys at the step's values) and the step's `Values`, and returns a
dict of batch means: `loss` (what the trainer minimises and logs), `recon` (the reconstruction
loss −E_q[log p(x|z)] in nats), `kl` (the KL as for the ELBO, so the logs read the same
whatever is minimised) and the entry's `logs`.

    log p(x) ≥ E_q[log p(x|z)] − KL(q(z|x) ‖ p(z))                         (ELBO)
    log p(x) ≥ E[log (1/K) Σ_k p(x, z_k) / q(z_k|x)],  z_k ~ q(z|x)        (IWAE, K samples)

and the bounds of vaecli.models.bounds built from the same log-weights: MIWAE, PIWAE, CIWAE,
the Rényi bound; and β-TCVAE's split of the KL (vaecli.models.tcvae). The K-sample bound is the importance-sampled
estimate of log p(x) with q as proposal; it never decreases with K and tends to log p(x).

`loss` is a value and a gradient at once: its value is always minus the objective, its
gradient the estimator's (`objective.gradient`). Where an estimator's surrogate has another
value (DReG, β-TCVAE's training estimator), `_valued` keeps the value and takes the
surrogate's gradient: v + (s − stop_gradient(s)) is v to the bit.

Models offer `encode`, `noise_dim`, `log_terms` and `kl_per_dim` (vaecli.models.vae); the math
is vaecli.models.densities, .bounds, .gradients and .tcvae. The `Values`, and the config's keys of the
`replica` role, may be traced: replicas of one program differ in them (the state's "hyper").
"""
from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from vaecli import registry
from vaecli.models import bounds, gradients, tcvae
from vaecli.models.densities import draw_noise, reparameterize

_stop = jax.lax.stop_gradient


class Values(NamedTuple):
    """The step's numbers a loss reads beyond its config (kl_weight and capacity may be traced)."""
    kl_weight: object = 1.0  # elbo: β after the warm-up; ciwae: the ELBO's share β; btcvae: β on the TC
    dataset_size: int | None = None  # training examples N: btcvae's estimate of q(z)
    capacity: object = 0.0  # elbo with objective.capacity: the step's target KL C, in nats
    critic: object = None  # factorvae: z -> the discriminator's logits, its parameters held


def _terms(loss, recon, kl, **extra) -> dict:
    return {"loss": loss, "recon": recon, "kl": kl, **extra}


def _valued(value, surrogate):
    """`value`, with the gradient of `surrogate`."""
    return _stop(value) + (surrogate - _stop(surrogate))


def _draws(model, x, key, samples: int):
    """q(z|x) of the batch and the standard-normal numbers of `samples` draws of all latents."""
    return model.encode(x), draw_noise(key, model, x.shape[0], samples)


def _log_terms(model, x, key, samples: int, draw: bool):
    """(log p(x|z), log p(z), log q(z|x)), each (S, B), at `samples` reparameterized draws of
    all latents, or at z = the encoder's mean (S = 1) when `draw` is False; and q."""
    q = model.encode(x)
    if draw:
        eps = draw_noise(key, model, x.shape[0], samples)
    else:
        eps = jnp.zeros((1, x.shape[0], model.noise_dim), x.dtype)
    return model.log_terms(x, q, eps), q


def elbo(model, x, key, cfg, v: Values):
    """recon + kl_weight·KL from `samples` reparameterized draws; the KL analytic (per
    dimension, floored at `free_bits` nats after the batch mean: Kingma et al. 2016) or
    Monte Carlo, log q(z|x) − log p(z) at the draws."""
    if cfg.gradient == "stl":
        return _elbo_stl(model, x, key, cfg, v)
    (log_px, log_pz, log_qz), q = _log_terms(model, x, key, cfg.samples, draw=True)
    recon = -jnp.mean(log_px)
    if cfg.capacity > 0:  # Burgess et al. 2018: β·|KL − C|, C rising over objective.capacity_epochs
        kl = jnp.mean(log_qz - log_pz) if cfg.kl == "mc" else jnp.sum(jnp.mean(model.kl_per_dim(q), axis=0))
        return _terms(recon + v.kl_weight * jnp.abs(kl - v.capacity), recon, kl)
    if cfg.kl == "mc":
        kl_mc = jnp.mean(log_qz - log_pz)
        return _terms(recon + v.kl_weight * kl_mc, recon, kl_mc)
    per_dim = jnp.mean(model.kl_per_dim(q), axis=0)  # (D,): the batch mean per latent dimension
    # a where, not an if: free_bits may be a traced per-replica value
    penalty = jnp.where(cfg.free_bits > 0, jnp.sum(jnp.maximum(per_dim, cfg.free_bits)), jnp.sum(per_dim))
    return _terms(recon + v.kl_weight * penalty, recon, jnp.sum(per_dim))


def _elbo_stl(model, x, key, cfg, v: Values):
    """Sticking the landing (Roeder et al. 2017): log q(z|x) at the draws with q's statistics
    held, so the score term (zero in expectation) leaves the gradient; z stays reparameterized.
    The value is the Monte Carlo ELBO's."""
    q, eps = _draws(model, x, key, cfg.samples)
    log_px, log_pz, log_qz = (_stop(t) for t in model.log_terms(x, q, eps))
    recon, kl = -jnp.mean(log_px), jnp.mean(log_qz - log_pz)
    log_weight_fn, path = gradients.stl_parts(model, x, eps)
    lik = model.log_likelihood(x, path[0] if isinstance(path, tuple) else path)  # two layers: (z1, z2)
    # recon + w·(log q̄ − log p) = −w·log w̄ + (w − 1)·log p(x|z), at the same draws
    surrogate = -v.kl_weight * jnp.mean(log_weight_fn(path)) + (v.kl_weight - 1) * jnp.mean(lik)
    return _terms(_valued(recon + v.kl_weight * kl, surrogate), recon, kl)


def iwae(model, x, key, cfg, v: Values):
    """−log (1/K) Σ_k p(x, z_k)/q(z_k|x), K = `samples` (Burda et al. 2016); kl reported is
    the Monte Carlo KL at the same draws. STL is biased here (K > 1; Tucker et al. 2019), DReG not."""
    if cfg.gradient != "reparam":
        return _bound(model, x, key, cfg, bounds.make_bound("iwae"), cfg.samples)
    (log_px, log_pz, log_qz), _ = _log_terms(model, x, key, cfg.samples, draw=True)
    bound = jax.nn.logsumexp(log_px + log_pz - log_qz, axis=0) - math.log(cfg.samples)
    return _terms(-jnp.mean(bound), -jnp.mean(log_px), jnp.mean(log_qz - log_pz))


def _bound(model, x, key, cfg, bound: bounds.Bound, samples: int):
    """−bound(log w) at `samples` draws, its gradient by `objective.gradient`
    (vaecli.models.gradients.objective); recon and the Monte Carlo KL at the same draws."""
    q, eps = _draws(model, x, key, samples)
    log_px, log_pz, log_qz = model.log_terms(x, q, eps)
    loss = -jnp.mean(bound(log_px + log_pz - log_qz))
    if cfg.gradient != "reparam":
        surrogate, _ = gradients.objective(model, x, eps, bound, cfg.gradient)
        loss = _valued(loss, -jnp.mean(surrogate))
    return _terms(loss, -jnp.mean(_stop(log_px)), jnp.mean(_stop(log_qz - log_pz)))


def miwae(model, x, key, cfg, v: Values):
    """The mean of M = `groups` K-sample IWAE bounds over M·K draws (Rainforth et al. 2018):
    M = 1 is IWAE(K), K = 1 the M-sample ELBO."""
    return _bound(model, x, key, cfg, bounds.make_bound("miwae", groups=cfg.groups), cfg.groups * cfg.samples)


def ciwae(model, x, key, cfg, v: Values):
    """β·ELBO + (1 − β)·IWAE over the same K draws (Rainforth et al. 2018), β = objective.beta."""
    return _bound(model, x, key, cfg, bounds.make_bound("ciwae", beta=v.kl_weight), cfg.samples)


def vr(model, x, key, cfg, v: Values):
    """The Rényi bound 1/(1−α) log (1/K) Σ_k w_k^{1−α} (Li & Turner 2016): α → 1 is the ELBO,
    α = 0 the IWAE bound, at the same K draws."""
    return _bound(model, x, key, cfg, bounds.make_bound("renyi", alpha=cfg.alpha), cfg.samples)


def hold(model, names, invert: bool = False):
    """`model` with the parameters under its attributes `names` (with `invert`: all the others)
    under stop_gradient, inside a traced function: that part receives no gradient."""
    graphdef, state = nnx.split(model)
    held = {k: jax.tree.map(_stop, part) if (k in names) != invert else part for k, part in state.items()}
    return nnx.merge(graphdef, nnx.State(held))


def piwae(model, x, key, cfg, v: Values):
    """PIWAE (Rainforth et al. 2018): from the same M·K draws, the generative side (decoder,
    prior) follows the M·K-sample IWAE bound and the inference side (gradients.ENCODER_SIDE: the
    encoder and the flow) MIWAE(M, K), by `objective.gradient`. One gradient: each side's
    parameters are held in the other side's term. The loss is the IWAE bound's; the inference
    side's target, −MIWAE, is logged as `encoder_loss`."""
    q, eps = _draws(model, x, key, cfg.groups * cfg.samples)
    log_px, log_pz, log_qz = (_stop(t) for t in model.log_terms(x, q, eps))
    log_w = log_px + log_pz - log_qz
    whole, grouped = bounds.make_bound("iwae"), bounds.make_bound("miwae", groups=cfg.groups)
    generative = hold(model, gradients.ENCODER_SIDE)
    gen_px, gen_pz, gen_qz = generative.log_terms(x, generative.encode(x), eps)
    inference, _ = gradients.objective(hold(model, gradients.ENCODER_SIDE, invert=True), x, eps, grouped, cfg.gradient)
    surrogate = -jnp.mean(whole(gen_px + gen_pz - gen_qz)) - jnp.mean(inference)
    return _terms(_valued(-jnp.mean(whole(log_w)), surrogate), -jnp.mean(log_px), jnp.mean(log_qz - log_pz),
                  encoder_loss=-jnp.mean(grouped(log_w)))


def btcvae(model, x, key, cfg, v: Values):
    """β-TCVAE (Chen et al. 2018): recon + MI + β·TC + dimension-wise KL at one draw per
    example, q(z) and each q(z_d) estimated from the batch and the training-set size N.

    The gradient is minibatch-weighted sampling's (the paper's estimator). Its values carry
    constant offsets (log N on MI, (D − 1)·log N on TC, −D·log N on the dimension-wise KL:
    vaecli.models.tcvae.tc_decomposition), so the loss and the three terms logged are
    minibatch-stratified sampling's at the same draws; mi + tc + dim_kl = kl, the Monte Carlo KL."""
    if v.dataset_size is None:
        raise ValueError("btcvae: its estimate of q(z) needs the training-set size (dataset_size)")
    q, eps = _draws(model, x, key, 1)
    log_px, log_pz, log_qz = model.log_terms(x, q, eps)
    mean, logvar = q
    z = reparameterize(mean, logvar, eps[0])  # the draw log_terms made
    recon = -log_px[0]
    mws = tcvae.tc_decomposition(z, mean, logvar, v.dataset_size, "mws")
    mss = {k: _stop(t) for k, t in tcvae.tc_decomposition(z, mean, logvar, v.dataset_size, "mss").items()}
    loss = _valued(tcvae.tcvae_loss(recon, mss, v.kl_weight), tcvae.tcvae_loss(recon, mws, v.kl_weight))
    return _terms(loss, jnp.mean(recon), jnp.mean(_stop(log_qz - log_pz)),
                  **{k: jnp.mean(mss[k]) for k in ("mi", "tc", "dim_kl")})


def factorvae(model, x, key, cfg, v: Values):
    """FactorVAE (Kim & Mnih 2018): recon + KL + γ·TC at one draw per example, TC estimated
    by the discriminator's logits at z ~ q(z) (vaecli.models.factorvae), γ = objective.beta.
    The codes, without gradient, go to the discriminator's own update (`aux_input`)."""
    q, eps = _draws(model, x, key, 1)
    log_px, log_pz, log_qz = model.log_terms(x, q, eps)
    mean, logvar = q
    z = reparameterize(mean, logvar, eps[0])  # the draw log_terms made
    recon = -jnp.mean(log_px)
    kl = jnp.mean(log_qz - log_pz) if cfg.kl == "mc" else jnp.sum(jnp.mean(model.kl_per_dim(q), axis=0))
    logits = v.critic(z)
    tc = jnp.mean(logits[:, 0] - logits[:, 1])
    return _terms(recon + kl + v.kl_weight * tc, recon, kl, tc=tc, aux_input=_stop(z))


def autoencoder(model, x, key, cfg, v: Values):
    """−log p(x|z) at z = the encoder's mean: no sampling, no KL (kl reported as 0)."""
    (log_px, _, _), _ = _log_terms(model, x, key, 1, draw=False)
    recon = -jnp.mean(log_px)
    return _terms(recon, recon, jnp.zeros_like(recon))


def training_terms(model, x, key, cfg, kl_weight=None, dataset_size=None, capacity=None, critic=None,
                   replica: dict | None = None) -> dict:
    """Batch means (loss, recon, kl and the entry's `logs`) of the objective `cfg` (an
    ObjectiveConfig) names. A value left None is the config's (kl_weight: objective.beta, as
    after any warm-up; capacity: objective.capacity, as at its end); `dataset_size`, the
    training-set size, only β-TCVAE needs, `critic` only FactorVAE. `replica`: values of the
    config's replica keys (the state's "hyper", traced) that the loss reads in place of cfg's."""
    if replica:
        cfg = dataclasses.replace(cfg, **replica)
    v = Values(cfg.beta if kl_weight is None else kl_weight, dataset_size,
               cfg.capacity if capacity is None else capacity, critic)
    return registry.OBJECTIVES[cfg.name].load()(model, x, key, cfg, v)


def training_loss(model, x, key, cfg, kl_weight=None, dataset_size=None, replica: dict | None = None):
    """(loss, recon, kl) of `training_terms`: the loss's gradient is the estimator's."""
    terms = training_terms(model, x, key, cfg, kl_weight, dataset_size, replica=replica)
    return terms["loss"], terms["recon"], terms["kl"]
