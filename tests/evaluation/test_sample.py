"""`vae sample` modes and `vae plot` on tiny trained runs: every picture is a PNG of the size its
layout implies, with a title strip, and its array beside it holds finite values."""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import ROOT, built_once, make_bars, tiny_overrides
from PIL import Image

from vaecli import config, data, pictures
from vaecli.errors import RunError, UsageError
from vaecli.evaluation import curves as plot
from vaecli.evaluation import sample
from vaecli.rundir import restore
from vaecli.training import start as train
from vaecli.training.pictures import training_pictures

H = W = 8  # tiny_bars images
SCALE = 2  # pictures.save_grid's default enlargement


def grid_png_size(rows: int, cols: int, title: str, labels: bool = False) -> tuple[int, int]:
    """Width and height of a grid PNG: 8x8 tiles, 2-pixel gutters, ×2, a 16-pixel title strip
    and, with row labels, a 64-pixel label strip; widened to the title's length (Pillow's
    default font) plus 8 pixels when the grid is narrower."""
    from PIL import ImageDraw

    text = math.ceil(ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength(title)) + 8
    width = (cols * (W + 2) + 2) * SCALE + (64 if labels else 0)
    height = (rows * (H + 2) + 2) * SCALE + 16
    return max(width, text), height


def check_title(res: dict, run: Path) -> None:
    assert res["title"].startswith(f"{run.name} step {res['step']} {res['mode']}")


@pytest.fixture(scope="module")
def labelled_2d_run(tmp_path_factory) -> Path:
    """A run with a 2-D latent space on bars whose label is the row of the horizontal bar."""
    def build(root: Path) -> Path:
        splits = {}
        for name, n, seed in (("train", 320, 0), ("validation", 64, 1), ("test", 96, 2)):
            images = make_bars(n, seed)
            splits[name] = {"images": images, "labels": images[:, :, :, 0].all(axis=2).argmax(axis=1).astype(np.int64)}
        data.write_cache(root / "cache" / "tiny_bars_labelled", splits)
        cfg = config.load(None, tiny_overrides(root / "cache") + ["data.dataset=tiny_bars_labelled",
                                                                  "model.latent_dim=2", "train.epochs=1"])
        return train.train(cfg, root / "runs", "twod", argv=["pytest"], progress="none")

    return built_once(tmp_path_factory, "labelled", build, copy=False)[1]


def check_png(path: str, size: tuple[int, int] | None = None) -> None:
    with Image.open(path) as img:
        img.load()
        assert img.format == "PNG"
        if size is not None:
            assert img.size == size
        grey = np.asarray(img.convert("L"))
    assert grey.min() < grey.max()  # not blank
    assert grey[:16].min() < 128  # the title strip holds dark text


# (mode, options, array shape, (rows, cols) of the grid, row labels?)
GRID_CASES = [
    ("prior", {"n": 9, "temperature": 0.5}, (9, H, W, 1), (3, 3), False),
    ("recon", {"n": 5}, (2, 5, H, W, 1), (2, 5), False),  # data row over reconstruction row
    ("recon", {"n": 10}, (2, 10, H, W, 1), (4, 8), False),  # 8 a row: two blocks, the second padded
    ("interpolate", {"n": 2, "steps": 4}, (2, 6, H, W, 1), (2, 6), False),  # data at both ends
    ("traverse", {"steps": 5}, (4, 5, H, W, 1), (4, 5), True),  # one row per latent dimension
    ("traverse", {"steps": 3, "n": 2}, (2, 3, H, W, 1), (2, 3), True),
]


@pytest.mark.parametrize("mode, options, shape, layout, labels", GRID_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(GRID_CASES)])
def test_grid_modes(tiny_run, tmp_path, mode, options, shape, layout, labels):
    res = sample.sample(tiny_run, mode=mode, out=tmp_path, seed=1, **options)
    assert res["mode"] == mode and Path(res["png"]).parent == tmp_path
    array = np.load(res["npy"])
    assert array.shape == shape
    assert np.all(np.isfinite(array)) and array.min() >= 0 and array.max() <= 1
    check_png(res["png"], grid_png_size(*layout, res["title"], labels))
    check_title(res, tiny_run)
    model = restored(tiny_run)
    if mode == "interpolate":  # each row: a test image, decodings along the line between encodings, another
        test = test_images(tiny_run)
        ends = array[:, [0, -1]].reshape(-1, H, W, 1)
        assert all(any(np.array_equal(e, t) for t in test) for e in ends)
        mean_a, mean_b = model.encode(array[:, 0]), model.encode(array[:, -1])
        t = np.linspace(0, 1, options["steps"])[None, :, None]
        line = (1 - t) * mean_a[:, None] + t * mean_b[:, None]
        np.testing.assert_allclose(array[:, 1:-1], model.decode(line), atol=1e-5)
    if mode == "traverse":  # row r: the dimension res["dims"][r] set to -3..+3, the others at one encoding
        values = np.linspace(-3, 3, options["steps"])
        base = model.encode(test_images(tiny_run))[np.random.default_rng(1).integers(128)]
        z = np.repeat(np.repeat(base[None, None], len(res["dims"]), 0), len(values), 1)
        z[np.arange(len(res["dims"])), :, res["dims"]] = values
        np.testing.assert_allclose(array, model.decode(z), atol=1e-5)
        assert "from -3 to 3" in res["title"]


class restored:
    """A run's decoder and encoder mean on host arrays, from its checkpoint (no vaecli.evaluation.sample)."""

    def __init__(self, run_path):
        import jax

        from vaecli.rundir import layout as runs

        run = runs.open_run(run_path)
        fn, state, _, _ = restore.load_state(run.config, run.image_shape, run.checkpoint_dir)
        vae = fn.bind(state["params"])
        self._decode, self._encode = jax.jit(vae.mean_image), jax.jit(lambda x: vae.encode(x)[0])

    def decode(self, z):
        z = np.asarray(z, np.float32)
        return np.asarray(self._decode(z.reshape(-1, z.shape[-1]))).reshape(*z.shape[:-1], H, W, 1)

    def encode(self, x):
        return np.asarray(self._encode(np.asarray(x, np.float32).reshape(len(x), -1)))


def test_images(run) -> np.ndarray:
    return data.load_split(config.load(run / "config.yaml").data, "test").images.astype(np.float32)


test_images.__test__ = False  # a helper, not a test


def test_default_file_names_and_the_seed_chooses_the_test_images(tiny_run, tmp_path):
    """Without --out: RUN/samples/<mode>-step<S>-seed<s>[-n<N>][-steps<S>].png and .npy beside it;
    --seed draws which test images appear (the same seed, the same images)."""
    import shutil

    run = tmp_path / tiny_run.name
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("samples"))
    a = sample.sample(run, mode="recon", n=4, seed=1)
    assert Path(a["png"]) == run / "samples" / "recon-step60-seed1-n4.png" and Path(a["png"]).is_file()
    assert Path(a["npy"]) == run / "samples" / "recon-step60-seed1-n4.npy"
    b = sample.sample(run, mode="interpolate", n=2, steps=3, seed=1)
    assert Path(b["png"]).name == "interpolate-step60-seed1-n2-steps3.png"
    assert Path(sample.sample(run, seed=5)["png"]).name == "prior-step60-seed5-n64.png"
    again = np.load(sample.sample(run, mode="recon", n=4, seed=1, out=tmp_path / "again")["npy"])[0]
    other = np.load(sample.sample(run, mode="recon", n=4, seed=2)["npy"])[0]
    first = np.load(a["npy"])[0]
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    test = test_images(run)
    assert all(any(np.array_equal(img, t) for t in test) for img in np.concatenate([first, other]))


def test_recon_pairs_data_with_reconstructions_of_the_same_images(tiny_run, tmp_path):
    res = sample.sample(tiny_run, mode="recon", n=6, out=tmp_path, seed=2)
    x, recon = np.load(res["npy"])
    assert set(np.unique(x)) <= {0.0, 1.0}  # the test images themselves
    test_images = data.load_split(config.load(tiny_run / "config.yaml").data, "test").images.astype(np.float32)
    assert all(any(np.array_equal(img, t) for t in test_images) for img in x)
    assert np.mean(np.abs(recon - x)) < np.mean(np.abs(recon - x[::-1]))  # each under its own image


def test_traverse_rows_follow_kl_and_sweep_one_dimension(tiny_run, tmp_path):
    from vaecli.compiled import estimator, summaries
    from vaecli.rundir import layout as runs

    res = sample.sample(tiny_run, mode="traverse", steps=5, out=tmp_path)
    rows = np.load(res["npy"])
    # Rows ordered by the mean KL over the test split, as the estimator computes it.
    run = runs.open_run(tiny_run)
    fn, state, _, _ = restore.load_state(run.config, run.image_shape, run.checkpoint_dir)
    test = data.load_split(run.config.data, "test")
    per = estimator.per_example(fn, state["params"], test.images, test.scale, 1, 0, 64)
    kl = summaries.latent_units(per)["kl_per_dim"]
    assert res["dims"] == list(np.argsort(kl)[::-1])
    np.testing.assert_allclose(res["dim_kl"], np.sort(kl)[::-1], rtol=1e-4)
    # A row varies along the sweep (the decoder depends on that dimension) in at least one dimension.
    assert max(np.abs(r[0] - r[-1]).max() for r in rows) > 0.01


def test_traverse_gif_animates_the_sweep_beside_the_png(tiny_run, tmp_path):
    res = sample.sample(tiny_run, mode="traverse", steps=5, out=tmp_path, gif=True)
    gif = Path(res["gif"])
    assert gif == Path(res["png"]).with_suffix(".gif") and gif.is_file()
    rows = np.load(res["npy"])  # (dimensions, steps, H, W, 1)
    with Image.open(gif) as img:
        assert img.format == "GIF" and img.info["loop"] == 0
        # Forward over the 5 points and back (3 more), so the loop has no jump.
        assert img.n_frames == 5 + 3
        # One tile per dimension: 4 latents on a 2x2 grid, 2-pixel gutters, x2, a title strip.
        assert img.size == ((2 * (W + 2) + 2) * SCALE, (2 * (H + 2) + 2) * SCALE + 16)
        frames = []
        for t in range(img.n_frames):
            img.seek(t)
            frames.append(np.asarray(img.convert("L"), np.float32)[16:])
    for t, f in enumerate([0, 1, 2, 3, 4, 3, 2, 1]):
        want = pictures.grid(rows[:, f])[..., 0].repeat(SCALE, 0).repeat(SCALE, 1)
        assert np.abs(frames[t] - want).max() <= 8, t  # the GIF palette's rounding of grey levels
    with pytest.raises(UsageError, match="--gif animates traverse; --mode recon draws one picture"):
        sample.sample(tiny_run, mode="recon", out=tmp_path / "none", gif=True)
    assert not (tmp_path / "none").exists()


def test_prior_temperature_scales_the_draws(tiny_run, tmp_path):
    cold = np.load(sample.sample(tiny_run, n=16, temperature=1e-4, out=tmp_path)["npy"])
    # At T→0 every draw decodes z ≈ 0: the samples are all the same picture.
    assert np.abs(cold - cold[0]).max() < 1e-2
    warm = np.load(sample.sample(tiny_run, n=16, temperature=1.0, out=tmp_path)["npy"])
    assert np.abs(warm - warm[0]).max() > 0.05


def test_manifold_on_a_2d_latent_space(labelled_2d_run, tmp_path):
    from scipy.stats import norm

    res = sample.sample(labelled_2d_run, mode="manifold", steps=4, out=tmp_path)
    array = np.load(res["npy"])
    assert array.shape == (4, 4, H, W, 1) and np.all(np.isfinite(array))
    # the decoder over Gaussian quantiles 0.05..0.95 of each axis; z1 to the right, z2 upwards
    q = norm.ppf(np.linspace(0.05, 0.95, 4))
    z = np.stack(np.meshgrid(q, q[::-1]), -1)
    np.testing.assert_allclose(array, restored(labelled_2d_run).decode(z), atol=1e-5)
    check_png(res["png"], grid_png_size(4, 4, res["title"]))
    check_title(res, labelled_2d_run)


def test_latents_scatter_coloured_by_label(labelled_2d_run, tmp_path):
    res = sample.sample(labelled_2d_run, mode="latents", out=tmp_path)
    points, labels = np.load(res["npy"]), np.load(res["labels_npy"])
    assert points.shape == (96, 2) and np.all(np.isfinite(points)) and labels.shape == (96,)
    assert set(labels) <= set(range(8))
    check_png(res["png"], (600, 600))  # figsize 6x6 inches at 100 dpi
    check_title(res, labelled_2d_run)


def test_latents_pca_without_labels(tiny_run, tmp_path):
    res = sample.sample(tiny_run, mode="latents", n=50, out=tmp_path)
    points = np.load(res["npy"])
    assert points.shape == (50, 2) and np.all(np.isfinite(points)) and "labels_npy" not in res
    assert points[:, 0].var() >= points[:, 1].var()  # first principal component first
    np.testing.assert_allclose(points.mean(0), 0, atol=1e-5)  # centred
    check_png(res["png"], (600, 600))


def test_blank_tiles_pad_a_grid_white():
    tiles = np.zeros((3, 2, 2, 1), np.float32)
    tiles[2] = np.nan
    mosaic = pictures.grid(tiles, cols=3, pad=1)
    assert mosaic[1:3, 1:3].max() == 0 and mosaic[1:3, 7:9].min() == 255


# -------------------------------------------------------------------------------- vae plot


def test_plot_two_runs_on_one_figure(tiny_run, labelled_2d_run, tmp_path):
    res = plot.plot_curves([tiny_run, labelled_2d_run], tmp_path / "both.png")
    with Image.open(res["png"]) as img:
        assert img.format == "PNG" and img.size == (1200, 800)  # 12x8 inches at 100 dpi
    table = np.load(res["npy"])
    assert table.shape[1] == len(plot.COLUMNS)
    for i, run in enumerate((tiny_run, labelled_2d_run)):
        lines = [line for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
        assert np.sum(table[:, 0] == i) == len(lines)  # every log point of every run is plotted
    train_rows = table[table[:, 1] == 0]
    assert np.all(np.isfinite(train_rows[:, 3:])) and np.all(train_rows[:, -1] > 0)  # examples/s
    assert np.all(np.isnan(table[table[:, 1] == 1][:, -1]))  # validation has no throughput
    assert_plotted_as_logged(table, [tiny_run, labelled_2d_run])
    assert res["title"] == f"training curves: {tiny_run.name} step 60; {labelled_2d_run.name} step 10"


def assert_plotted_as_logged(table: np.ndarray, run_paths) -> None:
    """Each row of the plotted array is one line of its run's metrics.jsonl: run index, split
    (0 train, 1 validation), step, loss, recon, kl, examples/s (NaN where the line has none)."""
    from vaecli.rundir import metrics

    expected = [[i, ("train", "validation").index(r["split"]), r["step"], r["loss"], r["recon"], r["kl"],
                 r.get("examples_per_s", np.nan)]
                for i, run in enumerate(run_paths) for r in metrics.read(run)]
    expected.sort(key=lambda row: tuple(row[:3]))
    got = sorted(table.tolist(), key=lambda row: tuple(row[:3]))
    np.testing.assert_array_equal(np.array(got), np.array(expected, np.float64))


def test_plot_one_run_defaults_into_the_run_folder(tiny_run, tmp_path):
    import shutil

    run = tmp_path / tiny_run.name  # a copy: the shared run's folder stays as the trainer left it
    shutil.copytree(tiny_run, run)
    res = plot.plot_curves([run])
    assert Path(res["png"]) == run / "plots" / "curves-step60.png" and Path(res["png"]).is_file()
    assert Path(res["npy"]) == run / "plots" / "curves-step60.npy"
    assert_plotted_as_logged(np.load(res["npy"]), [run])
    assert res["title"] == f"training curves: {run.name} step 60"


def test_plot_errors(tiny_run, tmp_path):
    with pytest.raises(UsageError, match="--out"):
        plot.plot_curves([tiny_run, tiny_run])
    with pytest.raises(UsageError, match="ending in .png"):
        plot.plot_curves([tiny_run], tmp_path / "x.jpg")
    empty = tmp_path / "empty-run"
    empty.mkdir()
    for name in ("config.yaml", "meta.json"):
        (empty / name).write_text((tiny_run / name).read_text())
    with pytest.raises(RunError, match="no metrics.jsonl"):
        plot.plot_curves([empty], tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_plotting_needs_no_display(tiny_run, tmp_path):
    """A headless process (no DISPLAY, no MPLBACKEND) draws the figure."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "TF_CPP_MIN_LOG_LEVEL": "2"}
    p = subprocess.run([sys.executable, "-m", "vaecli.cli", "plot", str(tiny_run), "--out", str(tmp_path / "c.png")],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == [str(tmp_path / "c.png"), str(tmp_path / "c.npy")]


# ------------------------------------------------------------- the mode registry and traverse


def test_cli_help_lists_every_mode_with_its_defaults():
    """`vae sample --help` is built from sample.MODES: each mode, and each default --n and --steps."""
    import typer
    from typer.testing import CliRunner

    from vaecli.cli import app

    helps = {p.name: p.help for p in typer.main.get_command(app).commands["sample"].params}
    assert CliRunner().invoke(app, ["sample", "--help"]).exit_code == 0
    text = " ".join(helps[k] for k in ("mode", "n", "steps"))
    for name, mode in sample.MODES.items():
        assert f"{name}:" in text
        if mode.n is not None:
            assert f"{name}: {mode.n_help} ({mode.n})" in text
        if mode.steps is not None:
            assert f"{name}: {mode.steps_help} ({mode.steps})" in text


@pytest.fixture(scope="module")
def vamp_run(tmp_path_factory, tiny_cache) -> Path:
    cfg = config.load(None, tiny_overrides(tiny_cache) + ["model.prior=vamp", "model.pseudo_inputs=4",
                                                          "objective.kl=mc", "train.epochs=2"])
    return built_once(tmp_path_factory, "vamp", lambda root: train.train(
        cfg, root, "vamp", argv=["pytest"], progress="none"))[1]


def test_traverse_of_a_vampprior_run_is_ordered_and_labelled_by_the_encoder_mean_variance(vamp_run, tmp_path):
    """The KL to N(0, I) is not a VampPrior run's KL: rows follow Var_x E[z_d|x] (the
    active-unit statistic of `vae eval-elbo`), and their labels say so."""
    from vaecli.compiled import estimator, summaries
    from vaecli.rundir import layout as runs

    res = sample.sample(vamp_run, mode="traverse", steps=3, out=tmp_path)
    run = runs.open_run(vamp_run)
    fn, state, _, _ = restore.load_state(run.config, run.image_shape, run.checkpoint_dir)
    test = data.load_split(run.config.data, "test")
    units = summaries.latent_units(estimator.per_example(fn, state["params"], test.images, test.scale, 1, 0, 64))
    assert units["kl_per_dim"] is None  # no closed form: the estimator has no per-dimension KL either
    variance = np.asarray(units["encoder_mean_variance"])
    assert res["order_by"] == "encoder_mean_variance" and "dim_kl" not in res
    assert res["dims"] == list(np.argsort(-variance, kind="stable"))
    np.testing.assert_allclose(res["dim_measure"], variance[res["dims"]], rtol=1e-4)
    assert "KL" not in res["title"] and "Var" in res["title"]
    check_png(res["png"], grid_png_size(4, 3, res["title"], labels=True))


def test_training_pictures_use_the_sample_layouts(tiny_run, tmp_path):
    from vaecli.rundir import layout as runs

    run = runs.open_run(tiny_run)
    fn, state, _, _ = restore.load_state(run.config, run.image_shape, run.checkpoint_dir)
    val = data.load_split(run.config.data, "validation")
    images = val.images[:10].astype(np.float32) / val.scale
    prior, recon = training_pictures(fn, state["params"], images, seed=3, step=12, run_dir=tmp_path,
                                            title="tiny step 12")
    assert (prior, recon) == (tmp_path / "samples" / "prior-step12.png", tmp_path / "samples" / "recon-step12.png")
    check_png(prior, grid_png_size(3, 4, "tiny step 12 prior samples"))  # 10 draws, 4 a row
    # the first 5 images over their reconstructions: one block of 5 columns
    check_png(recon, grid_png_size(2, 5, "tiny step 12 validation images over their reconstructions"))
    again = tmp_path / "again"
    training_pictures(fn, state["params"], images, seed=3, step=12, run_dir=again, title="tiny step 12")
    assert (again / "samples" / "prior-step12.png").read_bytes() == prior.read_bytes()  # from (seed, stream)
