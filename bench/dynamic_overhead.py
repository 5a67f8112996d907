"""Per-step overhead of dynamic sparse training (training/dynamic.py) against static sparse training.

LeNet-300-100 on Fashion-MNIST (Adam 1.2e-3, batch 60, one thread), the same ERK random mask at --density:
static (StaticMask), rigl (update every 100 steps through all of training: dense gradient kept, drop and grow, optimizer step
skipped), set (every 100 steps) and deepr (rewires after every step). Each method trains --steps steps
(evaluation only at step 0 and at the end, timed in all alike), alternating in rounds (the order rotates), for
--rounds rounds; the table gives the median ms per step and the ratio to static.

Target (issue 27): none; the issue asks for the figure. RigL's update touches every prunable weight once per
100 steps (a sort per layer), so its overhead should be a few percent; DEEP R's per-step rewiring is not.

Rerun (from /work/main; about 4 minutes on 2 cores):
    .venv/bin/python bench/dynamic_overhead.py
"""

import ticketlab  # noqa: F401, I001  (first: sets OMP_WAIT_POLICY before torch loads)

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

import torch

from ticketlab import TrainingHparams, build_model, load_dataset
from ticketlab.config import DatasetHparams, ModelHparams, PruningHparams
from ticketlab.pruning import SCORERS, budget_for, prune
from ticketlab.training.dynamic import METHODS, DynamicMask
from ticketlab.training.loop import train
from ticketlab.training.policy import StaticMask

OUT = Path(__file__).parent / "results" / "dynamic_overhead.json"


def run(method: str, data, density: float, steps: int) -> float:  # noqa: ANN001
    model = build_model(ModelHparams(name="lenet_300_100"), data.input_shape, data.num_classes, 0)
    mask = prune(model, density=density, scorer=SCORERS["random"], allocation="erk", hp=PruningHparams(),
                 generator=torch.Generator().manual_seed(0))
    hp = TrainingHparams(optimizer="adam", lr=1.2e-3, batch_size=60, train_steps=steps, eval_every=10 * steps)
    if method == "static":
        policy = StaticMask(mask)
    else:
        targets = {g[0]: n for g, n in budget_for(model, density, "erk", PruningHparams()).items()}
        spec = dataclasses.replace(METHODS[method], end=1.0) if method != "deepr" else METHODS[method]
        policy = DynamicMask(mask, spec, targets, steps, 0, data.input_shape, 60)
    began = time.perf_counter()
    train(model, data, hp, data_seed=0, policy=policy)
    return 1000 * (time.perf_counter() - began) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--density", type=float, default=0.05)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--methods", default="static,rigl,set,deepr")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    torch.set_num_threads(1)
    data = load_dataset(DatasetHparams(name="fashion_mnist", val_size=500))
    methods = args.methods.split(",")
    run("static", data, args.density, 200)  # warm-up
    times: dict[str, list[float]] = {m: [] for m in methods}
    for r in range(args.rounds):
        for m in methods[r % len(methods):] + methods[: r % len(methods)]:
            times[m].append(run(m, data, args.density, args.steps))
    base = statistics.median(times["static"])
    rows = [{"method": m, "ms_per_step": times[m], "median_ms_per_step": statistics.median(times[m]),
             "ratio_to_static": statistics.median(times[m]) / base} for m in methods]
    print(f"LeNet-300-100, density {args.density:g} (ERK), {args.steps} steps, median of {args.rounds} rounds")
    print(f"{'method':>8} {'ms/step':>9} {'x static':>9}")
    for row in rows:
        print(f"{row['method']:>8} {row['median_ms_per_step']:>9.3f} {row['ratio_to_static']:>9.3f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
