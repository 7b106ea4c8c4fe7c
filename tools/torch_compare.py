"""The same RSSM train step in PyTorch, timed side by side with rssm_np's (not part of the package).

    pip install torch            # only for this comparison; rssm_np never imports it
    python tools/torch_compare.py --batch 16 --seq-len 32 --steps 30

Same architecture and sizes as rssm_np.Config: MLP encoder (D-256-256), a layer-normed GRU with
the reset gate on the candidate (Dreamer's), posterior MLP([h, e]) and prior MLP(h) with
softplus + min_std, reparameterized z, Bernoulli decoder ([h, z]-256-256-D), analytic KL with
free nats, Adam with global-norm clipping. Each side runs in its own child process (OpenBLAS and
PyTorch's thread pools, busy-waiting in one process, would steal each other's cores), alternating
both sides in every one of --rounds rounds (which goes first alternates) so both see the same
machine load; it prints one JSON line with both medians over all rounds' steps, the ratio of the
two sides' medians in each round, and its median over the rounds: the ratio to quote, since a
shared machine's speed drifts between rounds more than within one.
"""

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from rssm_np import Config  # noqa: E402
from rssm_np.lab.results import provenance  # noqa: E402
from rssm_np.training import init_train_state, make_train_step, training_batch  # noqa: E402


class TorchRSSM(nn.Module):
    def __init__(self, c):
        super().__init__()
        pixels = c.image_size ** 2
        self.c = c
        self.encoder = nn.Sequential(nn.Linear(pixels, c.hidden_size), nn.ELU(), nn.Linear(c.hidden_size, c.embed_size), nn.ELU())
        self.gru = nn.Linear(c.deter_size + c.stoch_size + c.action_size, 3 * c.deter_size)
        self.gru_norm = nn.LayerNorm(3 * c.deter_size, eps=1e-3)
        self.posterior = nn.Sequential(nn.Linear(c.deter_size + c.embed_size, c.hidden_size), nn.ELU(),
                                       nn.Linear(c.hidden_size, 2 * c.stoch_size))
        self.prior = nn.Sequential(nn.Linear(c.deter_size, c.hidden_size), nn.ELU(), nn.Linear(c.hidden_size, 2 * c.stoch_size))
        self.decoder = nn.Sequential(nn.Linear(c.deter_size + c.stoch_size, c.hidden_size), nn.ELU(),
                                     nn.Linear(c.hidden_size, c.hidden_size), nn.ELU(), nn.Linear(c.hidden_size, pixels))

    def gaussian(self, out):
        mean, raw = out.chunk(2, dim=-1)
        return mean, F.softplus(raw) + self.c.min_std

    def loss(self, obs, actions):
        c = self.c
        batch, steps = obs.shape[:2]
        pixels = obs.reshape(batch * steps, -1)
        embed = self.encoder(pixels).reshape(batch, steps, -1)
        prev_actions = torch.cat([torch.zeros_like(actions[:, :1]), actions[:, :-1]], dim=1)
        deter = obs.new_zeros(batch, c.deter_size)
        stoch = obs.new_zeros(batch, c.stoch_size)
        eps = torch.randn(batch, steps, c.stoch_size)
        deters, stochs, means, stds = [], [], [], []
        for t in range(steps):
            gates = self.gru_norm(self.gru(torch.cat([deter, stoch, prev_actions[:, t]], -1)))
            reset, cand, update = gates.chunk(3, dim=-1)
            reset = torch.sigmoid(reset)
            cand = torch.tanh(reset * cand)
            update = torch.sigmoid(update - 1)
            deter = update * cand + (1 - update) * deter
            mean, std = self.gaussian(self.posterior(torch.cat([deter, embed[:, t]], -1)))
            stoch = mean + std * eps[:, t]
            deters.append(deter), stochs.append(stoch), means.append(mean), stds.append(std)
        deter = torch.stack(deters, 1).reshape(batch * steps, -1)
        stoch = torch.stack(stochs, 1).reshape(batch * steps, -1)
        post_mean = torch.stack(means, 1).reshape(batch * steps, -1)
        post_std = torch.stack(stds, 1).reshape(batch * steps, -1)
        prior_mean, prior_std = self.gaussian(self.prior(deter))
        var_ratio = (post_std / prior_std) ** 2
        kl = 0.5 * (var_ratio + ((post_mean - prior_mean) / prior_std) ** 2 - 1 - var_ratio.log()).sum(-1)
        logits = self.decoder(torch.cat([deter, stoch], -1))
        recon = F.binary_cross_entropy_with_logits(logits, pixels, reduction="none").sum(-1).mean()
        return recon + torch.clamp(kl.mean(), min=c.free_nats)


def time_side(side, args):
    """Median-ready list of ms per train step for one side, after 3 warm-up steps."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = Config(batch_size=args.batch, seq_len=args.seq_len, dtype=args.dtype)
    if side == "torch":
        torch_dtype = torch.float32 if args.dtype == "float32" else torch.float64
        model = TorchRSSM(config).to(torch_dtype)
        optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)

        def step_fn(step):
            batch = training_batch(config, step)
            obs = torch.as_tensor(batch["obs"], dtype=torch_dtype)
            actions = torch.as_tensor(batch["actions"], dtype=torch_dtype)
            optimizer.zero_grad()
            model.loss(obs, actions).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
    else:
        holder = {"state": init_train_state(config)}
        numpy_step = make_train_step(config)

        def step_fn(step):
            holder["state"], _ = numpy_step(holder["state"])
    times = []
    for step in range(3 + args.steps):
        start = time.perf_counter()
        step_fn(step)
        times.append(1000 * (time.perf_counter() - start))
    return times[3:]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=32)
    parser.add_argument("--steps", type=int, default=30, help="timed steps per side per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--side", choices=("torch", "rssm_np"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        print(json.dumps(time_side(args.side, args)))
        return
    import subprocess
    if args.rounds < 1 or args.steps < 1:
        parser.error(f"--rounds and --steps must be positive integers, got {args.rounds} and {args.steps}")
    measured = provenance(program="python tools/torch_compare.py")    # where, read before the runs
    times, round_ratios = {"rssm_np": [], "torch": []}, []
    for index in range(args.rounds):
        # Each round runs both sides, the first of them alternating (rssm_np first, then PyTorch
        # first, ...), so that neither always meets the machine warmer or later in a slow spell.
        medians = {}
        for side in (("rssm_np", "torch") if index % 2 == 0 else ("torch", "rssm_np")):
            command = [sys.executable, os.path.abspath(__file__), "--side", side] + sys.argv[1:]
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            side_times = json.loads(output.strip().splitlines()[-1])
            times[side] += side_times
            medians[side] = float(np.median(side_times))
        round_ratios.append(medians["rssm_np"] / medians["torch"])
        print(f"round {index + 1}/{args.rounds}: rssm_np {medians['rssm_np']:.1f} ms, PyTorch {medians['torch']:.1f} ms, "
              f"ratio {round_ratios[-1]:.2f}", file=sys.stderr, flush=True)
    numpy_ms, torch_ms = float(np.median(times["rssm_np"])), float(np.median(times["torch"]))
    print(json.dumps({"rssm_np_ms": round(numpy_ms, 2), "torch_ms": round(torch_ms, 2),
                      "ratio_rssm_np_over_torch": round(float(np.median(round_ratios)), 3),
                      "round_ratios": [round(ratio, 3) for ratio in round_ratios], "rounds": args.rounds,
                      "batch": args.batch, "seq_len": args.seq_len, "dtype": args.dtype, "threads": args.threads,
                      "torch": torch.__version__, "steps_timed_per_side": len(times["torch"]),
                      "provenance": measured}))


if __name__ == "__main__":
    main()
