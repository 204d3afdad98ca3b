"""The science, as pure functions and Flax NNX modules: no files, no optimizers, no loops.

    densities    log-densities, the KL (analytic and Monte Carlo), reparameterized draws
    likelihoods  p(x|z): Bernoulli, Gaussian, discretized logistic
    priors       p(z): standard normal, VampPrior
    networks     encoders and decoders (MLP, conv) by `model.kind`
    vae          the VAE (one or two stochastic layers), built from a config; `Functional`
    objectives   the training losses by `objective.name` (ELBO, IWAE, autoencoder)
"""
