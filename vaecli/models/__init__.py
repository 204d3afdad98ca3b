"""The science, as pure functions and Flax NNX modules: no files, no optimizers, no loops.

    densities    log-densities, the KL (analytic and Monte Carlo), reparameterized draws
    likelihoods  p(x|z): Bernoulli, Gaussian, discretized logistic
    priors       p(z): standard normal, VampPrior
    networks     encoders and decoders (MLP, conv) by `model.kind`
    flows        planar and IAF flows: the posterior of `model.flow`
    gaussian_layer  one Gaussian stochastic layer: the interface the VAE and the conditional VAE share
    vae          the VAE (one or two stochastic layers, a flow posterior), built from a config; `Functional`
    bounds       bounds of log p(x) from log-weights (IWAE family, Rényi)
    gradients    their gradient estimators: reparam, STL and DReG surrogates; the encoder side of the parameters
    tcvae        β-TCVAE's split of the KL (mutual information, total correlation, dimension-wise KL)
    objectives   the training losses by `objective.name` (ELBO, IWAE, MIWAE, PIWAE, CIWAE, VR, β-TCVAE,
                 autoencoder), with the gradient estimator of `objective.gradient`
"""
