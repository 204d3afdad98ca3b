"""toy_sprites: the factor grid, its order, and that each factor does what its name says."""
import numpy as np
import pytest

from vaecli.data import toy_sprites as ts
from vaecli.errors import UsageError


@pytest.fixture(scope="module")
def grid():
    return ts.dataset()


def centre_of_mass(images):
    """(row, column) centre of mass of each image (n, 64, 64, 1)."""
    m = images[..., 0].astype(np.float64)
    rows, cols = np.arange(ts.SIZE)[:, None], np.arange(ts.SIZE)[None, :]
    total = m.sum((1, 2))
    return (m * rows).sum((1, 2)) / total, (m * cols).sum((1, 2)) / total


def test_shapes_and_dtypes(grid):
    images, factors = grid
    assert ts.FACTOR_NAMES == ("shape", "scale", "orientation", "pos_x", "pos_y")
    assert images.shape == (ts.NUM_IMAGES, 64, 64, 1) and images.dtype == np.uint8
    assert factors.shape == (ts.NUM_IMAGES, 5) and np.issubdtype(factors.dtype, np.integer)
    assert set(np.unique(images)) == {0, 1}
    assert 1000 < ts.NUM_IMAGES < 10000 and ts.NUM_IMAGES == np.prod(ts.FACTOR_SIZES)


def test_every_combination_once_in_canonical_order(grid):
    _, factors = grid
    assert len(np.unique(factors, axis=0)) == ts.NUM_IMAGES
    assert (factors.min(0) == 0).all() and (factors.max(0) == np.array(ts.FACTOR_SIZES) - 1).all()
    # dSprites' order: the last factor varies fastest, the first slowest.
    np.testing.assert_array_equal(factors[1] - factors[0], [0, 0, 0, 0, 1])
    np.testing.assert_array_equal(factors[ts.FACTOR_SIZES[-1]], [0, 0, 0, 1, 0])
    np.testing.assert_array_equal(factors[-1], np.array(ts.FACTOR_SIZES) - 1)
    np.testing.assert_array_equal(ts.index_of(factors), np.arange(ts.NUM_IMAGES))
    np.testing.assert_array_equal(ts.factors_of(np.arange(ts.NUM_IMAGES)), factors)


def test_deterministic_and_draw_matches_dataset(grid):
    images, factors = grid
    rows = np.random.default_rng(0).integers(0, ts.NUM_IMAGES, 200)
    np.testing.assert_array_equal(ts.draw(factors[rows]), images[rows])
    np.testing.assert_array_equal(ts.draw(factors[rows]), ts.draw(factors[rows]))
    assert len({image.tobytes() for image in images}) == ts.NUM_IMAGES  # no two alike


def test_changing_any_one_factor_changes_the_image(grid):
    images, factors = grid
    for j, size in enumerate(ts.FACTOR_SIZES):
        moved = factors.copy()
        moved[:, j] = (moved[:, j] + 1) % size
        changed = (ts.draw(moved) != images).any(axis=(1, 2, 3))
        assert changed.all(), f"{ts.FACTOR_NAMES[j]}: {np.sum(~changed)} images unchanged"


def test_every_sprite_inside_the_image(grid):
    images, _ = grid
    border = images[:, 0].sum() + images[:, -1].sum() + images[:, :, 0].sum() + images[:, :, -1].sum()
    assert border == 0 and images.sum((1, 2, 3)).min() > 30


def test_position_moves_the_shape_and_nothing_else(grid):
    _, factors = grid
    step = ts.FACTOR_VALUES["pos_x"][1] - ts.FACTOR_VALUES["pos_x"][0]
    for j, axis in ((3, 1), (4, 0)):  # pos_x moves columns, pos_y rows
        first = factors[factors[:, j] == 0]
        com0 = centre_of_mass(ts.draw(first))
        for k in range(1, ts.FACTOR_SIZES[j]):
            moved = first.copy()
            moved[:, j] = k
            com = centre_of_mass(ts.draw(moved))
            # Positions are whole-pixel shifts of one drawing: the centre moves by exactly k
            # steps along its axis, not at all along the other, and the area is unchanged.
            np.testing.assert_allclose(com[axis] - com0[axis], k * step, atol=1e-9)
            np.testing.assert_allclose(com[1 - axis], com0[1 - axis], atol=1e-9)
        assert (ts.draw(moved).sum((1, 2, 3)) == ts.draw(first).sum((1, 2, 3))).all()


def test_scale_grows_the_area_as_its_square(grid):
    images, factors = grid
    area = images.sum((1, 2, 3)).astype(np.float64)
    radii = np.array(ts.FACTOR_VALUES["scale"])
    by_scale = [area[factors[:, 1] == s] for s in range(len(radii))]  # same order of other factors
    for s in range(1, len(radii)):
        assert (by_scale[s] > by_scale[s - 1]).all()
        # Area of a drawn shape goes as radius squared, up to the pixel grid's rounding.
        ratio = by_scale[s] / by_scale[s - 1]
        np.testing.assert_allclose(ratio, (radii[s] / radii[s - 1]) ** 2, rtol=0.2)


def test_orientation_turns_without_changing_much_area(grid):
    images, factors = grid
    area = images.sum((1, 2, 3)).astype(np.float64)
    upright = factors[:, 2] == 0
    for o in range(1, ts.FACTOR_SIZES[2]):
        turned = factors[:, 2] == o
        # Turning changes only which boundary pixels are half covered: at the largest scale a
        # few percent of the area; the smallest square (8.5 pixels wide) gains or loses up to
        # a row of pixels on each side.
        for scale, rtol in ((2, 0.05), (0, 0.3)):
            at = factors[:, 1] == scale
            np.testing.assert_allclose(area[turned & at], area[upright & at], rtol=rtol)
        # The shape turns: the image is not the upright one, at any scale.
        assert (images[turned] != images[upright]).any(axis=(1, 2, 3)).all()


def test_bad_factors_are_usage_errors():
    with pytest.raises(UsageError, match="shape \\(n, 5\\)"):
        ts.draw(np.zeros((3, 4), int))
    with pytest.raises(UsageError, match="integer"):
        ts.draw(np.zeros((3, 5)))
    with pytest.raises(UsageError, match="pos_x must lie in 0..7"):
        ts.draw(np.array([[0, 0, 0, 8, 0]]))
    with pytest.raises(UsageError, match="image index"):
        ts.factors_of([ts.NUM_IMAGES])
