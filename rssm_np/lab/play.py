"""Play inside the dream: drive the dot with the keyboard, close the model's eyes, watch it imagine.

    python -m rssm_np.lab.play runs/demo/model.npz                     # a window (needs a display)
    python -m rssm_np.lab.play runs/demo/model.npz --record play.gif   # no screen needed: a scripted run
    python -m rssm_np.lab.play runs/demo/model.npz --record play.gif --keys "right*5 space wait*15 space wait*5"

Every frame (ten a second) the key pressed, if any, acts; the real dot moves one step; and the
model's belief follows it by one step of the RSSM:
    eyes open:    h_t = GRU(h_{t-1}, z_{t-1}, a_{t-1}),  z_t ~ q(z_t | h_t, x_t)   observe: the image corrects
    eyes closed:  h_t = GRU(h_{t-1}, z_{t-1}, a_{t-1}),  z_t ~ p(z_t | h_t)        imagine: the prior dreams
The belief is shown twice: the mean path (z = the mean at every step) decoded to a frame, and a
few particles, beliefs whose z is sampled at every step, decoded to dots that show the spread.
With eyes open the particles collapse onto the image; with eyes closed they fan out.

The game (lab/game.py) is a plain value stepped by step(game, key) -> game; this file only
draws it and runs the window and the recording, so the rules are tested without a screen.
A recording keeps its promises as every command that writes does (utils/files.py): OUT.gif and
OUT.png are checked before the first frame (replaced only with --overwrite), a key script is
bounded (game.MAX_SCRIPT_KEYS) and the particles must fit in memory, and Ctrl-C or SIGTERM
writes the frames recorded so far as the GIF (exit code 130 / 143).
Shapes (the glossary is in model.py): P belief rows (row 0 the mean path, then the particles),
S image side.
"""

from __future__ import annotations

import argparse
import os
import time

import matplotlib.pyplot as plt  # before plots: the play window chooses its own backend
import numpy as np

from . import plots
from ..config import check_fits_rollout
from .game import (ALIASES, DEFAULT_SCRIPT, FPS, HELP, HISTORY, KEYS, PARTICLES, load_model, measurements,
                   new_game, parse_keys, step)
from ..utils.files import (FolderError, run_command, claim_folder, replace_atomically, signal_exit_code, stop_signals, stopped_by,
                           tell, write_or_keep)
from ..world import render

class Screen:
    """The figure's artists, built once; show(game) updates and redraws only what moves.

    Panels: the real world (occluder tinted red), what the model sees, and the belief (the mean
    path decoded, the particles as orange dots, the truth as a cyan cross), a strip of the belief
    error over the last HISTORY frames, and a status line. Axes, titles and ticks are drawn once
    and kept as a background image (matplotlib "blitting"): redrawing the text of a whole figure
    every frame would cost more than the 100 ms a frame has.
    """

    def __init__(self, fig, game):
        self.fig = fig
        size = game.model.config.image_size
        grid = fig.add_gridspec(2, 3, height_ratios=[3.0, 1.0], top=0.86, bottom=0.08, left=0.07, right=0.98,
                                hspace=0.35, wspace=0.08)
        self.panels = [fig.add_subplot(grid[0, i]) for i in range(3)]
        titles = ("real world", "what the model sees", "belief: decoded + particles")
        for ax, title in zip(self.panels, titles):
            ax.set_title(title, fontsize=9)
        self.world_image = plots.frame_image(self.panels[0], render(game.world[:2], size))
        self.occluder = plots.tint_occluders(self.panels[0], game.occluder)
        self.seen_image = plots.frame_image(self.panels[1], game.seen)
        self.closed_label = self.panels[1].text(size / 2, size / 2, "eyes closed\n(dreaming)", color="0.75",
                                                ha="center", va="center", fontsize=9)
        self.belief_image = plots.frame_image(self.panels[2], game.belief)
        self.particles = self.panels[2].scatter(game.particle_xy[:, 0], game.particle_xy[:, 1], s=9, color="C1",
                                                alpha=0.9, linewidths=0)
        self.truth, = self.panels[2].plot([], [], "+", color="cyan", markersize=8)
        self.goals = [ax.plot([], [], "x", color="lime", markersize=8, markeredgewidth=2)[0] for ax in self.panels]
        for ax in self.panels:
            ax.set_xlim(-0.5, size - 0.5)
            ax.set_ylim(size - 0.5, -0.5)
            ax.set_autoscale_on(False)
        self.strip = fig.add_subplot(grid[1, :])
        self.open_line, = self.strip.plot([], [], color="C0", linewidth=1.5, label="belief error, eyes open")
        self.closed_line, = self.strip.plot([], [], color="C3", linewidth=1.5, label="eyes closed")
        self.spread_line, = self.strip.plot([], [], color="C1", linewidth=0.8, linestyle=":", label="particle spread")
        self.strip.set_xlim(-HISTORY + 1, 0)
        self.strip.set_xlabel("frames ago", fontsize=7, labelpad=1)
        self.strip.set_ylabel("px", fontsize=8)
        self.strip.tick_params(labelsize=7)
        self.strip.legend(fontsize=7, loc="upper left", ncol=3, frameon=False, bbox_to_anchor=(0.0, 1.3))
        # Text is the dearest thing to draw: the status is one short line, the message shows only
        # when there is one, and the hint never changes (it stays in the background).
        self.status = fig.text(0.5, 0.965, "", ha="center", va="center", family="monospace", fontsize=8.5)
        self.message = fig.text(0.5, 0.925, "", ha="center", va="center", fontsize=8, color="C3")
        fig.text(0.99, 0.01, "h: help   q: quit", ha="right", va="bottom", fontsize=7, color="0.4")
        self.help = fig.text(0.5, 0.55, HELP, ha="center", va="center", multialignment="left", family="monospace",
                             fontsize=8, bbox=dict(facecolor="white", alpha=0.92, edgecolor="0.5"), visible=False, zorder=10)
        self.moving = [self.world_image, self.occluder, self.seen_image, self.closed_label, self.belief_image,
                       self.particles, self.truth, *self.goals, self.open_line, self.closed_line, self.spread_line,
                       self.status, self.message, self.help]
        for artist in self.moving:
            artist.set_animated(True)       # left out of full redraws: drawn by show() over the background
        self.background = None
        fig.canvas.mpl_connect("draw_event", self.on_draw)
        self.update(game)

    def on_draw(self, event):
        """After a full redraw (the first one, a resize, new strip limits): keep the still parts."""
        self.background = self.fig.canvas.copy_from_bbox(self.fig.bbox)
        self.draw_moving()

    def draw_moving(self):
        for artist in self.moving:
            self.fig.draw_artist(artist)

    def show(self, game):
        """Update the artists to `game` and put them on the screen."""
        if self.update(game) or self.background is None:
            self.fig.canvas.draw()          # calls on_draw, which draws the moving artists
        else:
            self.fig.canvas.restore_region(self.background)
            self.draw_moving()
        self.fig.canvas.blit(self.fig.bbox)

    def update(self, game):
        """Set every moving artist from `game`; True if the strip needs new limits (a full redraw)."""
        size = game.model.config.image_size
        self.world_image.set_data(render(game.world[:2], size))
        self.occluder.set_data(plots.occluder_tint(game.occluder))
        self.seen_image.set_data(game.seen)
        self.closed_label.set_visible(not game.eyes_open)
        self.belief_image.set_data(game.belief)
        self.particles.set_offsets(game.particle_xy)
        self.truth.set_data([game.world[0]], [game.world[1]])
        goal_xy = ([game.goal[0]], [game.goal[1]]) if game.goal else ([], [])
        for goal in self.goals:
            goal.set_data(*goal_xy)
        t, eyes, error, spread = (np.array(column) for column in zip(*game.history))
        ago = t - game.t
        # Each line also takes the frame before a change of colour, so the two lines join.
        next_open, next_closed = np.append(eyes[1:], False), np.append(~eyes[1:], False)
        self.open_line.set_data(ago, np.where(eyes | next_open, error, np.nan))
        self.closed_line.set_data(ago, np.where(~eyes | next_closed, error, np.nan))
        self.spread_line.set_data(ago, spread)
        eyes_text = "open  " if game.eyes_open else "CLOSED"
        driver = "planner" if game.planning else "push"
        self.status.set_text(f"t={game.t:4d}  eyes {eyes_text}  {driver} ({game.action[0]:+.1f},{game.action[1]:+.1f})"
                             f"  error {game.error:5.2f} px  spread {game.spread:4.2f} px")
        self.message.set_text(game.message)
        self.message.set_visible(game.t <= game.message_until)
        self.help.set_visible(game.help)
        # The strip's height steps in 2 px, so its ticks (and the background) rarely change.
        top = 2.0 * np.ceil(max(2.0, 1.1 * float(np.max(np.concatenate([error, spread])))) / 2.0)
        if top != self.strip.get_ylim()[1]:
            self.strip.set_ylim(0, top)
            return True
        return False


def new_figure():
    return plt.figure(figsize=(7.6, 3.9), dpi=80)


def gif_palette(frames, greys=96, colours=96):
    """A palette for every frame: an even ramp of greys (the frames are greyscale images) plus
    the colours the lines, dots and text use most."""
    from PIL import Image
    ramp = np.repeat(np.linspace(0, 255, greys).round().astype(np.uint8), 3)                  # (greys * 3,)
    sample = np.concatenate(frames[::max(1, len(frames) // 16)])                              # (rows, width, 3)
    common = Image.fromarray(sample).quantize(colors=colours, method=Image.Quantize.MAXCOVERAGE)
    palette = Image.new("P", (1, 1))
    palette.putpalette(list(ramp) + common.getpalette()[:3 * colours])
    return palette


class Stopped(Exception):
    """A recording cut short by a stop signal; the frames recorded so far were written to `paths`."""

    def __init__(self, frames, paths):
        super().__init__(f"{frames} frames kept in {' and '.join(paths)}")
        self.frames, self.paths = frames, paths


def frame_path(gif_path):
    """Where the recording's last frame goes: the GIF's name with .png."""
    return os.path.splitext(gif_path)[0] + ".png"


def record(model, keys, gif_path, seed=0, particles=PARTICLES, report=print):
    """Play a key script with no window; write gif_path and the last frame beside it as .png.

    Returns (last game, the log [(t, eyes_open, error, spread)] of every frame, paths, seconds).
    A stop signal (KeyboardInterrupt) ends the script early: the frames so far are written, and
    Stopped says where.
    """
    started = time.perf_counter()
    fig = new_figure()
    game = new_game(model, seed, particles=particles)
    screen = Screen(fig, game)
    log, frames = [game.history[-1]], []

    def grab():
        screen.show(game)
        frames.append(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy())              # (height, width, 3)

    try:
        grab()
        for i, key in enumerate(keys):
            game = step(game, key)
            if game.quit:
                break
            if key == "r":
                log = []
            grab()
            if key != "h":
                log.append(game.history[-1])
            if (i + 1) % 25 == 0 and i + 1 < len(keys):
                elapsed = time.perf_counter() - started
                eta = elapsed / (i + 1) * (len(keys) - i - 1)
                report(f"frame {i + 1:4d}/{len(keys)} | {elapsed:5.1f} s | eta {eta:4.1f} s")
        stopped = False
    except KeyboardInterrupt:
        stopped = True
    plt.close(fig)
    if not frames:
        raise Stopped(0, [])
    try:
        paths = write_recording(frames, gif_path)
    except KeyboardInterrupt:      # a stop signal cut the write short; later ones are ignored: write again
        paths, stopped = write_recording(frames, gif_path), True
    if stopped:
        raise Stopped(len(frames), paths)
    return game, log, paths, time.perf_counter() - started


def write_recording(frames, gif_path):
    """The frames as a GIF at gif_path and the last one as a PNG beside it (each with write_or_keep's
    fallback if its place refuses it at the end); returns the two paths written."""
    from PIL import Image
    png_path = write_or_keep(frame_path(gif_path), lambda target: replace_atomically(
        target, lambda temporary: Image.fromarray(frames[-1]).save(temporary)))
    # One shared palette, no dithering: unchanged pixels stay identical from frame to frame, so
    # the GIF stores little more than what moved.
    palette = gif_palette(frames)
    images = [Image.fromarray(frame).quantize(palette=palette, dither=Image.Dither.NONE) for frame in frames]
    gif_path = write_or_keep(gif_path, lambda target: replace_atomically(target, lambda temporary: images[0].save(
        temporary, save_all=True, append_images=images[1:], duration=1000 // FPS, loop=0, optimize=True)))
    return gif_path, png_path


class Window:
    """The live game: a timer steps it FPS times a second with the next key pressed (or "wait").

    matplotlib's own key bindings (s saves, o zooms, p pans, q closes, g grids, arrows navigate)
    are disconnected from this figure only; every other figure keeps them.
    """

    def __init__(self, fig, game, script=()):
        self.fig, self.game = fig, game
        self.screen = Screen(fig, game)
        self.script, self.queue = list(script), []      # keys to play, keys typed (these go first)
        self.log = [game.history[-1]]
        self.ticks, self.step_seconds, self.show_seconds = [], [], []
        manager = fig.canvas.manager
        if manager is not None and getattr(manager, "key_press_handler_id", None) is not None:
            fig.canvas.mpl_disconnect(manager.key_press_handler_id)
            manager.key_press_handler_id = None
        fig.canvas.mpl_connect("key_press_event", self.on_key)
        fig.canvas.mpl_connect("button_press_event", self.on_click)
        # A one-shot timer re-armed for the next 1/FPS deadline: a repeating one waits its full
        # interval *after* each frame's work in some backends (Tk), which would lose the rate.
        self.timer = fig.canvas.new_timer(interval=1000 // FPS)
        self.timer.single_shot = True
        self.timer.add_callback(self.tick)
        self.next_frame = None

    def on_key(self, event):
        key = ALIASES.get(event.key, event.key)
        if key in KEYS and len(self.queue) < 3:     # a held key repeats faster than 10 fps: drop the excess
            self.queue.append(key)

    def on_click(self, event):
        if self.game.picking_goal and event.inaxes in self.screen.panels and event.xdata is not None:
            # The axes reach half a pixel past the image's first and last pixel centres: clamp onto it.
            last = self.game.model.config.image_size - 1
            x, y = (float(np.clip(value, 0, last)) for value in (event.xdata, event.ydata))
            self.queue.append(f"click:{x:.1f},{y:.1f}")

    def tick(self):
        self.ticks.append(time.perf_counter())
        key = self.queue.pop(0) if self.queue else self.script.pop(0) if self.script else "wait"
        if self.game.help and key == "wait":        # paused under the help
            self.arm_timer()
            return
        self.game = step(self.game, key)
        self.step_seconds.append(time.perf_counter() - self.ticks[-1])
        if self.game.quit:
            self.timer.stop()
            plt.close(self.fig)
            return
        if key == "r":
            self.log = []
        if key != "h":
            self.log.append(self.game.history[-1])
        begun = time.perf_counter()
        self.screen.show(self.game)
        self.show_seconds.append(time.perf_counter() - begun)
        self.arm_timer()

    def arm_timer(self):
        """Start the timer for the next frame, 1/FPS after the last one was due (at once if late)."""
        now = time.perf_counter()
        self.next_frame = now + 1 / FPS if self.next_frame is None else max(self.next_frame + 1 / FPS, now)
        self.timer.interval = max(1, int(round(1000 * (self.next_frame - now))))
        self.timer.start()

    def run(self):
        """Show the window until it is closed or q is pressed; return the timings."""
        self.arm_timer()
        plt.show()
        seconds = self.ticks[-1] - self.ticks[0] if len(self.ticks) > 1 else float("nan")
        median_ms = (lambda values: 1000 * float(np.median(values)) if values else float("nan"))
        return {"frames": len(self.ticks), "fps": (len(self.ticks) - 1) / seconds, "seconds": seconds,
                "step_ms": median_ms(self.step_seconds), "show_ms": median_ms(self.show_seconds)}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m rssm_np.lab.play", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Drive the dot with the keyboard and watch the model's belief follow it; close its eyes "
                    "and watch it dream.", epilog="keys in the window:\n" + HELP)
    parser.add_argument("model", help="a model.npz written by python demo.py (trained with actions, the default)")
    parser.add_argument("--record", metavar="OUT.gif", default=None,
                        help="no window: play --keys and write OUT.gif and the last frame as OUT.png")
    parser.add_argument("--keys", default=None,
                        help=f'key script, e.g. "right*5 space wait*15 space wait*5" (with --record the default is '
                             f'"{DEFAULT_SCRIPT}"; in a window it plays first, then you drive)')
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the start, the kicks and the particles (default 0)")
    parser.add_argument("--particles", type=int, default=PARTICLES,
                        help=f"sampled beliefs drawn as dots (default {PARTICLES})")
    parser.add_argument("--overwrite", action="store_true",
                        help="with --record: replace OUT.gif and OUT.png if they exist (default: refuse)")
    args = parser.parse_args(argv)
    if args.seed < 0:
        parser.error(f"--seed must be a non-negative integer, got {args.seed}")
    if args.particles < 1:
        parser.error(f"--particles must be a positive integer, got {args.particles}")
    if args.record is not None and not args.record.lower().endswith(".gif"):
        parser.error(f"--record must name a .gif file, got {args.record!r}")
    if args.record is not None and os.path.isdir(args.record):
        parser.error(f"--record {args.record!r} is a folder; expected a .gif file name")
    try:
        args.loaded = load_model(args.model)
    except (OSError, ValueError, TypeError) as error:
        parser.error(f"model: {error}")
    config = args.loaded.config
    script = args.keys if args.keys is not None else (DEFAULT_SCRIPT if args.record is not None else None)
    try:
        args.script = [] if script is None else parse_keys(script, size=config.image_size)
    except ValueError as error:
        parser.error(f"--keys: {error}")
    try:                                      # the mean path and every particle take one row each
        check_fits_rollout(config, args.particles + 1, 1, f"--particles {args.particles}")
    except ValueError as error:
        parser.error(str(error))
    if args.record is not None:               # both files' place, checked before the first frame
        folder, gif = os.path.split(os.path.abspath(args.record))
        try:
            claim_folder(folder, (gif, os.path.basename(frame_path(gif))), args.overwrite, lock=False)
        except FolderError as error:
            parser.error(f"--record {args.record!r}: its folder {folder!r} {error}")
    if args.record is None:
        if plt.get_backend().lower() in ("agg", "cairo", "pdf", "pgf", "ps", "svg", "template"):
            parser.error(f"no display to open a window on (matplotlib chose the '{plt.get_backend()}' backend). "
                         f"Record a scripted game instead:\n  python -m rssm_np.lab.play {args.model} --record play.gif "
                         f'--keys "right*5 space wait*15 space wait*5"')
        try:
            args.figure = new_figure()
        except Exception as error:      # a screen backend that cannot reach its display
            parser.error(f"cannot open a window ({type(error).__name__}: {error}); run with --record play.gif instead")
    return args


def print_table(rows):
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}} | {'-' if 'nan' in value else value}")


def main(argv=None):
    try:
        args = parse_args(argv)
    except KeyboardInterrupt:
        tell("\ninterrupted before the game started; nothing was written")
        return 130
    with stop_signals() as received:
        try:
            return play(args)
        except Stopped as stopped:
            kept = f"kept the {stopped.frames} frames recorded so far in {' and '.join(stopped.paths)}" \
                if stopped.paths else "no frame had been recorded; nothing written"
            tell(f"\n{stopped_by(received)}: {kept}")
        except KeyboardInterrupt:              # in the window, or while the recording was being written
            tell(f"\n{stopped_by(received)}" + ("" if args.record is None else "; nothing written"))
        except OSError as error:
            tell(f"error: could not write the recording ({error})")
            return 1
        return signal_exit_code(received)


def play(args):
    """Record or show the game; print its measurements. Returns the exit code."""
    model = args.loaded
    if args.record is not None:
        plt.switch_backend("Agg")
        print(f"recording {len(args.script)} frames of {args.model} ...", flush=True)
        game, log, paths, seconds = record(model, args.script, args.record, args.seed, args.particles)
        frames = len(log)
        rows = [("frames", f"{frames}"), ("seconds", f"{seconds:.1f}"), ("frames/s recorded", f"{frames / seconds:.1f}")]
    else:
        window = Window(args.figure, new_game(model, args.seed, particles=args.particles), args.script)
        timing = window.run()
        log, paths = window.log, ()
        rows = [("frames", f"{timing['frames']}"), ("seconds", f"{timing['seconds']:.1f}"),
                (f"frames/s (the timer asks {FPS})", f"{timing['fps']:.1f}"),
                ("model step (median ms)", f"{timing['step_ms']:.1f}"),
                ("drawing (median ms)", f"{timing['show_ms']:.1f}")]
    summary = measurements(log)
    rows += [("belief error, eyes open (px)", f"{summary['open_error_px']:.2f}"),
             ("belief error, eyes closed (px)", f"{summary['closed_error_px']:.2f}"),
             ("drift per closed-eye frame (px)", f"{summary['drift_px_per_closed_frame']:+.3f}"),
             ("peak error with eyes closed (px)", f"{summary['peak_closed_error_px']:.2f}"),
             ("error on the 1st frame seen again (px)", f"{summary['first_reopened_error_px']:.2f}"),
             ("error on the 3rd frame seen again (px)", f"{summary['third_reopened_error_px']:.2f}")]
    print_table(rows)
    for path in paths:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    run_command(main)
