"""The picture of a `vae tune` search: each trial's value (its validation ELBO, or its FID or
KID: vaecli.tune.trial_value) against each searched parameter, and over trials."""
from __future__ import annotations

from pathlib import Path

from vaecli import pictures


def _value(t):
    """A finished trial's value: its final one, or a pruned trial's last report."""
    if t.state.name == "COMPLETE":
        return t.value
    if t.state.name == "PRUNED" and t.intermediate_values:
        return t.intermediate_values[max(t.intermediate_values)]
    return None


def plot_search(trials, dims, out: Path, label: str = "validation ELBO (nats)", maximize: bool = True) -> Path:
    shown = [(t, _value(t)) for t in trials if _value(t) is not None]
    fig = pictures.figure(figsize=(4 * (len(dims) + 1), 3.6))
    axes = fig.subplots(1, len(dims) + 1, squeeze=False)
    styles = {"COMPLETE": dict(marker="o", color="C0", label="completed"),
              "PRUNED": dict(marker="x", color="C3", label="pruned (last report)")}
    for ax, d in zip(axes[0], dims):
        for state, style in styles.items():
            pts = [(t.params[d.key], v) for t, v in shown if t.state.name == state and d.key in t.params]
            if d.kind == "choice":
                pts = [(list(d.choices).index(x), v) for x, v in pts]
            if pts:
                ax.scatter(*zip(*pts), linestyle="none", **style)
        if d.kind == "choice":
            ax.set_xticks(range(len(d.choices)), [str(c) for c in d.choices])
        elif d.log:
            ax.set_xscale("log")
        ax.set_xlabel(d.key)
        ax.set_ylabel(label)
    ax = axes[0][-1]
    for state, style in styles.items():
        pts = [(t.number, v) for t, v in shown if t.state.name == state]
        if pts:
            ax.scatter(*zip(*pts), **style)
    done = sorted((t.number, v) for t, v in shown if t.state.name == "COMPLETE")
    if done:
        best, line = done[0][1], []
        for n, v in done:
            best = max(best, v) if maximize else min(best, v)
            line.append((n, best))
        ax.step(*zip(*line), where="post", color="k", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel(label)
    if ax.get_legend_handles_labels()[0]:  # a study with no trial shown yet has nothing to name
        ax.legend(fontsize=7)
    fig.suptitle(f"{out.parent.name}: {len(shown)} trials")
    fig.tight_layout()
    return pictures.save_figure(fig, out, dpi=90)
