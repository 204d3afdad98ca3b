"""The feature network of `vae eval-samples`: a small convolutional classifier that vaecli
trains itself on a labelled split (`vae train-features`), so sample quality can be measured
on a machine without a network, from weights whose file hash the results name.

Three 3×3 convolutions of stride 2 (16, 32, 64 channels, ReLU, 'SAME' padding), a dense
layer of FEATURE_DIM units (ReLU): the features; a linear head over the classes, trained
with softmax cross-entropy (Adam). Inputs are images / scale in [0, 1], as the models see
them. Plain JAX functions of a dict of arrays, so the weights are an .npz file.

Its features are not Inception features: a FID over them ranks models on one dataset, and
is not comparable with an Inception FID or with another feature file's.
"""
from __future__ import annotations

import numpy as np

from vaecli import progress

CHANNELS = (16, 32, 64)
FEATURE_DIM = 128
BATCH = 64
LR = 1e-3
ARCHITECTURE = (f"conv3x3/2 {'-'.join(map(str, CHANNELS))} ReLU, dense {FEATURE_DIM} ReLU (the features), "
                "linear head; softmax cross-entropy, Adam")
APPLY_ROWS = 500  # images per compiled call when features are computed


def init(key, image_shape, num_classes: int) -> dict:
    """He-initialised weights for images (H, W, C) and `num_classes` classes."""
    import jax

    h, w, c = image_shape
    params, keys = {}, jax.random.split(key, len(CHANNELS) + 2)
    for i, out in enumerate(CHANNELS):
        params[f"conv{i}/w"] = jax.random.normal(keys[i], (3, 3, c, out)) * np.sqrt(2.0 / (9 * c))
        params[f"conv{i}/b"] = np.zeros(out, np.float32)
        c, h, w = out, -(-h // 2), -(-w // 2)
    flat = h * w * c
    params["dense/w"] = jax.random.normal(keys[-2], (flat, FEATURE_DIM)) * np.sqrt(2.0 / flat)
    params["dense/b"] = np.zeros(FEATURE_DIM, np.float32)
    params["head/w"] = jax.random.normal(keys[-1], (FEATURE_DIM, num_classes)) * np.sqrt(1.0 / FEATURE_DIM)
    params["head/b"] = np.zeros(num_classes, np.float32)
    return {k: jax.numpy.asarray(v, jax.numpy.float32) for k, v in params.items()}


def features(params: dict, x):
    """Images (N, H, W, C) in [0, 1] -> features (N, FEATURE_DIM)."""
    import jax

    h = x
    for i in range(len(CHANNELS)):
        h = jax.lax.conv_general_dilated(h, params[f"conv{i}/w"], (2, 2), "SAME",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        h = jax.nn.relu(h + params[f"conv{i}/b"])
    h = h.reshape(h.shape[0], -1)
    return jax.nn.relu(h @ params["dense/w"] + params["dense/b"])


def logits(params: dict, x):
    return features(params, x) @ params["head/w"] + params["head/b"]


def _step_program(optimizer):
    import jax
    import optax

    def loss(params, x, y):
        return optax.softmax_cross_entropy_with_integer_labels(logits(params, x), y).mean()

    @jax.jit
    def step(params, opt_state, x, y):
        value, grads = jax.value_and_grad(loss)(params, x, y)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    return step


def train(x: np.ndarray, y: np.ndarray, num_classes: int, epochs: int, seed: int) -> dict:
    """Weights trained on images `x` (N, H, W, C) in [0, 1] with integer labels `y`: `epochs`
    passes in batches of BATCH, shuffled by numpy's Generator(seed), initialised from key(seed).
    The last partial batch of an epoch is dropped (one compiled shape)."""
    import jax
    import optax

    optimizer = optax.adam(LR)
    params = init(jax.random.key(seed), x.shape[1:], num_classes)
    opt_state = optimizer.init(params)
    step = _step_program(optimizer)
    rng = np.random.default_rng(seed)
    per_epoch = max(len(x) // BATCH, 1)
    with progress.Task("training the feature classifier", epochs * per_epoch, " steps") as task:
        for _ in range(epochs):
            order = rng.permutation(len(x))
            for b in range(per_epoch):
                idx = order[b * BATCH:(b + 1) * BATCH]
                params, opt_state, _ = step(params, opt_state, x[idx], y[idx])
                task.update(1)
    return {k: np.asarray(v) for k, v in params.items()}


def _apply_program(kind: str):
    import jax

    from vaecli.compiled import cache

    fn = features if kind == "features" else logits
    return cache.get(("feature-net", kind), lambda: jax.jit(fn))


def apply(params: dict, images: np.ndarray, kind: str = "features") -> np.ndarray:
    """`features` (or `logits`) of images in [0, 1], APPLY_ROWS at a time (the last block
    padded: one compiled shape), as float32 numpy."""
    program = _apply_program(kind)
    out = []
    for i in range(0, len(images), APPLY_ROWS):
        block = np.asarray(images[i:i + APPLY_ROWS], np.float32)
        n = len(block)
        if n < APPLY_ROWS:
            block = np.concatenate([block, np.zeros((APPLY_ROWS - n, *block.shape[1:]), np.float32)])
        out.append(np.asarray(program(params, block))[:n])
    return np.concatenate(out)


def accuracy(params: dict, images: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(apply(params, images, "logits"), 1) == labels))
