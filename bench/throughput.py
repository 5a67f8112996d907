"""Training throughput of ticketlab's `train()` against a minimal hand-written PyTorch loop, same math.

Models: LeNet-300-100 (batch 60, Adam 1.2e-3) and Conv-4 (batch 60, Adam 3e-4) on Fashion-MNIST, each at
density 100% and with a random per-layer mask (default 21% of every prunable layer kept). Both loops start
from the same weights (ticketlab's `build_model`, copied into a hand-written nn.Sequential), train on the
same in-memory tensors with the same mask:
  * ticketlab: `train(model, data, hp, mask, data_seed=0)` with eval_every > steps, so it evaluates only at
    step 0 and at the end; those two evaluations are timed (wrapping `loop._evaluate`) and subtracted, and
    the validation/test sets are cut to --eval-size examples so they stay cheap (they do not touch training).
  * hand-written: torch.optim.Adam (defaults), random batch indices per step, and at a sparse mask
    grads *= mask before the step and weights *= mask after it. At density 100% it applies no mask at all
    (the plain dense loop one would write), the stricter baseline.
The two alternate (ABBA order) for --repeats rounds; the table gives median steps/s and examples/s of each
and the ratio ticketlab / hand-written. Target: ratio >= 1.0 for both models (at every density).

Rerun (from /work/main; ~25 min on 2 cores, mostly Conv-4):
    nohup .venv/bin/python bench/throughput.py > bench/results/throughput.log 2>&1 &
Smoke run:  .venv/bin/python bench/throughput.py --quick
"""

import ticketlab  # noqa: F401, I001  (first: sets OMP_WAIT_POLICY before torch loads)

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from ticketlab import Mask, TrainingHparams, build_model, load_dataset, prunable, train
from ticketlab.config import DatasetHparams, ModelHparams
from ticketlab.training import loop

MODELS = {"lenet_300_100": 1.2e-3, "conv4": 3e-4}  # name -> Adam lr (the paper presets)
BATCH = 60
TARGET = 1.0
OUT = Path(__file__).parent / "results" / "throughput.json"


def sequential(name: str) -> nn.Sequential:
    """The same architecture written out by hand (parameters in the same order as ticketlab's model)."""
    if name == "lenet_300_100":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(),
                             nn.Linear(100, 10))
    return nn.Sequential(nn.Conv2d(1, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(128, 128, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(128 * 7 * 7, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))


def random_mask(model: nn.Module, density: float, seed: int = 0) -> Mask:
    """Exactly round(density * size) random survivors in every prunable layer."""
    g = torch.Generator().manual_seed(seed)
    tensors = {}
    for k, p in prunable(model).items():
        keep = torch.zeros(p.numel(), dtype=torch.bool)
        keep[torch.randperm(p.numel(), generator=g)[:round(density * p.numel())]] = True
        tensors[k] = keep.view_as(p)
    return Mask(tensors)


def run_ticketlab(model, theta0, data, lr, mask, steps) -> float:
    """Seconds of training alone (train() wall time minus its two evaluations)."""
    model.load_state_dict(theta0)
    hp = TrainingHparams(lr=lr, batch_size=BATCH, train_steps=steps, eval_every=steps + 1)
    eval_seconds = [0.0]
    original = loop._evaluate

    def timed(*args, **kwargs):
        t = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            eval_seconds[0] += time.perf_counter() - t

    loop._evaluate = timed
    try:
        t = time.perf_counter()
        train(model, data, hp, mask, data_seed=0)
        return time.perf_counter() - t - eval_seconds[0]
    finally:
        loop._evaluate = original


def run_handwritten(seq, theta0, data, lr, mask, steps) -> float:
    with torch.no_grad():
        for p, v in zip(seq.parameters(), theta0.values()):
            p.copy_(v)
    pairs = []  # (weight, float mask) of the masked layers
    if mask is not None:
        layers = [m for m in seq if isinstance(m, (nn.Linear, nn.Conv2d))]
        pairs = [(m.weight, mv.float()) for m, mv in zip(layers, mask.tensors.values())]
        with torch.no_grad():
            for w, m in pairs:
                w.mul_(m)
    opt = torch.optim.Adam(seq.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(0)
    x, y, n = data.train_x, data.train_y, len(data.train_x)
    seq.train()
    t = time.perf_counter()
    for _ in range(steps):
        idx = torch.randint(0, n, (BATCH,), generator=gen)
        loss = nn.functional.cross_entropy(seq(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        for w, m in pairs:
            w.grad.mul_(m)
        opt.step()
        with torch.no_grad():
            for w, m in pairs:
                w.mul_(m)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--repeats", type=int, default=5, help="alternating rounds per comparison")
    ap.add_argument("--lenet-steps", type=int, default=2000)
    ap.add_argument("--conv-steps", type=int, default=200)
    ap.add_argument("--sparse", type=float, default=0.21, help="density of the random sparse mask")
    ap.add_argument("--eval-size", type=int, default=500, help="val/test examples ticketlab evaluates (twice)")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 repeats, 200 / 10 steps")
    ap.add_argument("--out", default=None, help="JSON file (default: results/throughput.json)")
    args = ap.parse_args()
    if args.quick:
        args.repeats, args.lenet_steps, args.conv_steps = 2, 200, 10
    torch.set_num_threads(args.threads)

    full = load_dataset(DatasetHparams())
    data = type(full)(full.train_x, full.train_y, full.val_x[:args.eval_size], full.val_y[:args.eval_size],
                      full.test_x[:args.eval_size], full.test_y[:args.eval_size], full.num_classes)
    rows = []
    for name in args.models.split(","):
        lr = MODELS[name]
        steps = args.lenet_steps if name == "lenet_300_100" else args.conv_steps
        model = build_model(ModelHparams(name=name), data.input_shape, data.num_classes, seed=0)
        seq = sequential(name)
        theta0 = {k: v.clone() for k, v in model.state_dict().items()}
        for density in (1.0, args.sparse):
            mask = Mask.ones(model) if density == 1.0 else random_mask(model, density)
            hand_mask = None if density == 1.0 else mask
            warm = max(2, steps // 20)  # first-call allocations, kernel selection
            run_ticketlab(model, theta0, data, lr, mask, warm)
            run_handwritten(seq, theta0, data, lr, hand_mask, warm)
            secs = {"ticketlab": [], "handwritten": []}
            for r in range(args.repeats):
                order = ["ticketlab", "handwritten"] if r % 2 == 0 else ["handwritten", "ticketlab"]
                for which in order:
                    fn = run_ticketlab if which == "ticketlab" else run_handwritten
                    secs[which].append(fn(model if which == "ticketlab" else seq, theta0, data, lr,
                                          mask if which == "ticketlab" else hand_mask, steps))
            sps = {k: [steps / s for s in v] for k, v in secs.items()}
            med = {k: statistics.median(v) for k, v in sps.items()}
            ratios = [a / b for a, b in zip(sps["ticketlab"], sps["handwritten"])]  # per alternating pair
            row = {"model": name, "density": density, "steps": steps, "threads": args.threads,
                   "ticketlab_steps_per_s": med["ticketlab"], "handwritten_steps_per_s": med["handwritten"],
                   "ticketlab_examples_per_s": med["ticketlab"] * BATCH,
                   "handwritten_examples_per_s": med["handwritten"] * BATCH,
                   "ratio": med["ticketlab"] / med["handwritten"], "ratio_per_pair_median": statistics.median(ratios),
                   "raw_steps_per_s": sps}
            rows.append(row)
            print(f"  done {name} density {density:.0%}: ratio {row['ratio']:.3f}", flush=True)

    print(f"\nTraining throughput, {args.threads} thread(s), batch {BATCH}, median of {args.repeats} alternating runs")
    head = f"{'model':<14}{'density':>8}{'steps':>7}{'tl steps/s':>12}{'hw steps/s':>12}{'tl ex/s':>10}" \
           f"{'hw ex/s':>10}{'ratio':>8}{'pair-med':>9}"
    print(head + "\n" + "-" * len(head))
    for r in rows:
        print(f"{r['model']:<14}{r['density']:>8.0%}{r['steps']:>7}{r['ticketlab_steps_per_s']:>12.1f}"
              f"{r['handwritten_steps_per_s']:>12.1f}{r['ticketlab_examples_per_s']:>10.0f}"
              f"{r['handwritten_examples_per_s']:>10.0f}{r['ratio']:>8.3f}{r['ratio_per_pair_median']:>9.3f}")
    print("\nratio = median ticketlab steps/s / median hand-written steps/s; pair-med = median of per-round ratios")
    targets = []
    for r in rows:
        met = r["ratio"] >= TARGET
        targets.append({"model": r["model"], "density": r["density"], "ratio": r["ratio"], "target": TARGET,
                        "met": met, "margin": r["ratio"] - TARGET})
        print(f"TARGET ratio >= {TARGET} for {r['model']} at {r['density']:.0%}: {'MET' if met else 'MISSED'} "
              f"({r['ratio']:.3f}, {(r['ratio'] - TARGET) * 100:+.1f}% vs target)")
    out = Path(args.out) if args.out else OUT.with_name("throughput_quick.json" if args.quick else OUT.name)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "rows": rows, "targets": targets}, indent=2))


if __name__ == "__main__":
    main()
