"""Looking at a trained run (from its folder alone).

    elbo             `vae eval-elbo`: ELBO, importance-sampled log p(x) for each K, KL, active units
    arguments        the checks of their arguments that need no JAX (the CLI makes them first)
    sample           `vae sample`: pictures of the model; modes: its registry of picture modes
    curves           `vae plot`: training and validation curves from metrics.jsonl
    grad_snr         `vae grad-snr`: the signal-to-noise ratio of the gradient estimators at a checkpoint
    disentanglement  `vae eval-disentanglement`: MIG, FactorVAE, DCI, SAP, BetaVAE, modularity
"""
