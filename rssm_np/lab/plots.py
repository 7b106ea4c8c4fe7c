"""Figures a learner would rather look at than read: plain arrays in, PNG or GIF files out.

It needs no model to draw (matplotlib, NumPy, and the atomic file writes of checkpoint.py), and
the commands (demo.py, compare, plan, play) import it; nothing in the math or running layers does.

Each function takes plain arrays and a path, writes one PNG, and returns the path.
"""

import sys

import matplotlib

# Figures are files: draw off-screen, unless the caller opened pyplot first to choose a backend
# (the play window does, to draw on the screen).
if "matplotlib.pyplot" not in sys.modules:
    matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402  (plain NumPy: figures draw untraced arrays)

from ..utils.files import replace_atomically  # noqa: E402

OCCLUDER_COLOURS = matplotlib.colors.ListedColormap(["red"])


def frame_image(ax, frame, cmap="gray", vmin=0.0, vmax=1.0):
    """One frame on bare axes (no ticks); returns the image, whose set_data redraws it."""
    image = ax.imshow(frame, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    return image


def occluder_tint(hidden):
    """The hidden pixels (S, S) bool as a layer for OCCLUDER_COLOURS: red where hidden, clear elsewhere."""
    return np.ma.masked_where(~hidden, hidden.astype(float))


def tint_occluders(ax, hidden):
    """Occluders are painted black like the background, so tint them red to be seen; returns the layer."""
    return ax.imshow(occluder_tint(hidden), alpha=0.45, vmin=0, vmax=1, cmap=OCCLUDER_COLOURS,
                     interpolation="nearest")


def _frame_row(axes, frames, label, cmap="gray", vmin=0.0, vmax=1.0):
    for ax, frame in zip(axes, frames):
        frame_image(ax, frame, cmap, vmin, vmax)
    axes[0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)


def save_atomically(path, write):
    """Run write(temporary_path), then rename the file onto `path`: no reader sees half a file
    (utils.files.replace_atomically, the same rules as for models)."""
    return replace_atomically(path, write)


def _save(fig, path, title=None):
    """Title, tidy, write the PNG, free the figure; return the path."""
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    save_atomically(path, lambda temporary: fig.savefig(temporary, dpi=90))
    plt.close(fig)
    return path


def world_samples(path, obs, mask=None, every=2, frames=10):
    """A few sequences of the world, one per row, every `every`-th frame. obs (B, T, S, S).

    mask (B, T, S, S) bool, if given: occluders are painted black like the background, so they are
    tinted red here to be seen (the model sees only the black).
    """
    rows = obs.shape[0]
    fig, axes = plt.subplots(rows, frames, figsize=(1.2 * frames, 1.25 * rows), squeeze=False)
    for i in range(rows):
        _frame_row(axes[i], obs[i, ::every][:frames], f"seq {i}")
        if mask is not None:
            for ax, hidden in zip(axes[i], mask[i, ::every][:frames]):
                tint_occluders(ax, hidden)
    for j in range(frames):
        axes[0, j].set_title(f"t={j * every}", fontsize=8)
    return _save(fig, path, "The dot world: what the model sees" + (" (occluders tinted red)" if mask is not None else ""))


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
    return _save(fig, path)


def reconstructions(path, obs, recon, frames=12):
    """Posterior reconstructions: what the model saw and what it decodes from q(z_t | h_t, x_t)."""
    rows = min(3, obs.shape[0])
    fig, axes = plt.subplots(2 * rows, frames, figsize=(1.1 * frames, 2.3 * rows), squeeze=False)
    for i in range(rows):
        _frame_row(axes[2 * i], obs[i, :frames], f"seen {i}")
        _frame_row(axes[2 * i + 1], recon[i, :frames], f"decoded {i}")
    return _save(fig, path, "Filtering: each frame decoded from the posterior")


def open_loop(path, truth, imagined, filtered, every=4):
    """Open-loop imagination against the truth: truth / model / |error| rows per sequence.

    truth (B, C+K, S, S) the real frames; imagined (B, K, S, S) from predict(); filtered
    (B, C, S, S) the decoded posterior on the C context frames the model saw (marked green);
    after them the model imagines blind.
    """
    context = filtered.shape[1]
    rows = min(3, truth.shape[0])
    horizon = imagined.shape[1]
    shown = list(range(0, context, max(1, context // 3))) + list(range(context, context + horizon, every))
    fig, axes = plt.subplots(3 * rows, len(shown), figsize=(1.05 * len(shown), 3.3 * rows), squeeze=False)
    for i in range(rows):
        full_imagined = np.concatenate([filtered[i], imagined[i]], axis=0)
        error = np.abs(full_imagined - truth[i])
        _frame_row(axes[3 * i], truth[i, shown], f"truth {i}")
        _frame_row(axes[3 * i + 1], full_imagined[shown], "model")
        _frame_row(axes[3 * i + 2], error[shown], "|error|", cmap="magma")
        for j, t in enumerate(shown):
            if t < context:
                for r in range(3):
                    for spine in axes[3 * i + r, j].spines.values():
                        spine.set_edgecolor("limegreen")
                        spine.set_linewidth(2.5)
    for j, t in enumerate(shown):
        axes[0, j].set_title(f"t={t}" if t < context else f"+{t - context + 1}", fontsize=8)
    return _save(fig, path, f"Open-loop imagination: {context} context frames (green), then no observations")


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
    return _save(fig, path)


def belief_through_occlusion(path, truth, seen, belief, true_xy, sample_xy, hidden, every=2):
    """The belief while the dot is hidden: images on top, the sampled belief's spread below.

    truth, seen, belief (T, S, S): the true frame, what the model saw, the decoded posterior;
    true_xy (T, 2); sample_xy (T, K, 2) centroids of frames decoded from z ~ q(z_t | h_t, x_t);
    hidden (T,) bool. The spread should widen while the dot is hidden and collapse when it returns.
    """
    steps = truth.shape[0]
    shown = list(range(0, steps, every))
    fig = plt.figure(figsize=(1.0 * len(shown), 7.2))
    grid = fig.add_gridspec(5, len(shown), height_ratios=[1, 1, 1, 1.6, 1.6])
    for row, (frames, label) in enumerate(((truth, "truth"), (seen, "seen"), (belief, "belief"))):
        axes = [fig.add_subplot(grid[row, j]) for j in range(len(shown))]
        _frame_row(axes, frames[shown], label)
        for ax, t in zip(axes, shown):
            if hidden[t]:
                for spine in ax.spines.values():
                    spine.set_edgecolor("orangered")
                    spine.set_linewidth(2)
            if row == 0:
                ax.set_title(f"t={t}", fontsize=7)
    times = np.arange(steps)
    for row, (axis, name) in enumerate(((0, "x"), (1, "y"))):
        ax = fig.add_subplot(grid[3 + row, :])
        low, high = np.percentile(sample_xy[..., axis], [5, 95], axis=1)
        ax.fill_between(times, low, high, color="C0", alpha=0.3, label="belief: 5-95% of sampled centroids")
        ax.plot(times, np.median(sample_xy[..., axis], axis=1), color="C0", linewidth=1)
        ax.plot(times, true_xy[:, axis], color="black", linestyle="--", label="true position")
        for t in times[hidden]:
            ax.axvspan(t - 0.5, t + 0.5, color="orangered", alpha=0.12, linewidth=0)
        ax.set_ylabel(f"{name} (px)")
        ax.set_xlim(-0.5, steps - 0.5)
        if row == 0:
            ax.legend(fontsize=7, loc="upper right")
            ax.set_title("red: the dot is hidden from the model", fontsize=9)
        else:
            ax.set_xlabel("frame")
    return _save(fig, path, "Belief through an occlusion")


def future_fan(path, last_frame, sample_paths, true_path, rows=2, cols=3):
    """A fan of sampled futures per sequence: K imagined centroid paths over the last seen frame.

    last_frame (B, S, S); sample_paths (B, K, N, 2); true_path (B, N, 2).
    """
    fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols, 3.3 * rows), squeeze=False)
    size = last_frame.shape[-1]
    for i, ax in enumerate(axes.ravel()):
        ax.imshow(last_frame[i], cmap="gray", vmin=0, vmax=1, extent=(-0.5, size - 0.5, size - 0.5, -0.5))
        for k in range(sample_paths.shape[1]):
            ax.plot(sample_paths[i, k, :, 0], sample_paths[i, k, :, 1], color="C1", alpha=0.25, linewidth=0.8)
        ax.plot(true_path[i, :, 0], true_path[i, :, 1], color="cyan", linewidth=1.8, label="truth")
        ax.plot(true_path[i, -1, 0], true_path[i, -1, 1], "o", color="cyan", markersize=4)
        ax.set_xlim(-0.5, size - 0.5)
        ax.set_ylim(size - 0.5, -0.5)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, 0].legend(fontsize=7, loc="lower left")
    return _save(fig, path, f"{sample_paths.shape[1]} sampled futures (orange) of {sample_paths.shape[2]} steps vs the truth")


def two_action_sequences(path, frames_a, frames_b, true_a, true_b, every=2):
    """The same filtered start imagined under two action sequences, truth marked with a cross.

    frames_a, frames_b (K, S, S); true_a, true_b (K, 2).
    """
    shown = list(range(0, frames_a.shape[0], every))
    fig, axes = plt.subplots(2, len(shown), figsize=(1.1 * len(shown), 2.6), squeeze=False)
    for row, (frames, true, label) in enumerate(((frames_a, true_a, "actions A"), (frames_b, true_b, "actions B"))):
        _frame_row(axes[row], frames[shown], label)
        for ax, t in zip(axes[row], shown):
            ax.plot(true[t, 0], true[t, 1], "+", color="cyan", markersize=7)
    for j, t in enumerate(shown):
        axes[0, j].set_title(f"+{t + 1}", fontsize=8)
    return _save(fig, path, "Same start, two action sequences: imagination follows the actions (+ = truth)")


def kl_per_dimension(path, kl_per_dim, active_nats):
    """Mean KL(q || p) per latent dimension: dimensions near 0 are unused (posterior collapse)."""
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    colours = ["C0" if v > active_nats else "0.7" for v in kl_per_dim]
    ax.bar(np.arange(len(kl_per_dim)), kl_per_dim, color=colours)
    ax.axhline(active_nats, color="black", linestyle=":", linewidth=1, label=f"active above {active_nats} nats")
    ax.set_xlabel("latent dimension of z")
    ax.set_ylabel("mean KL (nats)")
    ax.set_title("Which latent dimensions carry information")
    ax.legend(fontsize=8)
    return _save(fig, path)


def imagination_gif(path, truth, model_frames, context, fps=6):
    """An animated GIF, truth beside the model: filtered while it sees, imagined after.

    truth, model_frames (T, S, S); the first `context` model frames are filtered, the rest imagined.
    """
    from matplotlib.animation import FuncAnimation, PillowWriter
    fig, (left, right) = plt.subplots(1, 2, figsize=(4.4, 2.5))
    images = []
    for ax, frames, title in ((left, truth, "truth"), (right, model_frames, "model")):
        images.append(frame_image(ax, frames[0]))
        ax.set_title(title, fontsize=9)
    caption = fig.text(0.5, 0.03, "", ha="center", fontsize=8)

    def draw(t):
        images[0].set_data(truth[t])
        images[1].set_data(model_frames[t])
        caption.set_text(f"frame {t}: " + ("seeing (filtering)" if t < context else f"imagining, {t - context + 1} steps blind"))
        return images + [caption]

    animation = FuncAnimation(fig, draw, frames=truth.shape[0], blit=False)
    save_atomically(path, lambda temporary: animation.save(temporary, writer=PillowWriter(fps=fps)))
    plt.close(fig)
    return path


def futures_side_by_side(path, last_seen, rows, wall_hits, every=2):
    """The lesson in one picture: one random-wall sequence, the truth and each model's futures.

    last_seen (S, S) the last context frame; rows: label -> (K, S, S) imagined frames (truth first);
    wall_hits: imagined steps (1-based) at which the true dot hit a wall and its velocity was redrawn.
    """
    labels = list(rows)
    steps = next(iter(rows.values())).shape[0]
    shown = list(range(every - 1, steps, every))
    fig, axes = plt.subplots(len(labels), len(shown) + 1, figsize=(1.05 * (len(shown) + 1), 1.1 * len(labels)),
                             squeeze=False)
    for i, label in enumerate(labels):
        _frame_row(axes[i], [last_seen] + [rows[label][k] for k in shown], label)
    axes[0, 0].set_title("last seen", fontsize=8)
    for j, k in enumerate(shown):
        hit = any(k + 1 - every < h <= k + 1 for h in wall_hits)      # a hit since the previous column
        axes[0, j + 1].set_title(f"+{k + 1}" + (" wall" if hit else ""), fontsize=8, color="C3" if hit else "black")
    return _save(fig, path, "Random walls: where the true dot hits a wall (red) its velocity is redrawn; "
                            "each model's imagined futures")


def event_averages(path, averages):
    """"When necessary", seen: surprise and one-step spread averaged over every wall hit.

    averages: model -> {"surprise_at_events", "spread_at_events"}, each a futures.event_average dict
    (lags, mean, std over events, events, free_flight). Lag 0 is the first frame that moves with
    the new velocity; the dotted line of each colour is that model's free-flight level.
    """
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    for ax, key, label in ((axes[0], "surprise_at_events", "surprise KL(q || p) (nats)"),
                           (axes[1], "spread_at_events", "spread of 32 one-step guesses (px)")):
        for n, (model, average) in enumerate(averages.items()):
            lags, mean = np.array(average[key]["lags"]), np.array(average[key]["mean"])
            error = np.array(average[key]["std"]) / max(np.sqrt(average[key]["events"]), 1.0)
            ax.plot(lags, mean, marker="o", markersize=3, color=f"C{n}", linewidth=2 if model == "rssm" else 1.2,
                    label=f"{model} ({average[key]['events']} hits)")
            ax.fill_between(lags, mean - error, mean + error, color=f"C{n}", alpha=0.2)
            ax.axhline(average[key]["free_flight"], color=f"C{n}", linestyle=":", linewidth=1)
        ax.axvline(0, color="C3", alpha=0.5, linestyle="--")
        ax.set_xlabel("frames after the wall hit (0: the first frame with the new velocity)")
        ax.set_ylabel(label)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path, "Uncertainty when necessary: averaged over every random wall hit "
                            "(band: standard error; dotted: free flight)")


def futures_by_horizon(path, results):
    """Error against the imagined horizon for each world and model: mean path and best of 32.

    results: world -> model -> dict with curve_mean_path, curve_best_of_32 (K,) and coverage90.
    """
    worlds = list(results)
    fig, axes = plt.subplots(len(worlds), 2, figsize=(11, 3.4 * len(worlds)), squeeze=False)
    for i, world in enumerate(worlds):
        for j, (key, what) in enumerate((("curve_mean_path", "mean path"), ("curve_best_of_32", "best of 32 samples"))):
            ax = axes[i, j]
            for n, (model, metrics) in enumerate(results[world].items()):
                curve = np.array(metrics[key])
                ax.plot(np.arange(1, len(curve) + 1), curve, color=f"C{n}", linewidth=2 if model == "rssm" else 1.2,
                        label=f"{model} (coverage90 {metrics['coverage90']:.2f})")
            ax.set_title(f"{world} walls: {what}", fontsize=10)
            ax.set_xlabel("steps imagined without observations")
            ax.set_ylabel("dot position error (px)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    return _save(fig, path)


def frame_error_by_horizon(path, curves, floor=None):
    """Imagined frames against true ones, per horizon, for a world of any kind (lab/frames.py):
    per-pixel squared error on the left, Bernoulli NLL per frame on the right.

    curves: label -> {"mse": (K,), "nll": (K,)}, the first drawn bold (the model); floor (K,): the
    NLL of the true frames themselves, drawn dashed, below which no prediction can go.
    """
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for ax, key, what in zip(axes, ("mse", "nll"), ("per-pixel squared error", "Bernoulli NLL per frame (nats)")):
        for n, (label, curve) in enumerate(curves.items()):
            values = np.asarray(curve[key])
            ax.plot(np.arange(1, len(values) + 1), values, label=label, color=f"C{n}", linewidth=2.5 if n == 0 else 1.2)
        if key == "nll" and floor is not None:
            ax.plot(np.arange(1, len(floor) + 1), floor, color="black", linestyle="--", linewidth=1,
                    label="the true frames (floor)")
        ax.set_xlabel("steps imagined without observations")
        ax.set_ylabel(what)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    axes[1].legend(fontsize=8)
    return _save(fig, path, "Open-loop error on held-out sequences, in the frames' own terms")


def sampled_frame_futures(path, seen, truth, mean_path, sampled, every=4):
    """One sequence's futures as frames: the truth, the mean path, and M sampled futures below.

    seen (S, S) the last frame the model saw; truth, mean_path (K, S, S); sampled (M, K, S, S).
    Where the futures agree the rows match; where the model is unsure they part.
    """
    shown = list(range(every - 1, truth.shape[0], every))
    rows = [("truth", truth), ("mean path", mean_path)] + [(f"sample {m + 1}", s) for m, s in enumerate(sampled)]
    fig, axes = plt.subplots(len(rows), len(shown) + 1, figsize=(1.05 * (len(shown) + 1), 1.1 * len(rows)),
                             squeeze=False)
    for i, (label, frames) in enumerate(rows):
        _frame_row(axes[i], [seen] + [frames[k] for k in shown], label)
    axes[0, 0].set_title("last seen", fontsize=8)
    for j, k in enumerate(shown):
        axes[0, j + 1].set_title(f"+{k + 1}", fontsize=8)
    return _save(fig, path, f"{len(sampled)} sampled futures of one held-out sequence, z drawn from the prior")
