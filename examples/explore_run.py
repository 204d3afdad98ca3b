# %% [markdown]
# # Exploring a trained vaecli run
#
# Percent cells (`# %%`): this file opens as a notebook in VS Code, or in Jupyter with
# jupytext; as a script it prints what it finds and writes two pictures beside the run's own:
#
#     python examples/explore_run.py runs/bmnist_mlp-20261202T101500Z
#
# The run folder is the first argument, else the VAECLI_RUN environment variable.
# docs/python.md explains each step.

# %%
import os
import sys

import numpy as np

import vaecli
from vaecli import pictures

# A notebook kernel's own arguments (`-f kernel.json`) are not a run folder.
given = [a for a in sys.argv[1:] if not a.startswith("-") and not a.endswith(".json")]
RUN = given[0] if given else os.environ.get("VAECLI_RUN")
if not RUN:
    raise SystemExit("usage: python examples/explore_run.py RUN_FOLDER (or set VAECLI_RUN)")



def numbers(values) -> str:
    return "[" + ", ".join(f"{v:.2f}" for v in np.asarray(values, np.float64)) + "]"


run = vaecli.load(RUN)  # step="default" | "best" | "latest" | N, params="ema" | "raw"
m = run.config.model
print(f"{run.path.name}: step {run.step} ({run.params_kind} params), {m.kind} {list(m.hidden)}, "
      f"{m.likelihood} likelihood, {m.prior} prior, latent_dim {run.latent_dim}, images {run.image_shape}")
out = run.path / "samples"  # where `vae sample` writes too
out.mkdir(exist_ok=True)

# %% [markdown]
# ## The test split in latent space

# %%
x = run.images("test")  # float32 (N, H, W, C) in [0, 1]: what eval-elbo reads
means, stds = run.encode(x)
spread = means.var(axis=0)
print(f"test split: {len(x)} images; active units {int((spread > 0.01).sum())} of {run.latent_dim}; "
      f"Var_x of the posterior mean per dimension {numbers(spread)}")
print(f"  mean posterior std per dimension {numbers(stds.mean(axis=0))}")

# %% [markdown]
# ## A latent interpolation between two test images

# %%
t = np.linspace(0.0, 1.0, 8, dtype=np.float32)[:, None]
frames = run.decode((1 - t) * means[0] + t * means[1])
png = pictures.save_grid(np.concatenate([x[:1], frames, x[1:2]]), out / "explore-interpolation.png",
                         f"{run.path.name} step {run.step}: test image 0 -> 1", cols=10)
print(f"interpolation, 8 steps: {png}")

# %% [markdown]
# ## log p(x) of a batch: eval-elbo's estimator

# %%
batch = x[:100]
ll = run.log_likelihood(batch, k=1000, seed=0)
terms = run.elbo(batch, seed=0)
se = ll.std(ddof=1) / np.sqrt(len(ll))
print(f"first {len(batch)} test images: log p(x) ~ {ll.mean():.3f} +- {se:.3f} nats (K=1000), "
      f"ELBO {terms['elbo'].mean():.3f} = -(recon {terms['recon'].mean():.3f} + KL {terms['kl'].mean():.3f})")

# %% [markdown]
# ## The posterior of a "1" drawn by hand

# %%
h, w, _ = run.image_shape
one = np.zeros((h, w), np.float32)
one[h // 5: h - h // 5, w // 2 - w // 28: w // 2 + 1] = 1.0  # a vertical stroke
mean, std = run.encode(one)
recon = run.decode(mean)
print(f"hand-drawn 1: posterior mean {numbers(mean)}, std {numbers(std)}")
print(f"  log p(x) {run.log_likelihood(one, k=1000, seed=0):.3f} nats (K=1000); nearest test images "
      f"in latent space {np.argsort(((means - mean) ** 2).sum(axis=1))[:5].tolist()}")


def ascii_art(*images) -> str:
    """Images side by side as text, darkest to brightest."""
    ramp = np.array(list(" .:-=+*#%@"))
    rows = [ramp[np.clip((img[..., 0] * len(ramp)).astype(int), 0, len(ramp) - 1)] for img in images]
    return "\n".join("  " + "   ".join("".join(r[i]) for r in rows) for i in range(images[0].shape[0]))


print("  the drawing, and its reconstruction E[x|z = mean]:")
print(ascii_art(one[..., None], recon))

# %% [markdown]
# ## Prior samples: `vae sample --mode prior`

# %%
samples = run.generate(16, seed=0)
png = pictures.save_grid(samples, out / "explore-prior.png", f"{run.path.name} step {run.step}: prior samples")
print(f"16 prior samples (mean images): {png}")
