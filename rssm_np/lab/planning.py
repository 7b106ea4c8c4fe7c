"""Planning in the dream: model-predictive control with the cross-entropy method (PlaNet).

At every real step t the planner does three things:

    belief   h_t = GRU(h_{t-1}, z_{t-1}, a_{t-1}),  z_t = mean q(z_t | h_t, x_t)    obs_step() on one frame
    search   a_{t:t+K-1} = argmin_a  sum_{k=1..K} c(h_{t+k}, z_{t+k})                CEM in imagine()
    act      execute a_t only, see x_{t+1}, and search again                         (MPC)

Only the first action of each plan is ever executed: the plan is re-made from the newest frame at
every step, so the model's errors far ahead are corrected before they matter.

The cost of an imagined state is the distance of the dot, read from the *imagined latent state*,
to the goal g:   c(h, z) = || readout(h, z) - g ||.   Nothing in the search sees the true state or
the real physics; the world is touched only by executing a_t. The read-out is chosen by `readout`:

    "centroid"  p = centroid(mean_frame(h, z)): the intensity-weighted mean pixel of the
                imagined frame (the default; evaluate.dot_position). Needs no data: the decoder
                already knows where it draws the dot. It costs a decoder pass (about 3.8x the
                multiply-adds of an imagined step at the default sizes) on every candidate's
                every step.
    "linear"    p = [h, z, 1] W, W fitted by least squares once, when the planner is built, on
                states the model filtered and imagined on training-like sequences of the world
                (as PlaNet fits its reward head on the rewards in its data). Two small products.

`python -m rssm_np.lab.plan MODEL --readout linear` compares the two; docs/planning.md has the
measured table and how the search settings were chosen.

The planner talks to the model through encode, obs_step, imagine and mean_frame only, and holds
its belief as the model's state dict, so every model with that interface plans unchanged. CemPhysics is the same search with world.step_state in place
of imagine(): the ceiling a perfect model would reach.
Shapes: B episodes, N candidates, K horizon, A action, H deter, Z stoch, S image side, D = S*S.
"""

import time

import numpy as np

from .evaluate import centroid, dot_position
from ..model import encode, imagine, initial_state, mean_frame, obs_step, observe
from ..utils.speed import unpack
from ..utils.validate import check_array, check_int, check_seed
from ..world import actions_into_frames, make_dataset, render, step_state

READOUT_SEED = 20_261_200        # the sequences the linear read-out is fitted on (never evaluated on)
READOUTS = ("linear", "centroid")
# The CEM settings, chosen by measurement (docs/planning.md).
SEARCH = {"horizon": 4, "candidates": 40, "iterations": 3, "top_k": 5}


def cem(cost, batch, horizon, action_size, *, candidates, iterations, top_k, rng):
    """The cross-entropy method over action sequences, for B problems at once.

        a^(n) = clip(mu + sigma * eps^(n), -1, 1),  eps^(n) ~ N(0, I),  n = 1..N   sample
        E     = the top_k candidates of lowest cost(a^(n))                          select
        mu    = mean_{n in E} a^(n),   sigma = std_{n in E} a^(n)                    refit
    starting from mu = 0, sigma = 1 (PlaNet restarts the search every step) and repeated
    `iterations` times; returns mu, the refitted mean (B, K, A).
    cost: (B, N, K, A) actions -> (B, N) costs, lower is better; rng: np.random.Generator.
    """
    mean = np.zeros((batch, horizon, action_size), dtype=np.float32)                  # (B, K, A)
    std = np.ones((batch, horizon, action_size), dtype=np.float32)                    # (B, K, A)
    for _ in range(iterations):
        eps = rng.standard_normal((batch, candidates, horizon, action_size)).astype(np.float32)
        actions = np.clip(mean[:, None] + std[:, None] * eps, -1.0, 1.0)              # (B, N, K, A)
        costs = cost(actions)                                                         # (B, N)
        best = np.argsort(costs, axis=1)[:, :top_k]                                   # (B, top_k)
        elite = np.take_along_axis(actions, best[:, :, None, None], axis=1)           # (B, top_k, K, A)
        mean, std = elite.mean(axis=1), elite.std(axis=1)                             # (B, K, A)
    return mean


def goal_cost(positions, goals):
    """C(a) = sum_{k=1..K} || p_k - g ||: distance to the goal, summed over the plan.

    Summing over the horizon (not only the last step) rewards getting there early and staying.
    positions (B, N, K, 2), goals (B, 2) -> (B, N).
    """
    return np.linalg.norm(positions - goals[:, None, None, :], axis=-1).sum(axis=-1)


def features(state):
    """[h, z, 1]: the latent state with a bias column, as the linear read-out sees it. (..., H+Z+1)"""
    ones = np.ones(state["deter"].shape[:-1] + (1,), dtype=state["deter"].dtype)
    return np.concatenate([state["deter"], state["stoch"], ones], axis=-1)


def fit_linear_readout(params, config, sequences=64, context=10, horizon=20):
    """W = argmin ||[h, z, 1] W - p||^2 over filtered and imagined states of training-like data.

    On `sequences` fresh sequences of the training world (with its pushes, without occluders):
    filter `context` frames, then imagine `horizon` steps under the sequences' own actions, and
    regress the true dot position p on both kinds of state. Fitting on imagined states too matters:
    the planner reads positions from imagination, whose states drift from the filtered ones.
    Returns W (H+Z+1, 2).
    """
    data = make_dataset(sequences, context + horizon, size=config.image_size, seed=READOUT_SEED,
                        control=config.control, boundary=config.boundary)
    obs, actions = data["obs"].astype(config.dtype), data["actions"].astype(config.dtype)
    embed = encode(params, obs[:, :context].reshape(sequences * context, -1)).reshape(sequences, context, -1)
    post, _ = observe(params, config, embed, actions_into_frames(actions[:, :context]))
    last = {"deter": post["deter"][:, -1], "stoch": post["stoch"][:, -1]}
    dream = imagine(params, config, last, actions[:, context - 1:-1])
    # The first two filtered frames are skipped: one frame alone does not show the velocity yet.
    inputs = np.concatenate([features({key: post[key][:, 2:] for key in ("deter", "stoch")}),
                             features(dream)], axis=1)                                 # (B, T', H+Z+1)
    targets = np.concatenate([data["states"][:, 2:context, :2], data["states"][:, context:, :2]], axis=1)
    weights, *_ = np.linalg.lstsq(inputs.reshape(-1, inputs.shape[-1]).astype(np.float64),
                                  targets.reshape(-1, 2).astype(np.float64), rcond=None)
    return weights.astype(config.dtype)                                                # (H+Z+1, 2)


class Planner:
    """MPC with CEM inside the learned model: act(frames, goals) -> actions, one real step at a time.

    planner = Planner(params, config); planner.reset(B); then at every step
    actions = planner.act(frames, goals). The planner remembers its belief (h, z) and the action it
    returned last, which is the a_{t-1} that leads into the next frame.
    After act(), `plan` (B, K, A) is the refitted CEM mean whose first action was returned;
    dream(plan) shows where the model expects the dot to go under it.
    """

    def __init__(self, params, config, *, horizon=SEARCH["horizon"], candidates=SEARCH["candidates"],
                 iterations=SEARCH["iterations"], top_k=SEARCH["top_k"], seed=0, readout="centroid"):
        self.horizon = check_int("horizon", horizon)
        self.candidates = check_int("candidates", candidates)
        self.iterations = check_int("iterations", iterations)
        self.top_k = check_int("top_k", top_k)
        if self.top_k > self.candidates:
            raise ValueError(f"top_k must be <= candidates ({candidates}), got {top_k}")
        self.seed = check_seed("seed", seed)
        if readout not in READOUTS:
            raise ValueError(f"readout must be one of {list(READOUTS)}, got {readout!r}")
        self.params, self.config, self.readout = unpack(params), config, readout
        self.readout_weights = fit_linear_readout(self.params, config) if readout == "linear" else None
        self.batch = None

    def reset(self, batch):
        """Start `batch` new episodes: empty memory, no previous action, the search noise re-seeded."""
        self.batch = check_int("batch", batch)
        self.belief = None                         # the filtered state (B, .) after the first act()
        self.last_action = np.zeros((batch, self.config.action_size), dtype=self.config.dtype)
        self.rng = np.random.default_rng(self.seed)
        self.plan = None

    def positions(self, state):
        """Where the dot is in latent states, by the chosen read-out: a state of (M, .) -> (M, 2)."""
        if self.readout == "linear":
            inputs = features(state)                                                  # (..., H+Z+1)
            flat = inputs.reshape(-1, inputs.shape[-1]) @ self.readout_weights       # 2-D: BLAS (layers.dense)
            return flat.reshape(inputs.shape[:-1] + (2,))
        return dot_position(self.params, self.config, state)

    def dream(self, plan):
        """Imagine the plan from the current belief: latent states, positions and decoded frames.

        plan (B, K, A) -> dict deter (B, K, H), stoch (B, K, Z), positions (B, K, 2), frames (B, K, S, S).
        """
        if self.belief is None:
            raise ValueError("dream(plan) imagines from the belief that act() builds: call act() first")
        out = imagine(self.params, self.config, self.belief, plan.astype(self.config.dtype))     # (B, K, .)
        frames = mean_frame(self.params, self.config, out)                                      # (B, K, S, S)
        positions = centroid(frames) if self.readout == "centroid" else self.positions(out)
        return {"deter": out["deter"], "stoch": out["stoch"], "frames": frames, "positions": positions}

    def imagined_cost(self, goals):
        """The cost function CEM calls: every candidate imagined from the belief, as one batch."""
        def cost(actions):                                                            # (B, N, K, A)
            batch, count, horizon, _ = actions.shape
            start = {key: np.repeat(self.belief[key], count, axis=0) for key in ("deter", "stoch")}
            out = imagine(self.params, self.config, start, actions.reshape(batch * count, horizon, -1))
            positions = self.positions(out)                                           # (B*N, K, 2)
            return goal_cost(positions.reshape(batch, count, horizon, 2), goals)      # (B, N)
        return cost

    def act(self, frames, goals):
        """Filter the newest frame into the belief, plan by CEM in imagination, return a_t.

        frames (B, S, S) in [0, 1], the newest real frame of each episode; goals (B, 2) as (x, y)
        pixel positions on the screen. Returns actions (B, A) in [-1, 1].
        """
        frames, goals = check_act_args(self.batch, self.config.image_size, frames, goals)
        dtype = self.config.dtype
        embed = encode(self.params, frames.reshape(self.batch, -1).astype(dtype))              # (B, E)
        state = initial_state(self.config, self.batch) if self.belief is None else self.belief
        self.belief, _ = obs_step(self.params, self.config, state, self.last_action, embed)   # z_t = the posterior mean
        self.plan = cem(self.imagined_cost(goals), self.batch, self.horizon, self.config.action_size,
                        candidates=self.candidates, iterations=self.iterations, top_k=self.top_k, rng=self.rng)
        self.last_action = np.clip(self.plan[:, 0], -1.0, 1.0).astype(dtype)                 # (B, A)
        return self.last_action.copy()


class CemPhysics:
    """The same CEM search with the true physics: candidates rolled out by world.step_state.

    The reference PlaNet calls "CEM + true simulator": it sees the true state (x, y, vx, vy) and
    knows the world's equations, so its gap to Planner is the price of planning in a learned model.
    act(states, goals): states (B, 4), goals (B, 2) -> actions (B, A).
    """

    def __init__(self, size, boundary, *, horizon=SEARCH["horizon"], candidates=SEARCH["candidates"],
                 iterations=SEARCH["iterations"], top_k=SEARCH["top_k"], seed=0):
        # Random walls redraw the velocity by chance: no planner can know the draw, so this one
        # plans with their predictable part, the reflection of "bounce".
        self.size, self.boundary = size, "bounce" if boundary == "random" else boundary
        self.horizon, self.candidates, self.iterations, self.top_k = horizon, candidates, iterations, top_k
        self.seed = seed

    def reset(self, batch):
        self.batch = batch
        self.rng = np.random.default_rng(self.seed)

    def act(self, states, goals):
        def cost(actions):                                                            # (B, N, K, A)
            batch, count, horizon, _ = actions.shape
            state = np.repeat(states.astype(np.float64), count, axis=0)                # (B*N, 4)
            path = []
            for k in range(horizon):
                state = step_state(state, actions.reshape(batch * count, horizon, -1)[:, k], self.size, self.boundary)
                path.append(state[:, :2])
            return goal_cost(np.stack(path, axis=1).reshape(batch, count, horizon, 2), goals)
        plan = cem(cost, len(states), self.horizon, 2, candidates=self.candidates, iterations=self.iterations,
                   top_k=self.top_k, rng=self.rng)
        return plan[:, 0]


def check_act_args(batch, size, frames, goals):
    """frames (B, S, S) in [0, 1] and goals (B, 2) on the screen, B the batch given to reset()."""
    if batch is None:
        raise ValueError("call reset(batch) before act(frames, goals)")
    frames = check_array("frames", frames, 3, (size, size), unit_interval=True)
    goals = check_array("goals", goals, 2, (2,))
    if frames.shape[0] != batch or goals.shape[0] != batch:
        raise ValueError(f"frames and goals must hold the {batch} episodes given to reset({batch}), "
                         f"got frames {frames.shape} and goals {goals.shape}")
    if goals.min() < 0 or goals.max() > size - 1:
        raise ValueError(f"goals must be (x, y) pixel positions in [0, {size - 1}], "
                         f"got values in [{goals.min():.3g}, {goals.max():.3g}]")
    return frames, goals


EPISODE_STEPS = 30       # real steps per episode
SUCCESS_PX = 2.0         # an episode succeeds if the dot ends at most this far from the goal
GOAL_MARGIN = 3.0        # goals are at least this far from the walls
LAST_STEPS = 10          # "distance over the last steps" averages this many final positions


def sample_episodes(n, size, seed, boundary="bounce"):
    """n start states, as make_dataset draws them, and n goals at least GOAL_MARGIN px from the walls.

    Returns starts (n, 4) [x, y, vx, vy] and goals (n, 2) [x, y].
    """
    starts = make_dataset(n, 1, size=size, seed=seed, boundary=boundary)["states"][:, 0].astype(np.float64)
    goals = np.random.default_rng((seed, 1)).uniform(GOAL_MARGIN, size - 1 - GOAL_MARGIN, size=(n, 2))
    return starts, goals


def run_episodes(act, starts, goals, size, boundary, steps=EPISODE_STEPS, on_step=None):
    """Run B episodes in the real world: see x_t, act a_t = act(frames, states, goals), step s_{t+1} = f(s_t, a_t).

    act gets the rendered frames (B, S, S), the true states (B, 4) (only the true-physics reference
    may look at them) and the goals (B, 2), and returns actions (B, A). on_step(t, seconds), if
    given, is called after each step with the seconds spent in act so far.
    Returns positions (B, steps + 1, 2) and the seconds spent inside act.
    """
    states, positions, seconds = starts, [starts[:, :2]], 0.0
    walls = np.random.default_rng(len(starts))        # the draws of random walls, the same for every planner
    for t in range(steps):
        frames = render(states[:, :2], size)                                          # (B, S, S)
        start = time.perf_counter()
        actions = np.clip(np.asarray(act(frames, states, goals), dtype=np.float64), -1.0, 1.0)
        seconds += time.perf_counter() - start
        states = step_state(states, actions, size, boundary, walls)                   # (B, 4)
        positions.append(states[:, :2])
        if on_step is not None:
            on_step(t, seconds)
    return np.stack(positions, axis=1), seconds


def episode_metrics(positions, goals, seconds):
    """success rate, mean final distance, mean distance over the last steps, ms per planned step.

    positions (B, T + 1, 2), goals (B, 2); ms per step is the wall time of one act() call for the
    whole batch divided by B: the cost of one decision for one episode when B are planned together.
    """
    batch, steps = positions.shape[0], positions.shape[1] - 1
    distance = np.linalg.norm(positions - goals[:, None], axis=-1)                    # (B, T + 1)
    return {
        "success_rate": float(np.mean(distance[:, -1] <= SUCCESS_PX)),
        "final_px": float(distance[:, -1].mean()),
        "last10_px": float(distance[:, -LAST_STEPS:].mean()),
        "ms_per_step": 1000 * seconds / (steps * batch),
    }


def evaluate_planners(planner, episodes=64, seed=0, on_step=None, results=None):
    """The model's planner and three references on the same real episodes.

    The references: zero actions (the dot coasts), uniform random actions, and CemPhysics with
    the planner's own search settings. on_step(name, t, seconds) is called after every real step.
    Returns goals (B, 2) and a dict name -> episode_metrics plus "positions" (B, T + 1, 2): the
    `results` dict given, if any, filled as each planner finishes (a caller stopped midway keeps
    the finished ones).
    """
    config = planner.config
    size, boundary = config.image_size, config.boundary
    starts, goals = sample_episodes(episodes, size, seed, boundary)
    physics = CemPhysics(size, boundary, horizon=planner.horizon, candidates=planner.candidates,
                         iterations=planner.iterations, top_k=planner.top_k, seed=planner.seed)
    rng = np.random.default_rng((seed, 2))
    policies = {
        "zero actions": (None, lambda frames, states, goals: np.zeros((len(states), 2))),
        "random actions": (None, lambda frames, states, goals: rng.uniform(-1.0, 1.0, (len(states), 2))),
        "CEM + true physics": (physics, lambda frames, states, goals: physics.act(states, goals)),
        "CEM in the model": (planner, lambda frames, states, goals: planner.act(frames, goals)),
    }
    results = {} if results is None else results
    for name, (searcher, act) in policies.items():
        if searcher is not None:
            searcher.reset(episodes)
        report = None if on_step is None else (lambda t, seconds, name=name: on_step(name, t, seconds))
        positions, seconds = run_episodes(act, starts, goals, size, boundary, on_step=report)
        results[name] = dict(episode_metrics(positions, goals, seconds), positions=positions)
    return goals, results
