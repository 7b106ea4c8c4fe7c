"""The same RSSM train step in PyTorch, timed side by side with rssm_np's (not part of the package).

    pip install torch            # only for this comparison; rssm_np never imports it
    python tools/torch_compare.py --batch 16 --seq-len 32 --steps 30

Same architecture and sizes as rssm_np.Config: MLP encoder (D-256-256), a layer-normed GRU with
the reset gate on the candidate (Dreamer's), posterior MLP([h, e]) and prior MLP(h) with
softplus + min_std, reparameterized z, Bernoulli decoder ([h, z]-256-256-D), analytic KL with
free nats, Adam with global-norm clipping. It alternates rssm_np and PyTorch steps in one run so
both see the same machine load, and prints one JSON line with both medians and the ratio.
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
from rssm_np.train import init_train_state, make_train_step, training_batch  # noqa: E402


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


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=32)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = Config(batch_size=args.batch, seq_len=args.seq_len, dtype=args.dtype)
    torch_dtype = torch.float32 if args.dtype == "float32" else torch.float64
    model = TorchRSSM(config).to(torch_dtype)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)

    def torch_step(step):
        batch = training_batch(config, step)
        obs = torch.as_tensor(batch["obs"], dtype=torch_dtype)
        actions = torch.as_tensor(batch["actions"], dtype=torch_dtype)
        optimizer.zero_grad()
        loss = model.loss(obs, actions)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()

    state = init_train_state(config)
    numpy_step = make_train_step(config)
    for step in range(3):
        torch_step(step)
        state, _ = numpy_step(state)
    torch_times, numpy_times = [], []
    for step in range(args.steps):
        start = time.perf_counter()
        torch_step(step)
        torch_times.append(1000 * (time.perf_counter() - start))
        start = time.perf_counter()
        state, _ = numpy_step(state)
        numpy_times.append(1000 * (time.perf_counter() - start))
    result = {"rssm_np_ms": round(float(np.median(numpy_times)), 2), "torch_ms": round(float(np.median(torch_times)), 2),
              "ratio_rssm_np_over_torch": round(float(np.median(numpy_times) / np.median(torch_times)), 3),
              "batch": args.batch, "seq_len": args.seq_len, "dtype": args.dtype, "threads": args.threads,
              "torch": torch.__version__, "steps_timed": args.steps}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
