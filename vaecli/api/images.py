"""What the Python API accepts as images and latents, checked, in the form the compiled
programs take. Numpy only: no JAX at import.

Images are uint8 pixel values in 0..255 or floats in [0, 1] (the values the model sees), one
image (H, W, C) — or (H, W) for one channel — or a batch (N, H, W, C) — or (N, H, W); numpy, JAX or
anything `np.asarray` reads. `Pixels.values` are the floats the model sees whatever came in.

`Pixels.stored` and `Pixels.scale` are the same values as a vaecli data split holds them (the
estimator divides by the scale on the device): uint8 0/1 with scale 1 where every pixel is 0
or 1, uint8 with scale 255 where every pixel is a multiple of 1/255, else the floats with
scale 1. The conversions are exact, so nothing changes but the program: a split's images
given as floats meet the very program `vae eval-elbo` runs on that split, and its bits.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vaecli.errors import UsageError


@dataclass(frozen=True)
class Pixels:
    """Checked images: `values` float32 (N, H, W, C) in [0, 1]; `stored` and `scale` the same
    values as a data split holds them; `single`: one image came in (results drop the N axis)."""

    values: np.ndarray
    stored: np.ndarray
    scale: int
    single: bool


def expected_images(image_shape) -> str:
    """'(N, 28, 28[, 1]) or (28, 28[, 1]) uint8 in 0..255 or floats in [0, 1]'."""
    h, w, c = image_shape
    one = f"({h}, {w}[, 1])" if c == 1 else f"({h}, {w}, {c})"
    return f"(N, {one[1:]} or {one} uint8 in 0..255 or floats in [0, 1]"


def _refuse(image_shape, got: str) -> UsageError:
    return UsageError(f"images: expected {expected_images(image_shape)}, got {got}")


def _batched(x: np.ndarray, image_shape) -> tuple[np.ndarray, bool]:
    shape = tuple(image_shape)
    if x.shape[1:] == shape:
        if not len(x):
            raise _refuse(image_shape, f"{tuple(x.shape)}, no images")
        return x, False
    if x.shape == shape or (shape[-1] == 1 and x.shape == shape[:-1]):
        return x.reshape(1, *shape), True
    if shape[-1] == 1 and x.ndim == 3 and x.shape[1:] == shape[:-1]:  # (N, H, W): how numpy users hold grayscale
        return _batched(x[..., None], image_shape)
    raise _refuse(image_shape, str(tuple(x.shape)))


def check_images(images, image_shape) -> Pixels:
    """`images` checked against a run's `image_shape` (H, W, C), or UsageError naming the
    expected shape and what came instead (its shape, its dtype or its range)."""
    x = np.asarray(images)
    x, single = _batched(x, image_shape)
    if x.dtype == np.uint8:
        if np.all((x == 0) | (x == 255)):
            stored, scale = (x == 255).astype(np.uint8), 1
        elif x.max() == 1:
            # vaecli's own binary splits hold uint8 0/1: read as 0..255 they would be black
            raise _refuse(image_shape, "uint8 in 0..1 (pass binary images as floats, or as 0 and 255)")
        else:
            stored, scale = x, 255
        return Pixels(stored.astype(np.float32) / scale, stored, scale, single)
    if not np.issubdtype(x.dtype, np.floating):
        raise _refuse(image_shape, f"{x.dtype} {tuple(x.shape)}")
    values = x.astype(np.float32)
    if x.size and not np.all(np.isfinite(values)):
        raise _refuse(image_shape, "floats that are not all finite (NaN or infinity)")
    if x.size and (values.min() < 0 or values.max() > 1):
        raise _refuse(image_shape, f"floats in [{values.min():g}, {values.max():g}]")
    return Pixels(values, *_as_stored(values), single)


def _as_stored(values: np.ndarray) -> tuple[np.ndarray, int]:
    """The exact uint8 form of float pixels where one exists: (array, scale)."""
    if np.all((values == 0) | (values == 1)):
        return values.astype(np.uint8), 1
    levels = np.rint(values * 255).astype(np.uint8)
    if np.array_equal(levels.astype(np.float32) / 255, values):  # the arithmetic of a split's images / scale
        return levels, 255
    return values, 1


def check_latents(z, latent_dim: int) -> np.ndarray:
    """`z` (..., latent_dim) as finite float32, or UsageError saying what is expected."""
    arr = np.asarray(z)
    what = f"z: expected (..., {latent_dim}) floats (Run.latent_dim: the dimension of the code the run decodes)"
    if arr.ndim == 0 or arr.shape[-1] != latent_dim:
        raise UsageError(f"{what}, got {tuple(arr.shape)}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise UsageError(f"{what}, got {arr.dtype}")
    arr = arr.astype(np.float32)
    if not np.all(np.isfinite(arr)):
        raise UsageError(f"{what}, got values that are not all finite (NaN or infinity)")
    return arr


def check_labels(y, num_classes: int | None, shape: tuple[int, ...], name: str = "y"):
    """Class labels for a conditional run (`num_classes`), integers in 0..num_classes-1 of
    `shape` (one per image or latent; a single label broadcast); None for another run, which
    takes none. UsageError naming what is wrong."""
    if num_classes is None:
        if y is not None:
            raise UsageError(f"{name}: this run is not conditional (model.conditional=false); it takes no labels")
        return None
    if y is None:
        raise UsageError(f"{name}: this run is conditional (model.conditional=true, {num_classes} classes); pass "
                         f"the class label of each image, e.g. {name}=3")
    arr = np.asarray(y)
    if not np.issubdtype(arr.dtype, np.integer) or arr.size == 0:
        raise UsageError(f"{name}: expected integer class labels in 0..{num_classes - 1}, got {arr.dtype} {arr.shape}")
    if arr.min() < 0 or arr.max() >= num_classes:
        bad = int(arr.min()) if arr.min() < 0 else int(arr.max())
        raise UsageError(f"{name}={bad}: this run has {num_classes} classes, labels 0..{num_classes - 1}")
    try:
        return np.broadcast_to(arr, shape).astype(np.int64)
    except ValueError:
        raise UsageError(f"{name}: expected one label or {shape} labels, got {arr.shape}") from None
