"""Instability of dense networks on Fashion-MNIST from initialisation and from later steps (issue 4).

Settings, after the linear-mode-connectivity paper (LMC) and the LTH paper (LTH):
  lmc:   LeNet-300-100, SGD lr 0.1 without momentum, batch 128, 18,760 steps (open_lth's LeNet recipe)
  lth:   LeNet-300-100, Adam 1.2e-3, batch 60, 50,000 steps (the LTH preset)
  conv2: Conv-2, Adam 2e-4, batch 60 (the LTH preset), but 1,000 steps: on this CPU a Conv-2 step costs
         ~0.17 s, so the preset's 20,000 steps per copy would take an hour
Two copies train from the state at step k with different data orders; the test-error barrier along the
straight line between them (--points, 30 by default) says whether that state is stable (< 2%). Evaluation
during the copies' training is thinned (every 1,000 steps): only their end weights enter the analysis.

    nice .venv/bin/python bench/stability.py --setting lmc
    nice .venv/bin/python bench/stability.py --setting lth --steps 0,25,100,500,2000
    nice .venv/bin/python bench/stability.py --setting conv2 --steps 0,100,500 --points 11 --train-eval-size 2000
Writes bench/results/stability_<setting>.json; the run store is bench/runs/ (reused when rerun).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import ticketlab  # noqa: F401  (before torch: OpenMP settings)

from ticketlab import build_config
from ticketlab.experiments.stability import StabilitySpec
from ticketlab.experiments.study import StudyPlan, run_study

SETTINGS = {
    "lmc": {"training": {"optimizer": "sgd", "lr": 0.1, "batch_size": 128, "train_steps": 18_760,
                         "eval_every": 1000}},
    "lth": {"training": {"eval_every": 1000}},
    "conv2": {"model": {"name": "conv2"}, "training": {"eval_every": 1000, "train_steps": 1000}},
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--setting", choices=sorted(SETTINGS), required=True)
    p.add_argument("--steps", default="0", help="comma list of split steps k")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--root", default="bench/runs")
    p.add_argument("--points", type=int, default=30)
    p.add_argument("--train-eval-size", type=int, default=10_000)
    args = p.parse_args()
    config = build_config({"seed": args.seed, **SETTINGS[args.setting]})
    results = []
    for k in [int(s) for s in args.steps.split(",")]:
        began = time.perf_counter()
        spec = StabilitySpec(step=k, points=args.points, train_eval_size=args.train_eval_size)
        study = run_study(StudyPlan(config, stability=(spec,)), root=args.root, threads=args.threads)
        r = study.replicates[args.seed]["stability"][0]
        results.append({**r, "wall_seconds_this_call": time.perf_counter() - began})
        print(f"{args.setting} k={k:5d}  test barrier {100 * r['test_barrier']:.2f}%  train barrier "
              f"{100 * r['train_barrier']:.2f}%  stable={r['stable']}  copies' test acc "
              f"{', '.join(f'{100 * a:.2f}' for a in r['copy_final_test_accuracy'])}", flush=True)
    out = Path("bench/results") / f"stability_{args.setting}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"setting": args.setting, "config": config.to_dict(), "experiment_dir":
                               str(study.experiment_dir), "results": results}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
