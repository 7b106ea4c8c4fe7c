"""The play mode's game: the real world, the model's belief, its eyes, one step per key.

A game is a plain value stepped by step(game, key) -> game; nothing here draws, so the rules are
tested without a screen (lab/play.py draws a game and runs the window and the recording).
Each key moves the real dot one step, and the belief one step of the RSSM:
    eyes open:    h_t = GRU(h_{t-1}, z_{t-1}, a_{t-1}),  z_t ~ q(z_t | h_t, x_t)   observe: the image corrects
    eyes closed:  h_t = GRU(h_{t-1}, z_{t-1}, a_{t-1}),  z_t ~ p(z_t | h_t)        imagine: the prior dreams
The belief is kept twice: the mean path (z = the mean at every step), and a few particles, beliefs
whose z is sampled at every step, which show the spread.
Shapes (the glossary is in model.py): P belief rows (row 0 the mean path, then the particles),
H deter, Z stoch, A action, S image side.
"""

from __future__ import annotations

import dataclasses

import numpy as np          # plain NumPy (the model's traced NumPy is autograd.numpy, in model.py)

from ..checkpoint import load
from .evaluate import centroid, pixel_error
from .planning import Planner
from ..model import encode, img_step, initial_state, mean_frame, obs_step
from ..world import OCCLUDER_FRAMES, OCCLUDER_SIDE, random_start, render, step_state

FPS = 10                 # frames per second of the window and of the recorded GIF
PARTICLES = 8            # K sampled beliefs drawn as dots
HISTORY = 100            # frames of belief error kept for the strip at the bottom
MESSAGE_FRAMES = 20      # a message stays on the status line this many frames
MAX_SCRIPT_KEYS = 1200   # keys in a script: two minutes at FPS (a recording keeps every frame in memory)
PUSHES = {"left": (-1.0, 0.0), "right": (1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0)}   # y grows downwards
KEYS = ("wait", *PUSHES, "space", "o", "k", "g", "p", "r", "q", "h")
ALIASES = {"a": "left", "d": "right", "w": "up", "s": "down", " ": "space"}
DEFAULT_SCRIPT = "right*3 down*2 wait*5 space wait*20 space wait*10 k wait*6 o wait*10 space up*2 wait*12 space wait*10"
NO_PLANNING = "planning is off for this game (load_model(..., planner=False))"
HELP = """\
arrows or w a s d   push the dot (the real world and the model get the same action)
space               open / close the model's eyes (closed: the prior dreams, no frames)
o                   drop an occluder over the dot for a few frames
k                   kick the real dot: a new random velocity the model cannot foresee
g, then a click     set a goal;   p   let the planner drive
r  reset      h  this help      q  quit"""
SCRIPT_SYNTAX = ("a key script is words separated by spaces, each a key with an optional *count, "
                 f"e.g. \"right*5 space wait*15 space wait*5\"; keys: {', '.join(KEYS)}, "
                 f"{', '.join(alias for alias in ALIASES if alias != ' ')}, and click:X,Y (a goal in pixels, after g)")


@dataclasses.dataclass(frozen=True, eq=False)
class Model:
    """What stays fixed during a game: the weights, their config, and a planner if there is one."""
    params: dict
    config: object
    planner: object = None       # a lab.planning.Planner, or None (load_model(..., planner=False))


@dataclasses.dataclass(frozen=True, eq=False)
class Game:
    """Everything on the screen, as a value: step() returns a new Game and never changes this one."""
    model: Model
    seed: int
    episode: int                 # resets so far; each draws a new start
    t: int                       # frames since the reset
    world: np.ndarray            # (4,) the true [x, y, vx, vy]
    occluder: np.ndarray         # (S, S) bool, True where the dropped occluder hides the image
    occluder_left: int           # frames the occluder still stays
    eyes_open: bool
    seen: np.ndarray             # (S, S) the frame the model got (black while its eyes are closed)
    action: np.ndarray           # (A,) the action that led into this frame
    state: dict                  # the belief, rows (P, .): row 0 the mean path, then each particle
    belief: np.ndarray           # (S, S) the mean path, decoded
    belief_xy: np.ndarray        # (2,) the decoded belief's centroid
    particle_xy: np.ndarray      # (K, 2) the particles' decoded centroids
    goal: tuple | None = None    # (x, y) in pixels
    picking_goal: bool = False   # 'g' was pressed; the next click sets the goal
    planning: bool = False       # the planner chooses the actions
    help: bool = False
    quit: bool = False
    message: str = ""
    message_until: int = -1      # the message shows up to this frame
    history: tuple = ()          # ((t, eyes_open, error px, spread px), ...), the last HISTORY frames

    @property
    def error(self):
        """Distance in pixels from the decoded belief to the true dot."""
        return float(pixel_error(self.belief_xy, self.world[:2]))

    @property
    def spread(self):
        """Mean distance in pixels of the particles from their own mean."""
        return float(pixel_error(self.particle_xy, self.particle_xy.mean(axis=0)).mean())


def load_model(path, planner=True):
    """Read a model.npz and check it can be driven; raises ValueError naming the problem."""
    params, config = load(path)
    if not config.control:
        raise ValueError(f"{path!r} was trained without actions (config.control=False), so pushing the dot "
                         "would mean nothing to it; train one with actions: python demo.py (on by default)")
    return Model(params, config, Planner(params, config) if planner else None)


def sense(world, occluder, eyes_open, size):
    """What the model gets: the rendered dot with the occluder painted black, or nothing at all.

    world (4,), occluder (S, S) bool -> (S, S) float32.
    """
    if not eyes_open:
        return np.zeros((size, size), dtype=np.float32)
    return np.where(occluder, np.float32(0.0), render(world[:2], size))


def believe(model, state, seen, action, eyes_open, eps):
    """One RSSM step for every belief row: obs_step with eyes open, img_step with them closed.

    state: the belief, rows (P, .); seen (S, S); action (A,) leading into this frame; eps (P, Z)
    noise (row 0 zeros: the mean path). Closed eyes never call encode, so no frame reaches the
    posterior. Returns the new belief state.
    """
    params, config = model.params, model.config
    rows = state["deter"].shape[0]
    actions = np.repeat(action[None], rows, axis=0).astype(config.dtype)                     # (P, A)
    if not eyes_open:
        return img_step(params, config, state, actions, eps)
    embed = encode(params, seen.reshape(1, -1).astype(config.dtype))                         # (1, E)
    post, _ = obs_step(params, config, state, actions, np.repeat(embed, rows, axis=0), eps)
    return post


def read_belief(model, state):
    """Decode every belief row: the mean path's frame (S, S), its centroid (2,), the particles' (K, 2)."""
    frames = mean_frame(model.params, model.config, state)                                   # (P, S, S)
    xy = centroid(frames)                                                                    # (P, 2)
    return frames[0], xy[0], xy[1:]


def noise(game_rng, model, rows):
    """eps (P, Z) for one step: zeros for the mean path, standard normal for the particles."""
    eps = game_rng.standard_normal((rows, model.config.stoch_size)).astype(model.config.dtype)
    eps[0] = 0.0
    return eps


def new_game(model, seed=0, episode=0, particles=PARTICLES):
    """A fresh start: the dot somewhere random, the model's eyes open on its first frame."""
    config, size = model.config, model.config.image_size
    rng = np.random.default_rng((seed, episode))
    world = random_start(rng, 1, size)[0]                                                    # (4,)
    occluder = np.zeros((size, size), dtype=bool)
    seen = sense(world, occluder, True, size)
    action = np.zeros(config.action_size)
    rows = particles + 1
    # (h_{-1}, z_{-1}) = 0, as observe() starts every sequence.
    state = believe(model, initial_state(config, rows), seen, action, True, noise(rng, model, rows))
    belief, belief_xy, particle_xy = read_belief(model, state)
    game = Game(model, seed, episode, 0, world, occluder, 0, True, seen, action, state,
                belief, belief_xy, particle_xy)
    return dataclasses.replace(game, history=((0, True, game.error, game.spread),))


def drop_occluder(position, size):
    """A square of the world's largest occluder side, centred on the dot: (S, S) bool."""
    side = min(OCCLUDER_SIDE[1], size)
    left, top = (np.clip(np.rint(position - side / 2), 0, size - side)).astype(int)
    hidden = np.zeros((size, size), dtype=bool)
    hidden[top:top + side, left:left + side] = True
    return hidden


def say(game, text):
    return dataclasses.replace(game, message=text, message_until=game.t + MESSAGE_FRAMES)


def press(game, key, rng):
    """The key's effect before the frame advances: returns (game, action)."""
    size = game.model.config.image_size
    action = np.zeros(game.model.config.action_size)
    if key in PUSHES:
        action = np.array(PUSHES[key])
    elif key == "space":
        game = dataclasses.replace(game, eyes_open=not game.eyes_open)
    elif key == "o":
        game = dataclasses.replace(game, occluder=drop_occluder(game.world[:2], size),
                                   occluder_left=OCCLUDER_FRAMES[1] + 1)
    elif key == "k":
        kicked = np.concatenate([game.world[:2], random_start(rng, 1, size)[0, 2:]])
        game = say(dataclasses.replace(game, world=kicked), "kick! the model could not see that coming")
    elif key == "g":
        if game.model.planner is None:
            return say(game, NO_PLANNING), action
        game = say(dataclasses.replace(game, picking_goal=True), "click where the dot should go")
    elif key.startswith("click:"):
        if game.picking_goal:        # a click on the edge of the image (or beyond) means the nearest pixel
            goal = tuple(float(np.clip(float(v), 0, size - 1)) for v in key[len("click:"):].split(","))
            game = say(dataclasses.replace(game, goal=goal, picking_goal=False), "goal set: p lets the planner drive")
    elif key == "p":
        if game.model.planner is None:
            return say(game, NO_PLANNING), action
        if game.goal is None:
            return say(game, "set a goal first: g, then a click"), action
        if not game.planning:
            game.model.planner.reset(1)
        game = say(dataclasses.replace(game, planning=not game.planning),
                   "the planner drives" if not game.planning else "you drive")
    if game.planning and key not in PUSHES:
        # The planner sees what the model sees; its own belief lives inside it (it is not pure).
        planned = game.model.planner.act(game.seen[None], np.array([game.goal]))              # (1, A)
        action = np.clip(np.asarray(planned, dtype=float)[0], -1.0, 1.0)
    return game, action


def step(game, key):
    """One frame: the key acts, the real dot moves, the model sees (or not) and updates its belief.

    key: one of KEYS (or an alias, or "click:X,Y"). Returns a new Game; `game` is unchanged.
    q (quit), r (reset) and h (help) do not move time. Pure given the model: the noise and the
    kicks come from a generator seeded by (seed, episode, t), so the same keys give the same
    game. (Only a planner keeps state of its own.)
    """
    key = ALIASES.get(key, key)
    if key == "q":
        return dataclasses.replace(game, quit=True)
    if key == "r":
        return new_game(game.model, game.seed, game.episode + 1, game.particle_xy.shape[0])
    if key == "h":
        return dataclasses.replace(game, help=not game.help)      # the window pauses while help shows
    t = game.t + 1
    rng = np.random.default_rng((game.seed, game.episode, t))
    config, size = game.model.config, game.model.config.image_size
    game, action = press(game, key, rng)
    world = step_state(game.world[None], action[None], size, config.boundary, rng)[0]         # (4,)
    occluder_left = max(game.occluder_left - 1, 0)
    occluder = game.occluder if occluder_left else np.zeros_like(game.occluder)
    seen = sense(world, occluder, game.eyes_open, size)
    state = believe(game.model, game.state, seen, action, game.eyes_open,
                    noise(rng, game.model, game.state["deter"].shape[0]))
    belief, belief_xy, particle_xy = read_belief(game.model, state)
    game = dataclasses.replace(game, t=t, world=world, occluder=occluder, occluder_left=occluder_left, seen=seen,
                               action=action, state=state, belief=belief, belief_xy=belief_xy,
                               particle_xy=particle_xy)
    entry = (t, game.eyes_open, game.error, game.spread)
    return dataclasses.replace(game, history=(game.history + (entry,))[-HISTORY:])


def parse_keys(text, size=None):
    """A key script -> a list of keys. "right*5 space wait*15" -> ["right"] * 5 + ["space"] + ["wait"] * 15.

    At most MAX_SCRIPT_KEYS keys; with `size` (the image side S), a click must lie on the image,
    x and y in [0, S - 1]. Raises ValueError naming the first bad word and what was expected.
    """
    if not isinstance(text, str) or not text.split():
        raise ValueError(f"the key script is empty; {SCRIPT_SYNTAX}")
    keys = []
    for word in text.split():
        name, _, count = word.partition("*")
        name = ALIASES.get(name.lower(), name.lower())
        if name.startswith("click:"):
            parts = name[len("click:"):].split(",")
            try:
                valid = len(parts) == 2 and all(np.isfinite(float(p)) for p in parts)
            except ValueError:
                valid = False
            if not valid:
                raise ValueError(f"{word!r} is not a click: expected click:X,Y with two numbers, e.g. click:10,20")
            if size is not None and not all(0 <= float(p) <= size - 1 for p in parts):
                raise ValueError(f"{word!r} is off the image: a click's x and y are pixels in [0, {size - 1}]")
        elif name not in KEYS:
            raise ValueError(f"{word!r} is not a key; {SCRIPT_SYNTAX}")
        if count == "" and "*" not in word:
            repeat = 1
        elif count.isdecimal() and count.lstrip("0"):
            digits = count.lstrip("0")
            repeat = int(digits) if len(digits) <= 12 else MAX_SCRIPT_KEYS + 1     # more digits: over the limit
        else:
            raise ValueError(f"{word!r} has a bad count: expected KEY*N with N a positive integer, e.g. wait*15")
        if len(keys) + repeat > MAX_SCRIPT_KEYS:      # counted before the list grows: right*10**12 costs nothing
            shown = word if len(word) <= 40 else word[:36] + "..."
            raise ValueError(f"the script is longer than {MAX_SCRIPT_KEYS} keys (at {shown!r}): a recording keeps "
                             f"every frame in memory; record a shorter script, or several")
        keys.extend([name] * repeat)
    return keys


def measurements(log):
    """Belief error while seeing, drift while dreaming, and recovery, from [(t, eyes_open, error, spread)].

    For each stretch of closed eyes, with e_0 the error on the frame before it and e_k the error
    k frames into it: drift = sum_k k (e_k - e_0) / sum_k k^2, the least-squares slope of the
    growth (every frame counts, so a dream path that happens to cross the true dot does not set
    it alone); the peak error; and the error on the first and third frames seen again.
    Each is averaged over the stretches that ended with the eyes opening.
    """
    eyes = np.array([entry[1] for entry in log])
    error = np.array([entry[2] for entry in log])
    drifts, peaks, first, third = [], [], [], []
    start = None
    for i in range(1, len(log)):
        if not eyes[i] and eyes[i - 1]:
            start = i
        if eyes[i] and not eyes[i - 1] and start is not None:
            k = np.arange(1, i - start + 1)
            drifts.append(np.sum(k * (error[start:i] - error[start - 1])) / np.sum(k ** 2))
            peaks.append(error[start:i].max())
            first.append(error[i])
            if i + 2 < len(log) and eyes[i:i + 3].all():
                third.append(error[i + 2])
            start = None

    def mean(values):
        return float(np.mean(values)) if len(values) else float("nan")

    return {"frames": len(log), "open_error_px": mean(error[eyes]), "closed_error_px": mean(error[~eyes]),
            "drift_px_per_closed_frame": mean(drifts), "peak_closed_error_px": mean(peaks),
            "first_reopened_error_px": mean(first), "third_reopened_error_px": mean(third)}
