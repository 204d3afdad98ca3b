"""vaecli from Python: the names `import vaecli` offers (vaecli/__init__.py reaches them
lazily). The top layer, beside cli/: it calls the layers below as the commands do, and no
module of vaecli imports it.

    run       vaecli.load -> Run: a trained run's encoder, decoder, prior, log p(x) and ELBO
    commands  vaecli.train: `vae train` from a script (vaecli.evaluate is evaluation.elbo.evaluate)
    images    what the API accepts as images and latents, checked (numpy only)
"""
