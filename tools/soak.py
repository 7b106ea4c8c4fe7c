"""Soak test (not run in CI): train many steps on the full world and report the extremes.

    python tools/soak.py --steps 20000

Trains with occluders and actions on, checks after every step that loss, KL and gradient norm
are finite, and prints one JSON line with their min/max and the steps taken. Exits 1 on the
first non-finite value (naming the step).
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from rssm_np import Config  # noqa: E402
from rssm_np.training import train  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    config = Config(occlusion=True, control=True, seed=args.seed)
    extremes = {}
    start = time.perf_counter()

    def on_step(state, stats, elapsed):
        for key in ("loss", "recon", "kl", "grad_norm"):
            low, high = extremes.get(key, (float("inf"), float("-inf")))
            extremes[key] = (min(low, stats[key]), max(high, stats[key]))
        if state["step"] % 1000 == 0:
            print(f"step {state['step']:6d}  loss {stats['loss']:.3f}  kl {stats['kl']:.3f}  "
                  f"grad {stats['grad_norm']:.2f}  {elapsed:.0f}s", flush=True)
        return False

    try:
        state = train(config, steps=args.steps, on_step=on_step)
    except FloatingPointError as error:
        print(json.dumps({"non_finite": str(error), "extremes": extremes}))
        sys.exit(1)
    print(json.dumps({"steps": state["step"], "seconds": round(time.perf_counter() - start),
                      "non_finite": None,
                      **{f"{key}_min": round(low, 4) for key, (low, _) in extremes.items()},
                      **{f"{key}_max": round(high, 4) for key, (_, high) in extremes.items()}}))


if __name__ == "__main__":
    main()
