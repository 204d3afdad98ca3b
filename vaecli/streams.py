"""Every random stream, in one table: the integer folded into a parent key
(`jax.random.fold_in(parent, id)`) to give numbers meant to be independent of every other use
of that parent. Two streams folded into the same parent must have different ids, or they
draw the same numbers (tests/test_streams.py checks it); the same id under different parents
is harmless. The values are the runs' bits: changing one changes every run that draws from it.

Plain integers, no JAX: a module that draws imports its id from here, never writes it inline.
"""
from __future__ import annotations

from dataclasses import dataclass

# The parent keys.
RUN = "key(seed): the run's key, state['rng'] (one per replica)"
STEP = "the training step's key, fold_in(fold_in(RUN, STEP_NOISE), step)"
EVAL = "key(seed) of `vae eval-elbo`; example i's key is fold_in(EVAL, i)"
GRAD_SNR = "key(seed) of `vae grad-snr`; draw d's key is fold_in(GRAD_SNR, d)"


@dataclass(frozen=True)
class Stream:
    id: int
    parent: str
    purpose: str


TABLE: dict[str, Stream] = {
    "shuffle": Stream(1, RUN, "the permutation of the training split, folded with the epoch"),
    "step_noise": Stream(2, RUN, "each step's key (folded with the step): dynamic binarization, the z draws"),
    "pictures": Stream(3, RUN, "the prior samples in the grids written at each validation"),
    "model_init": Stream(0x1A17, RUN, "the model's initial parameters"),
    "discriminator_init": Stream(0xD15C, RUN, "FactorVAE's discriminator's initial parameters"),
    "discriminator_step": Stream(0xD15C, STEP, "FactorVAE's discriminator update: its permutation of the codes"),
    "prior_init": Stream(0xC0DE, RUN, "the VQ-VAE's code prior's initial parameters"),
    "prior_shuffle": Stream(0xC0DF, RUN, "the code prior's permutation of the training codes, folded with its epoch"),
    # Folded into the same key as the example indices 0..N−1: for N > 0x4B4C example 0x4B4C's
    # key is this stream's parent. No key draws twice (the KL draws fold the example index in
    # once more), so the numbers stay independent; a new id would change every kl_mc figure.
    "kl_mc": Stream(0x4B4C, EVAL, "the Monte Carlo KL's own draws, apart from the importance samples"),
    # Above 2^31: no draw index (an int32) reaches it, so no draw shares the batch's key.
    "grad_snr_batch": Stream(0x8000_0B1A, GRAD_SNR, "the dynamic binarization of the measured batch"),
}

SHUFFLE = TABLE["shuffle"].id
STEP_NOISE = TABLE["step_noise"].id
PICTURES = TABLE["pictures"].id
MODEL_INIT = TABLE["model_init"].id
DISCRIMINATOR_INIT = TABLE["discriminator_init"].id
DISCRIMINATOR_STEP = TABLE["discriminator_step"].id
KL_MC = TABLE["kl_mc"].id
PRIOR_INIT = TABLE["prior_init"].id
PRIOR_SHUFFLE = TABLE["prior_shuffle"].id
GRAD_SNR_BATCH = TABLE["grad_snr_batch"].id
