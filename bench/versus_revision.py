"""`train()` speed of this tree against an earlier revision of ticketlab, same model, mask and data.

Each measurement is a fresh process (so the two versions never share a module), alternating this tree and
the other one for --rounds rounds; each process trains LeNet-300-100 on Fashion-MNIST (Adam 1.2e-3, batch
60, one thread) with a random mask at --density for --steps steps, --reps times, and reports steps/s of the
reps after the first (warm). The evaluation at step 0 and at the end (val 500, test 10,000 examples) is in
the time of both alike. The table gives the median steps/s of each and the ratio this / other.

Target (issue 20): this tree within 3% of the other (ratio >= 0.97).

Rerun (from /work/main; about 5 minutes on 2 cores):
    git worktree add /tmp/ticketlab-base b739203   # or any revision
    .venv/bin/python bench/versus_revision.py --other /tmp/ticketlab-base/src
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "versus_revision.json"
TARGET = 0.97

ONE = r"""
import ticketlab  # first: sets OMP_WAIT_POLICY before torch loads
import json, sys, time, torch
from ticketlab import Mask, TrainingHparams, build_model, load_dataset, prunable, train
from ticketlab.config import DatasetHparams, ModelHparams
torch.set_num_threads(1)
density, steps, reps = float(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
data = load_dataset(DatasetHparams(name="fashion_mnist", val_size=500))
out = []
for rep in range(reps):
    model = build_model(ModelHparams(name="lenet_300_100"), data.input_shape, data.num_classes, 0)
    g = torch.Generator().manual_seed(1)
    mask = Mask({k: torch.rand(p.shape, generator=g) < density for k, p in prunable(model).items()}) \
        if density < 1 else Mask.ones(model)  # an all-ones mask: earlier revisions' train() needs one
    hp = TrainingHparams(optimizer="adam", lr=1.2e-3, batch_size=60, train_steps=steps, eval_every=10 * steps)
    began = time.perf_counter()
    train(model, data, hp, mask, data_seed=0)
    out.append(steps / (time.perf_counter() - began))
print(json.dumps(out[1:]))
"""


def measure(src: Path, density: float, steps: int, reps: int) -> list[float]:
    done = subprocess.run([sys.executable, "-c", ONE, str(density), str(steps), str(reps)], capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(src)}, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--other", required=True, help="the other revision's src/ folder")
    ap.add_argument("--densities", default="0.21,1.0")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--reps", type=int, default=3, help="trainings per process; the first is a warm-up")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    this, other = HERE.parent / "src", Path(args.other)
    rows = []
    for density in [float(d) for d in args.densities.split(",")]:
        got: dict[str, list[float]] = {"this": [], "other": []}
        for r in range(args.rounds):  # ABBA: neither side always runs first
            order = [("this", this), ("other", other)] if r % 2 == 0 else [("other", other), ("this", this)]
            for name, src in order:
                got[name] += measure(src, density, args.steps, args.reps)
        ratio = statistics.median(got["this"]) / statistics.median(got["other"])
        rows.append({"density": density, "this_steps_per_s": got["this"], "other_steps_per_s": got["other"],
                     "this_median": statistics.median(got["this"]), "other_median": statistics.median(got["other"]),
                     "ratio": ratio, "met": ratio >= TARGET})
    print(f"{'density':>8} {'this steps/s':>13} {'other steps/s':>14} {'ratio':>7}  (median of {args.rounds} "
          f"processes x {args.reps - 1} warm runs)")
    for row in rows:
        print(f"{row['density']:>8.0%} {row['this_median']:>13.1f} {row['other_median']:>14.1f} {row['ratio']:>7.3f}  "
              f"target >= {TARGET}: {'MET' if row['met'] else 'MISSED'}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
