"""The world: a dot that moves on a small grayscale screen.

This file is plain NumPy and knows nothing of the model. It makes the data the RSSM learns from.

True state s_t = (x, y, vx, vy) in pixel units, x the column and y the row. One step (step_state):
    v_{t+1} = clamp_speed(v_t + ACTION_GAIN * a_t, MAX_SPEED)      the push (a_t = 0 without control)
    x_{t+1} = x_t + vx_{t+1}      (and the same for y)             the move, by the pushed velocity
Walls:  "bounce" reflects the position and flips that velocity component;
        "clip"   clamps the position to the screen and zeroes that component;
        "random" reflects the position and redraws the velocity at random (away from the wall):
                 the only randomness in the world's motion, and only at the walls.
Observation: an S x S image in [0, 1] holding a Gaussian blob of std DOT_SIGMA px at (x, y).
Occlusion (optional): rectangles that hide the dot from the *image only*, never from the state.
Control (optional): actions a_t in [-1, 1]^2 push the velocity after frame t is seen, so
actions[:, t] produces obs[:, t+1]. The random policy that makes the data pushes a frame with
probability push_prob (uniform in [-1, 1]^2) and coasts (a_t = 0) otherwise, so both pushed and
free flight appear. The world's own rate, PUSH_PROB = 0.5, makes every held-out evaluation set;
the demo trains on push_prob = Config.push_share = 0.2 (one frame in five; see config.DEMO_RECIPE).

Shapes (the glossary is in model.py): B sequences, T time steps, S pixels a side.
"""

import numpy as np          # plain NumPy (the model's traced NumPy is autograd.numpy, in model.py)

DOT_SIGMA = 1.5        # blob std in pixels: big enough that a centroid is sub-pixel accurate
PIXEL_FLOOR = 1e-12    # dot intensities below this are 0: invisible, and no float32 subnormals (render)
MAX_SPEED = 2.0        # px/frame; the initial speed is drawn up to this
ACTION_GAIN = 0.5      # px/frame of velocity change per unit action
OCCLUDER_SIDE = (4, 12)      # rectangle side in px, inclusive range
OCCLUDER_FRAMES = (3, 10)    # how long one occluder persists, inclusive range
OCCLUDER_START_PROB = 0.1    # chance per free frame that a new occluder appears
PUSH_PROB = 0.5              # with control, chance per frame of a random push (else the action is 0)
BOUNDARIES = ("bounce", "clip", "random")


def step_state(state, action, size, boundary, rng=None):
    """s_{t+1} = f(s_t, a_t): push the velocity, move, then apply the walls.

    state (B, 4) [x, y, vx, vy]; action (B, 2) in [-1, 1]; rng: a np.random.Generator, needed
    only by the "random" walls. Returns (B, 4).
    """
    return step_with_events(state, action, size, boundary, rng)[0]


def step_with_events(state, action, size, boundary, rng=None):
    """step_state, also saying which dots had their velocity redrawn: (B, 4), (B,) bool.

    "random" walls reflect the position as "bounce" does, then redraw the velocity: speed uniform
    in [0.5, MAX_SPEED], direction uniform over the directions that point away from the wall(s)
    hit (a uniform angle whose component along each hit wall's normal is turned to point inward).
    Free flight stays deterministic: the world is random exactly where it must be, at the walls.
    """
    pos, vel = state[:, :2], state[:, 2:]
    vel = vel + ACTION_GAIN * action
    speed = np.linalg.norm(vel, axis=1, keepdims=True)
    # Speed is clamped so that pushing can never make the dot skip across the screen.
    vel = vel * np.minimum(1.0, MAX_SPEED / np.maximum(speed, 1e-12))
    pos = pos + vel
    high = size - 1.0
    below, above = pos < 0, pos > high                                        # (B, 2) per axis
    redrawn = np.zeros(len(state), dtype=bool)
    if boundary in ("bounce", "random"):
        pos = np.where(below, -pos, np.where(above, 2 * high - pos, pos))
        vel = np.where(below | above, -vel, vel)
    else:  # clip
        hit = below | above
        pos = np.clip(pos, 0.0, high)
        vel = np.where(hit, 0.0, vel)
    if boundary == "random":
        if rng is None:
            raise ValueError("boundary 'random' needs rng, a np.random.Generator, to redraw the velocity")
        angle = rng.uniform(0, 2 * np.pi, size=len(state))
        new_speed = rng.uniform(0.5, MAX_SPEED, size=(len(state), 1))
        direction = np.stack([np.cos(angle), np.sin(angle)], axis=1)           # (B, 2)
        inward = np.where(below, 1.0, -1.0)                                    # away from the wall hit
        direction = np.where(below | above, np.abs(direction) * inward, direction)
        redrawn = (below | above).any(axis=1)                                  # (B,)
        vel = np.where(redrawn[:, None], new_speed * direction, vel)
    return np.concatenate([pos, vel], axis=1), redrawn


def render(positions, size):
    """x_t = exp(-|pixel - (x, y)|^2 / (2 sigma^2)): one blurred dot per image.

    positions (..., 2) [x, y]; returns (..., S, S) float32 in [0, 1].
    """
    grid = np.arange(size, dtype=np.float32)
    # The Gaussian is separable: exp(-(dx^2 + dy^2)/2s^2) = exp(-dx^2/2s^2) * exp(-dy^2/2s^2).
    dx = grid - positions[..., 0, None].astype(np.float32)                  # (..., S)
    dy = grid - positions[..., 1, None].astype(np.float32)                  # (..., S)
    across = np.exp(-dx ** 2 / (2 * DOT_SIGMA ** 2))
    down = np.exp(-dy ** 2 / (2 * DOT_SIGMA ** 2))
    image = down[..., :, None] * across[..., None, :]                       # (..., S, S) float32
    # The Gaussian's tail is cut at PIXEL_FLOOR (about 11 px from the dot). Left in, values down
    # to 1e-45 include float32 subnormals (below 1.2e-38), and so do the gradients they make
    # ((sigmoid(l) - x) / (B T)); every matrix product that reads one, the encoder's first layer
    # and the decoder's last one, forward and backward, takes OpenBLAS's slow path on them.
    image[image < PIXEL_FLOOR] = 0.0        # in place: the batch is made on the train step's critical path
    return image


def sample_occluders(rng, n, steps, size):
    """Rectangles that appear at random and persist OCCLUDER_FRAMES frames.

    Returns mask (B, T, S, S) bool, True where the image is hidden.
    """
    mask = np.zeros((n, steps, size, size), dtype=bool)
    for i in range(n):
        t = 0
        while t < steps:
            if rng.random() < OCCLUDER_START_PROB:
                frames = rng.integers(OCCLUDER_FRAMES[0], OCCLUDER_FRAMES[1] + 1)
                longest = min(OCCLUDER_SIDE[1], size)              # small screens get smaller occluders
                width, height = rng.integers(min(OCCLUDER_SIDE[0], longest), longest + 1, size=2)
                left = rng.integers(0, size - width + 1)
                top = rng.integers(0, size - height + 1)
                mask[i, t:t + frames, top:top + height, left:left + width] = True
                t += frames
            else:
                t += 1
    return mask


def random_start(rng, n, size):
    """s_0: a position away from the walls and a velocity of random direction, speed up to MAX_SPEED.

    Returns (n, 4) [x, y, vx, vy].
    """
    position = rng.uniform(2.0, size - 3.0, size=(n, 2))
    angle = rng.uniform(0, 2 * np.pi, size=n)
    speed = rng.uniform(0.5, MAX_SPEED, size=n)
    velocity = speed[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    return np.concatenate([position, velocity], axis=1)


def actions_into_frames(actions):
    """a_{t-1} for every frame t: shift actions right by one, with zeros before the first frame.

    actions[:, t] acts after frame t (as make_dataset stores them), so the action that led into
    frame t is actions[:, t-1].   (B, T, A) -> (B, T, A).
    """
    return np.concatenate([np.zeros_like(actions[:, :1]), actions[:, :-1]], axis=1)


def make_dataset(n, T, *, size=32, seed=0, occlusion=False, control=False, boundary="bounce", push_prob=PUSH_PROB):
    """Sample n sequences of T frames of the dot world.

    Returns a dict of NumPy arrays:
      obs      (n, T, S, S) float32 in [0, 1]   what the model sees (occluders painted black)
      actions  (n, T, 2)    float32 in [-1, 1]  actions[:, t] acts after obs[:, t] (zeros without control)
      states   (n, T, 4)    float32             true [x, y, vx, vy], never touched by occlusion
      mask     (n, T, S, S) bool                True where an occluder hides the pixel
      visible  (n, T)       bool                the dot's centre pixel is not hidden
      events   (n, T)       bool                the step that made frame t redrew the velocity
                                                (random walls only; the new velocity shows from frame t+1)
    The same seed gives the same data. `seed` may be an int or a tuple of ints.
    """
    from .utils.validate import check_dataset_args, check_number
    check_dataset_args(n, T, size, seed, boundary)
    push_prob = check_number("push_prob", push_prob, minimum=0.0, maximum=1.0)
    rng = np.random.default_rng(seed)
    state = random_start(rng, n, size)                                         # (n, 4)
    if control:
        pushed = rng.random((n, T, 1)) < push_prob
        actions = np.where(pushed, rng.uniform(-1.0, 1.0, size=(n, T, 2)), 0.0)
    else:
        actions = np.zeros((n, T, 2))
    states, events = [state], [np.zeros(n, dtype=bool)]
    for t in range(T - 1):
        state, redrawn = step_with_events(state, actions[:, t], size, boundary, rng)
        states.append(state)
        events.append(redrawn)
    states = np.stack(states, axis=1)                                          # (n, T, 4)
    obs = render(states[..., :2], size)                                        # (n, T, S, S)
    if occlusion:
        mask = sample_occluders(rng, n, T, size)
        obs[mask] = 0.0                                                         # occluders painted black
    else:
        mask = np.zeros(obs.shape, dtype=bool)
    centre = np.clip(np.rint(states[..., :2]).astype(int), 0, size - 1)        # (n, T, 2)
    n_idx, t_idx = np.meshgrid(np.arange(n), np.arange(T), indexing="ij")
    visible = ~mask[n_idx, t_idx, centre[..., 1], centre[..., 0]]
    return {
        "obs": obs,
        "actions": actions.astype(np.float32),
        "states": states.astype(np.float32),
        "mask": mask,
        "visible": visible,
        "events": np.stack(events, axis=1),
    }
