"""Copy the README's pictures into docs/, small, from fixed-seed runs, so they never drift from the code.

    python demo.py && python -m rssm_np.lab.compare && python -m rssm_np.lab.plan runs/demo/model.npz --out runs/plan \
        && python tools/docs_figures.py

Reads the figures that `python demo.py` (runs/demo) and `python -m rssm_np.lab.compare` (runs/compare)
wrote, and any that `python -m rssm_np.lab.plan` (runs/plan) wrote, shrinks each PNG to at most
MAX_WIDTH pixels wide, and writes them under docs/. Counts every file in docs/ (the play GIF,
made by `python -m rssm_np.lab.play runs/demo/model.npz --record docs/play.gif`, too) and fails if
they take more than 2 MB in all.
Pillow comes with matplotlib; nothing else is needed.
"""

import argparse
import os
import shutil
import sys

from PIL import Image

MAX_WIDTH = 900
LIMIT_BYTES = 2 * 1024 * 1024

# (run folder flag, file in that folder, name under docs/)
FIGURES = [
    ("demo", "imagination.gif", "imagination.gif"),
    ("demo", "open_loop.png", "open_loop.png"),
    ("demo", "error_by_horizon.png", "error_by_horizon.png"),
    ("demo", "belief_occlusion.png", "belief_occlusion.png"),
    ("demo", "future_fan.png", "future_fan.png"),
    ("demo", "two_actions.png", "two_actions.png"),
    ("demo", "kl_per_dim.png", "kl_per_dim.png"),
    ("compare", "lesson.png", "compare_lesson.png"),
    ("compare", "when_necessary.png", "compare_when_necessary.png"),
    ("compare", "error_by_horizon.png", "compare_error_by_horizon.png"),
    ("plan", "plan_episodes.png", "plan_episodes.png"),
    ("plan", "plan.gif", "plan.gif"),
]
REQUIRED = ("demo", "compare")


def shrink_png(source, target):
    with Image.open(source) as image:
        if image.width > MAX_WIDTH:
            image = image.resize((MAX_WIDTH, round(image.height * MAX_WIDTH / image.width)), Image.LANCZOS)
        image.convert("P", palette=Image.ADAPTIVE, colors=128).save(target, optimize=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Copy the README's figures into docs/, small.")
    parser.add_argument("--demo", default=os.path.join("runs", "demo"), help="folder of `python demo.py` (default runs/demo)")
    parser.add_argument("--compare", default=os.path.join("runs", "compare"),
                        help="folder of `python -m rssm_np.lab.compare` (default runs/compare)")
    parser.add_argument("--plan", default=os.path.join("runs", "plan"),
                        help="folder of `python -m rssm_np.lab.plan` (default runs/plan; skipped if absent)")
    parser.add_argument("--out", default="docs", help="where to write (default docs)")
    args = parser.parse_args(argv)
    for flag in REQUIRED:
        if not os.path.isdir(getattr(args, flag)):
            parser.error(f"--{flag} {getattr(args, flag)!r} is not a folder: run the command that makes it first")
    os.makedirs(args.out, exist_ok=True)
    written = []
    for flag, name, target_name in FIGURES:
        source = os.path.join(getattr(args, flag), name)
        if not os.path.exists(source):
            if flag in REQUIRED:
                parser.error(f"{source!r} is missing: rerun the command that writes --{flag}")
            continue
        target = os.path.join(args.out, target_name)
        if name.endswith(".png"):
            shrink_png(source, target)
        else:
            shutil.copyfile(source, target)
        written.append((target, os.path.getsize(target)))
    print(f"{'file':<40} | {'kB':>6}")
    for path, size in written:
        print(f"{path:<40} | {size / 1024:6.0f}")
    total = sum(os.path.getsize(os.path.join(args.out, name)) for name in os.listdir(args.out))
    print(f"{'total in ' + args.out:<40} | {total / 1024:6.0f}")
    if total > LIMIT_BYTES:
        print(f"error: {total / 1024:.0f} kB is over the 2 MB the README's pictures may take", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
