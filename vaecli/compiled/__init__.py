"""What XLA runs, and where: programs compiled once and driven from the host.

    optimizer      optax chain of `optim.*`
    state          the training state pytree (params, optimizer, step, key), from a config
    epoch          one compiled epoch of training steps (`lax.scan`), data on the device
    estimator      the ELBO and the importance-sampled log p(x), chunked over K
    summaries      their means, standard errors and active units, on the host
    encode_decode  a model's encoder, decoder and prior sampler as compiled programs
    devices        the data-parallel mesh, the replica layout, multi-process jobs, host copies
    spread         a program's replicas run over the devices, each device its own share
    cache          compiled programs kept in memory, and JAX's persistent cache on disk
"""
