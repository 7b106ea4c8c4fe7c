"""Figures a learner would rather look at than read. Uses everything; nothing imports it.

Each function takes plain arrays and a path, writes one PNG, and returns the path.
"""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402


def _frame_row(axes, frames, label, cmap="gray", vmin=0.0, vmax=1.0):
    for ax, frame in zip(axes, frames):
        ax.imshow(frame, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)


def world_samples(path, obs, every=2, frames=10):
    """A few sequences of the world, one per row, every `every`-th frame. obs (N, T, S, S)."""
    rows = obs.shape[0]
    fig, axes = plt.subplots(rows, frames, figsize=(1.2 * frames, 1.25 * rows), squeeze=False)
    for i in range(rows):
        _frame_row(axes[i], obs[i, ::every][:frames], f"seq {i}")
    for j in range(frames):
        axes[0, j].set_title(f"t={j * every}", fontsize=8)
    fig.suptitle("The dot world: what the model sees")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def training_curves(path, history):
    """Loss, reconstruction and KL against the training step, smoothed over 50 steps."""
    steps = np.array([h["step"] for h in history])
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    for ax, key, title in zip(axes, ("loss", "recon", "kl"),
                              ("loss (negative ELBO per frame)", "reconstruction NLL (nats)", "KL(q || p) (nats)")):
        values = np.array([h[key] for h in history])
        ax.plot(steps, values, color="0.8", linewidth=0.6, label="per step")
        window = min(50, len(values))
        if window > 1:
            smooth = np.convolve(values, np.ones(window) / window, mode="valid")
            ax.plot(steps[window - 1:], smooth, color="C0", label=f"mean of {window}")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
        if key != "kl":
            ax.set_yscale("log")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def reconstructions(path, obs, recon, frames=12):
    """Posterior reconstructions: what the model saw and what it decodes from q(z_t | h_t, x_t)."""
    rows = min(3, obs.shape[0])
    fig, axes = plt.subplots(2 * rows, frames, figsize=(1.1 * frames, 2.3 * rows), squeeze=False)
    for i in range(rows):
        _frame_row(axes[2 * i], obs[i, :frames], f"seen {i}")
        _frame_row(axes[2 * i + 1], recon[i, :frames], f"decoded {i}")
    fig.suptitle("Filtering: each frame decoded from the posterior")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def open_loop(path, truth, imagined, context, every=4):
    """Open-loop imagination against the truth: truth / imagined / |error| rows per sequence.

    truth (N, C+K, S, S) the real frames; imagined (N, K, S, S) from predict(); the first C
    columns are context frames the model saw (marked green), the rest it imagined blind.
    """
    rows = min(3, truth.shape[0])
    horizon = imagined.shape[1]
    shown = list(range(0, context, max(1, context // 3))) + list(range(context, context + horizon, every))
    fig, axes = plt.subplots(3 * rows, len(shown), figsize=(1.05 * len(shown), 3.3 * rows), squeeze=False)
    for i in range(rows):
        full_imagined = np.concatenate([truth[i, :context], imagined[i]], axis=0)
        error = np.abs(full_imagined - truth[i])
        _frame_row(axes[3 * i], truth[i, shown], f"truth {i}")
        _frame_row(axes[3 * i + 1], full_imagined[shown], "imagined")
        _frame_row(axes[3 * i + 2], error[shown], "|error|", cmap="magma")
        for j, t in enumerate(shown):
            if t < context:
                for r in range(3):
                    for spine in axes[3 * i + r, j].spines.values():
                        spine.set_edgecolor("limegreen")
                        spine.set_linewidth(2.5)
    for j, t in enumerate(shown):
        axes[0, j].set_title(f"t={t}" if t < context else f"+{t - context + 1}", fontsize=8)
    fig.suptitle(f"Open-loop imagination: {context} context frames (green), then no observations")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def error_by_horizon(path, curves):
    """Mean pixel error against the imagined horizon, one line per model or baseline.

    curves: name -> (K,) mean error at horizons 1..K.
    """
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name, errors in curves.items():
        ax.plot(np.arange(1, len(errors) + 1), errors, label=name,
                linewidth=2.5 if name == "RSSM" else 1.2)
    ax.set_xlabel("steps imagined without observations")
    ax.set_ylabel("dot position error (px)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Open-loop error on held-out sequences")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
