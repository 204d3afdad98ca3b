"""`vae sample`: pictures of a trained model, each a PNG (title: run, step, mode) with its
array beside it as .npy, named `<mode>-step<S>-seed<s>[...]` (vaecli.rundir.names.Output), and
with `gif` an animated GIF of the same name (the modes that animate: traverse). The modes are the registry
vaecli.evaluation.modes.MODES. Which test images appear is drawn from `seed`.
"""
from __future__ import annotations

from pathlib import Path

from vaecli.errors import UsageError, storage_error
from vaecli.evaluation.modes import MODES


def check_arguments(mode: str, n: int | None, steps: int | None, temperature: float, gif: bool):
    """The mode's entry and its --n and --steps (defaults filled in), or a UsageError."""
    if mode not in MODES:
        raise UsageError(f"--mode {mode!r}: choose one of {', '.join(MODES)}")
    entry = MODES[mode]
    if gif and not entry.animates:
        raise UsageError(f"--gif animates {', '.join(k for k, m in MODES.items() if m.animates)}; "
                         f"--mode {mode} draws one picture")
    n = entry.n if n is None else n
    if n is not None and n < 1:
        raise UsageError(f"--n {n}: must be at least 1")
    steps = entry.steps if steps is None else steps
    if steps is not None and steps < 2:
        raise UsageError(f"--steps {steps}: must be at least 2")
    if not temperature > 0:
        raise UsageError(f"--temperature {temperature}: must be > 0")
    return entry, n, steps


def conditional_classes(run, mode: str, label: int | None) -> list[str] | None:
    """A conditional run's class names (its meta's class folder names, else the numbers), None
    for another run; UsageError for a --label it cannot take or a mode without labels."""
    m = run.config.model
    if not m.conditional:
        if label is not None:
            raise UsageError(f"--label {label}: this run is not conditional (model.conditional=false)")
        return None
    if mode not in ("prior", "recon"):
        raise UsageError(f"--mode {mode}: a conditional run draws --mode prior (one class with --label, else a row "
                         "per class) and --mode recon")
    if label is not None and not 0 <= label < m.num_classes:
        raise UsageError(f"--label {label}: this run has {m.num_classes} classes, labels 0..{m.num_classes - 1}")
    if label is not None and mode != "prior":
        raise UsageError(f"--label draws one class of prior samples; --mode {mode} uses each image's own label")
    return list(run.meta.get("data", {}).get("classes") or map(str, range(m.num_classes)))


def sample(run_path: str | Path, mode: str = "prior", n: int | None = None, seed: int = 0, step=None,
           out: str | Path | None = None, temperature: float = 1.0, split: str = "test",
           steps: int | None = None, raw_params: bool = False, gif: bool = False, label: int | None = None) -> dict:
    """Draw the picture of `mode`; write `<mode>-step<S>-seed<s>[...].png` and `.npy` (and
    with `gif` the `.gif`) into `out` (default RUN/samples); return their paths. A conditional
    run's prior draws are of class `label`, or without one a row per class; its recon mode
    gives the encoder and decoder each image's own label."""
    entry, n, steps = check_arguments(mode, n, steps, temperature, gif)
    # here, not at import: the CLI's help stays quick
    from vaecli import data, pictures, registry
    from vaecli.compiled.encode_decode import CompiledModel
    from vaecli.rundir import evaluated

    data.check_split(split, "--split")
    ckpt = evaluated.open_checkpoint(run_path, step, raw_params, out)
    run = ckpt.run
    vq = run.config.model.latent == "vq"
    code_dim = ckpt.fn.bind(ckpt.params).latent_dim if vq else registry.code_dim(run.config.model)
    if mode == "manifold" and code_dim != 2:
        key = "model.latent_dim2" if registry.is_hvae(run.config.model) else "model.latent_dim"  # the code's size
        raise UsageError(f"--mode manifold draws a 2-D latent plane; this run has {key}={code_dim} "
                         f"(use --mode traverse or --mode latents)")
    classes = conditional_classes(run, mode, label)
    model = CompiledModel(ckpt.fn, ckpt.params, run.image_shape, classes and len(classes))
    which, chosen = ckpt.params_kind, ckpt.step  # "ema": the run's moving average of the parameters
    ctx = {"seed": seed, "latent_dim": code_dim, "num_classes": classes and len(classes), "label": label,
           "class_names": classes,
           "normal_prior": registry.standard_normal_prior(run.config.model),
           "closed_form_kl": registry.closed_form_kl(run.config.model),
           "split": lambda: data.load_split(run.config.data, split)}
    if vq and mode == "prior":
        from vaecli.evaluation.vq import prior_draw

        ctx["code_prior"] = prior_draw(run, ckpt.fn, ckpt.params, run.image_shape)
    array, draw, what = entry.draw(model, ctx, n, steps, temperature)

    name = ckpt.name("sample", mode=mode, seed=seed, n=n, steps=steps, temperature=temperature, label=label)
    png, npy, gif_file, labels_npy = (ckpt.output(name, ext) for ext in (".png", ".npy", ".gif", "-labels.npy"))
    title = f"{run.path.name} step {chosen}{' EMA' if which == 'ema' else ''} {mode}: {what}"
    try:
        if "scatter" in draw:
            pictures.save_scatter(draw["scatter"], draw["labels"], draw["axes"], png, title)
        else:
            pictures.save_grid(draw["tiles"], png, title, cols=draw.get("cols"), row_labels=draw.get("row_labels"))
        ckpt.write_array(npy, array)
        if gif:
            pictures.save_gif(draw["frames"], gif_file, draw["frame_labels"])
        if draw.get("labels") is not None:
            ckpt.write_array(labels_npy, draw["labels"])
    except OSError as e:  # a read-only run folder, a full disk
        raise storage_error(e, then="write the pictures elsewhere with --out DIR") from e
    result = {"png": str(png), "npy": str(npy), "mode": mode, "step": chosen, "n": n, "seed": seed,
              "shape": list(array.shape), "title": title, "params": which}
    if "dims" in draw:  # traverse: which dimension each row sweeps, and the measure that ordered it
        result.update({k: draw[k] for k in ("dims", "order_by", "dim_measure", "dim_kl") if k in draw})
    if gif:
        result["gif"] = str(gif_file)
    if draw.get("labels") is not None:
        result["labels_npy"] = str(labels_npy)
    return result
