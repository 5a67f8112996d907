"""Cost of a strong-ticket (edge-popup) training step and evaluation against dense training of the same model.

LeNet-300-100 and Conv-2 on Fashion-MNIST, one thread, the model's batch size (60): dense training with the
one loop (StaticMask of all ones) and edge-popup (ScoresPolicy, k = 0.5) each train --steps steps with
evaluation only at the start and the end on 500 validation examples (timed alike); then one evaluation of
the 15,000 validation + test images each way. Alternating in rounds, for --rounds rounds; medians and ratios.

Target (issue 26 item 5): a strong step at most 1.3x a dense step; each mask computed once per step and once
per evaluation (supermask.MaskedNet.cache_masks), not once per evaluation batch (Conv-2 evaluates in batches of
64: 235 of them for 15,000 images).

Rerun (from /work/main; a few minutes on 2 cores):
    .venv/bin/python bench/strong_step.py
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
from ticketlab.config import DatasetHparams, ModelHparams
from ticketlab.data import DataSplits
from ticketlab.masks import Mask
from ticketlab.training.evaluate import evaluate
from ticketlab.training.loop import train
from ticketlab.training.supermask import ScoresPolicy, StrongSpec, learn_mask, prepare_frozen

OUT = Path(__file__).parent / "results" / "strong_step.json"
SPEC = StrongSpec("edge-popup", 0.5)


def small_eval(data: DataSplits) -> DataSplits:
    """The training split as it is, 500 validation and no test examples: training steps dominate the time."""
    return dataclasses.replace(data, val_x=data.val_x[:500], val_y=data.val_y[:500], test_x=data.test_x[:0],
                               test_y=data.test_y[:0])


def train_ms(kind: str, model_name: str, data: DataSplits, steps: int) -> float:
    model = build_model(ModelHparams(model_name), data.input_shape, data.num_classes, 0)
    hp = TrainingHparams(optimizer="sgd", lr=0.01, momentum=0.9, batch_size=60, train_steps=steps,
                         eval_every=10 * steps)
    began = time.perf_counter()
    if kind == "dense":
        train(model, data, hp, Mask.ones(model), data_seed=0)
    else:
        learn_mask(prepare_frozen(model, SPEC), data, hp, SPEC, seed=0)
    return 1000 * (time.perf_counter() - began) / steps


def eval_s(kind: str, model_name: str, data: DataSplits) -> float:
    model = build_model(ModelHparams(model_name), data.input_shape, data.num_classes, 0)
    if kind == "strong":
        policy = ScoresPolicy(SPEC, 0)
        model = policy.evaluation(policy.network(prepare_frozen(model, SPEC)))
    x, y = torch.cat([data.val_x, data.test_x]), torch.cat([data.val_y, data.test_y])
    began = time.perf_counter()
    evaluate(model, x, y)
    return time.perf_counter() - began


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--models", default="lenet_300_100,conv2")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    torch.set_num_threads(1)
    data = load_dataset(DatasetHparams(name="fashion_mnist", val_size=5000))
    results = {}
    for name in args.models.split(","):
        train_data = small_eval(data)
        for kind in ("dense", "strong"):  # warm-up, untimed: the first call in a process pays one-off costs
            train_ms(kind, name, train_data, 5)
        times = {"dense": [], "strong": []}
        evals = {"dense": [], "strong": []}
        for r in range(args.rounds):
            order = ("dense", "strong") if r % 2 == 0 else ("strong", "dense")
            for kind in order:
                times[kind].append(train_ms(kind, name, train_data, args.steps))
                evals[kind].append(eval_s(kind, name, data))
        med = {k: statistics.median(v) for k, v in times.items()}
        med_eval = {k: statistics.median(v) for k, v in evals.items()}
        results[name] = {"ms_per_step": med, "step_ratio": med["strong"] / med["dense"],
                         "eval_s_15000": med_eval, "eval_ratio": med_eval["strong"] / med_eval["dense"],
                         "rounds": {"train": times, "eval": evals}, "steps": args.steps}
        print(f"{name}: ms/step dense {med['dense']:.1f}, strong {med['strong']:.1f} "
              f"(x{med['strong'] / med['dense']:.2f}); evaluation of 15,000: dense {med_eval['dense']:.2f} s, "
              f"strong {med_eval['strong']:.2f} s (x{med_eval['strong'] / med_eval['dense']:.2f})", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
