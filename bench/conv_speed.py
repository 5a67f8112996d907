"""Training speed of the deep conv nets on this CPU: ticketlab's loop against a hand-written loop of the same
math, the memory format (channels_last or not), and the projected cost of one full-recipe IMP level.

For ResNet-20 and VGG-16 (OpenLTH shapes, kaiming init, BN), batch 128, on 3x32x32 (CIFAR-10) and 1x28x28
(Fashion-MNIST) inputs, one thread, SGD 0.1 momentum 0.9 wd 1e-4, flip+crop augmentation:
  ticketlab    `train()` for --steps steps (all-ones mask; val/test sets of 16 examples so evaluation is ~0)
  hand         a plain loop: index a batch, the same augmentation, cross-entropy, zero_grad, backward, SGD step
  hand_cl      the same with the model and every batch in channels_last memory format
The three alternate (rotating order) for --repeats rounds after one warm-up step each; medians of the seconds
per step. Projection: 62,560 steps (OpenLTH's 160 epochs of 391) x ticketlab's median step time on 32x32x3,
plus 160 evaluations of 15,000 examples (validation + test once per epoch) at the measured evaluation speed.

Rerun (from /work/main; ~5 min on 2 shared cores):
    nohup .venv/bin/python bench/conv_speed.py > bench/results/conv_speed.log 2>&1 &
Smoke run:  .venv/bin/python bench/conv_speed.py --quick
"""

import ticketlab  # noqa: F401, I001  (first: sets OMP_WAIT_POLICY before torch loads)

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from ticketlab import Mask, TrainingHparams, build_model, train
from ticketlab.config import ModelHparams
from ticketlab.data import DataSplits
from ticketlab.data.augment import Augment
from ticketlab.training.evaluate import eval_batch_size, evaluate

OUT = Path(__file__).parent / "results"
FULL_STEPS = 62_560
EVALS, EVAL_EXAMPLES = 160, 15_000
HP = TrainingHparams(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=1e-4, batch_size=128)


def data_for(shape: tuple[int, ...], n: int = 1024) -> DataSplits:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(n + 32, *shape, generator=g), torch.randint(0, 10, (n + 32,), generator=g)
    return DataSplits(x[:n], y[:n], x[n:n + 16], y[n:n + 16], x[n + 16:], y[n + 16:], num_classes=10,
                      augment=Augment("flip_crop"))


def fresh(name: str, shape: tuple[int, ...]) -> nn.Module:
    return build_model(ModelHparams(name, init="kaiming_normal"), shape, 10, seed=0)


def time_ticketlab(name, shape, data, steps) -> float:
    model = fresh(name, shape)
    hp = TrainingHparams(**{**HP.__dict__, "train_steps": steps + 1, "eval_every": 10**6})
    t0 = [0.0]

    def start(_model):  # step 1 on: the warm-up step (and the step-0 evaluation) are not counted
        t0[0] = time.perf_counter()

    from ticketlab.training.loop import Hooks
    train(model, data, hp, Mask.ones(model), data_seed=1, hooks=Hooks(at_step={1: start}))
    return (time.perf_counter() - t0[0]) / steps  # includes the final 32-example evaluation: ~0


def time_hand(name, shape, data, steps, channels_last=False) -> float:
    model = fresh(name, shape)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), lr=HP.lr, momentum=HP.momentum, weight_decay=HP.weight_decay)
    g = torch.Generator().manual_seed(1)
    model.train()
    for step in range(steps + 1):
        if step == 1:
            t0 = time.perf_counter()
        idx = torch.randint(0, len(data.train_x), (HP.batch_size,), generator=g)
        x = data.augment(data.train_x[idx], 1, step).contiguous(memory_format=fmt)
        loss = nn.functional.cross_entropy(model(x), data.train_y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return (time.perf_counter() - t0) / steps


def eval_seconds_per_example(name, shape, n=512) -> float:
    model = fresh(name, shape)
    x, y = torch.randn(n, *shape), torch.randint(0, 10, (n,))
    evaluate(model, x[:64], y[:64])
    t = time.perf_counter()
    evaluate(model, x, y)
    return (time.perf_counter() - t) / n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cases = [("cifar_resnet_20", (3, 32, 32), 3), ("cifar_resnet_20", (1, 28, 28), 3),
             ("cifar_vgg_16", (3, 32, 32), 2), ("cifar_vgg_16", (1, 28, 28), 2)]
    repeats = args.repeats
    if args.quick:
        cases, repeats = [(n, s, 1) for n, s, _ in cases[:1]], 1
    out = {"threads": 1, "batch": HP.batch_size, "repeats": repeats, "cases": []}
    for name, shape, steps in cases:
        data = data_for(shape)
        times = {"ticketlab": [], "hand": [], "hand_cl": []}
        runners = {"ticketlab": lambda: time_ticketlab(name, shape, data, steps),
                   "hand": lambda: time_hand(name, shape, data, steps),
                   "hand_cl": lambda: time_hand(name, shape, data, steps, channels_last=True)}
        order = list(runners)
        for r in range(repeats):
            for key in order[r % 3:] + order[:r % 3]:
                times[key].append(runners[key]())
        med = {k: statistics.median(v) for k, v in times.items()}
        row = {"model": name, "input": list(shape), "steps_per_round": steps, "seconds_per_step": times,
               "median_s_per_step": med, "steps_per_s": {k: 1 / v for k, v in med.items()},
               "ratio_ticketlab_over_hand": med["hand"] / med["ticketlab"],
               "ratio_channels_last_over_default": med["hand"] / med["hand_cl"],
               "eval_batch": eval_batch_size(fresh(name, shape))}
        if shape == (3, 32, 32):
            per_ex = eval_seconds_per_example(name, shape)
            train_h = FULL_STEPS * med["ticketlab"] / 3600
            eval_h = EVALS * EVAL_EXAMPLES * per_ex / 3600
            row["full_level"] = {"steps": FULL_STEPS, "train_hours": train_h, "eval_seconds_per_example": per_ex,
                                 "eval_hours": eval_h, "total_hours": train_h + eval_h}
        out["cases"].append(row)
        print(f"{name} {shape}: steps/s ticketlab {row['steps_per_s']['ticketlab']:.3f}, hand "
              f"{row['steps_per_s']['hand']:.3f}, hand channels_last {row['steps_per_s']['hand_cl']:.3f}; "
              f"ticketlab/hand {row['ratio_ticketlab_over_hand']:.3f}x, channels_last/default "
              f"{row['ratio_channels_last_over_default']:.3f}x", flush=True)
        if "full_level" in row:
            f = row["full_level"]
            print(f"  one full-recipe level ({FULL_STEPS:,} steps + {EVALS} x {EVAL_EXAMPLES:,} evaluations): "
                  f"{f['train_hours']:.1f} h training + {f['eval_hours']:.1f} h evaluation = "
                  f"{f['total_hours']:.1f} h on one thread", flush=True)
    OUT.mkdir(exist_ok=True)
    path = OUT / ("conv_speed_quick.json" if args.quick else "conv_speed.json")
    path.write_text(json.dumps(out, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
