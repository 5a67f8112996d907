"""Cost of one IMP level of LeNet-300-100 on Fashion-MNIST, split into training and evaluation time.

The level trains a level-1-like random mask (80% of each hidden layer kept, 90% of the output layer, as
layer-wise pruning at rate 0.2 / output 0.1 gives) for --steps steps, batch 60, Adam 1.2e-3, one thread,
under these evaluation schedules:
  (a) paper, naive: ticketlab `train()` with validation AND test every 100 steps (test_every=0);
  (b) ticketlab:    validation every 100 steps, test every 1000 (test_every=1000); the early-stopping step's
                    test accuracy stays exact since the best-validation weights are kept and tested at the end
                    (that final test, `loop._test_best_weights`, counts as evaluation time);
  (c) hand-written: a plain loop (Adam, mask multiplied into grads and weights) that evaluates 5k validation
                    + 10k test examples every 100 steps in batches of 1000 with a `.item()` per batch.
  (d) what-if:      (b) with the library's `evaluate()` run at --what-if-batch examples per batch instead of
                    its default 5000 (patched in this script only; --what-if-batch 0 skips the row).
Evaluation time in (a)/(b)/(d) is measured by wrapping `ticketlab.training.loop._evaluate` (and
`_test_best_weights`) with a timer during the `train()` call; total = the whole `train()` call.
The settings alternate (rotating order) for --repeats rounds; medians are reported.
Target: eval fraction of (b) = eval time / total level time <= 20%.

Rerun (from /work/main; ~6 min on 2 cores):
    nohup .venv/bin/python bench/imp_level_cost.py > bench/results/imp_level_cost.log 2>&1 &
Smoke run:  .venv/bin/python bench/imp_level_cost.py --quick
"""

import ticketlab  # noqa: F401, I001  (first: sets OMP_WAIT_POLICY before torch loads)

import argparse
import functools
import json
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from ticketlab import Mask, TrainingHparams, build_model, load_dataset, prunable, train
from ticketlab.config import DatasetHparams, ModelHparams
from ticketlab.training import loop

TARGET = 0.20
OUT = Path(__file__).parent / "results" / "imp_level_cost.json"
SETTINGS = {"a": "paper: val+test every 100", "b": "ticketlab: val/100, test/1000", "c": "hand-written naive",
            "d": "what-if: (b), eval batch 1000"}


def level1_mask(model: nn.Module, seed: int = 0) -> Mask:
    g = torch.Generator().manual_seed(seed)
    names = list(prunable(model))
    tensors = {}
    for k, p in prunable(model).items():
        keep = torch.zeros(p.numel(), dtype=torch.bool)
        keep[torch.randperm(p.numel(), generator=g)[:round((0.9 if k == names[-1] else 0.8) * p.numel())]] = True
        tensors[k] = keep.view_as(p)
    return Mask(tensors)


def run_ticketlab(model, theta0, data, mask, steps, eval_every, test_every, eval_batch=None) -> dict:
    model.load_state_dict(theta0)
    hp = TrainingHparams(train_steps=steps, eval_every=eval_every, test_every=test_every)
    spent = {"eval": 0.0, "val_evals": 0, "test_evals": 0}
    originals = (loop._evaluate, loop._test_best_weights, loop.evaluate)

    def timed_evaluate(model, data, step, test=True):
        t = time.perf_counter()
        try:
            return originals[0](model, data, step, test)
        finally:
            spent["eval"] += time.perf_counter() - t
            spent["val_evals"] += 1
            spent["test_evals"] += int(test)

    def timed_test_best(*args):
        t = time.perf_counter()
        try:
            return originals[1](*args)
        finally:
            spent["eval"] += time.perf_counter() - t
            spent["test_evals"] += 1

    loop._evaluate, loop._test_best_weights = timed_evaluate, timed_test_best
    if eval_batch:  # what-if: the library's evaluate() with smaller batches (default 5000)
        loop.evaluate = functools.partial(originals[2], batch_size=eval_batch)
    try:
        t = time.perf_counter()
        result = train(model, data, hp, mask, data_seed=0)
        total = time.perf_counter() - t
    finally:
        loop._evaluate, loop._test_best_weights, loop.evaluate = originals
    return {"total": total, "eval": spent["eval"], "val_evals": spent["val_evals"], "test_evals": spent["test_evals"],
            "early_stop_test_accuracy": result.early_stop["test_accuracy"]}


def naive_eval(model, x, y, batch=1000) -> tuple[float, float]:
    model.eval()
    loss, correct = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            out = model(x[i:i + batch])
            loss += nn.functional.cross_entropy(out, y[i:i + batch], reduction="sum").item()
            correct += (out.argmax(1) == y[i:i + batch]).sum().item()
    model.train()
    return loss / len(x), correct / len(x)


def run_handwritten(theta0, data, mask, steps, eval_every) -> dict:
    seq = nn.Sequential(nn.Flatten(), nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(),
                        nn.Linear(100, 10))
    layers = [m for m in seq if isinstance(m, nn.Linear)]
    pairs = [(m.weight, mv.float()) for m, mv in zip(layers, mask.tensors.values())]
    with torch.no_grad():
        for p, v in zip(seq.parameters(), theta0.values()):
            p.copy_(v)
        for w, m in pairs:
            w.mul_(m)
    opt = torch.optim.Adam(seq.parameters(), lr=1.2e-3)
    gen = torch.Generator().manual_seed(0)
    n, evals, eval_time = len(data.train_x), 0, 0.0
    t0 = time.perf_counter()
    for step in range(steps + 1):
        if step % eval_every == 0 or step == steps:
            t = time.perf_counter()
            naive_eval(seq, data.val_x, data.val_y)
            naive_eval(seq, data.test_x, data.test_y)
            eval_time += time.perf_counter() - t
            evals += 1
        if step == steps:
            break
        idx = torch.randint(0, n, (60,), generator=gen)
        loss = nn.functional.cross_entropy(seq(data.train_x[idx]), data.train_y[idx])
        opt.zero_grad()
        loss.backward()
        for w, m in pairs:
            w.grad.mul_(m)
        opt.step()
        with torch.no_grad():
            for w, m in pairs:
                w.mul_(m)
    return {"total": time.perf_counter() - t0, "eval": eval_time, "val_evals": evals, "test_evals": evals}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=5000, help="training steps per level")
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--test-every", type=int, default=1000, help="ticketlab's reduced test interval, setting (b)")
    ap.add_argument("--repeats", type=int, default=5, help="alternating rounds")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="smoke run: 1000 steps, 1 round")
    ap.add_argument("--out", default=None, help="JSON file (default: results/imp_level_cost.json)")
    ap.add_argument("--what-if-batch", type=int, default=1000, help="row (d): (b) with this eval batch; 0: skip")
    args = ap.parse_args()
    if args.quick:
        args.steps, args.repeats = 1000, 1
    torch.set_num_threads(args.threads)

    data = load_dataset(DatasetHparams())
    model = build_model(ModelHparams(), data.input_shape, data.num_classes, seed=0)
    theta0 = {k: v.clone() for k, v in model.state_dict().items()}
    mask = level1_mask(model)
    run_ticketlab(model, theta0, data, mask, 200, 100, 0)  # warm-up
    keys = [k for k in SETTINGS if k != "d" or args.what_if_batch]
    runs = {k: [] for k in keys}
    for r in range(args.repeats):
        for key in keys[r % len(keys):] + keys[:r % len(keys)]:
            if key == "c":
                res = run_handwritten(theta0, data, mask, args.steps, args.eval_every)
            else:
                res = run_ticketlab(model, theta0, data, mask, args.steps, args.eval_every,
                                    0 if key == "a" else args.test_every, args.what_if_batch if key == "d" else None)
            res["train"], res["fraction"] = res["total"] - res["eval"], res["eval"] / res["total"]
            runs[key].append(res)
            print(f"  round {r + 1} ({key}): total {res['total']:.2f}s, eval {res['eval']:.2f}s", flush=True)

    med = {k: {f: statistics.median(x[f] for x in v) for f in ("total", "train", "eval", "fraction")}
           for k, v in runs.items()}
    print(f"\nOne IMP level of LeNet-300-100 (density {mask.density():.1%}), {args.steps} steps, eval every "
          f"{args.eval_every}, {args.threads} thread(s); median of {args.repeats} alternating rounds")
    head = f"{'setting':<34}{'total s':>9}{'train s':>9}{'eval s':>8}{'eval %':>8}{'#val':>6}{'#test':>7}"
    print(head + "\n" + "-" * len(head))
    for k in keys:
        label = SETTINGS[k].replace("1000", str(args.what_if_batch)) if k == "d" else SETTINGS[k]
        m, last = med[k], runs[k][-1]
        print(f"({k}) {label:<30}{m['total']:>9.2f}{m['train']:>9.2f}{m['eval']:>8.2f}{m['fraction']:>8.1%}"
              f"{last['val_evals']:>6}{last['test_evals']:>7}")
    print(f"\neval time (a)/(b): {med['a']['eval'] / med['b']['eval']:.2f}x;  level time (a)/(b): "
          f"{med['a']['total'] / med['b']['total']:.2f}x;  (c)/(b): {med['c']['total'] / med['b']['total']:.2f}x")
    accs = {k: runs[k][-1]["early_stop_test_accuracy"] for k in "ab"}
    print(f"early-stop test accuracy (a) {accs['a']:.4f}, (b) {accs['b']:.4f} "
          f"({'identical' if accs['a'] == accs['b'] else 'DIFFERENT'})")
    frac = med["b"]["fraction"]
    met = frac <= TARGET
    print(f"TARGET eval fraction of (b) <= {TARGET:.0%}: {'MET' if met else 'MISSED'} ({frac:.1%}, "
          f"{(frac - TARGET) * 100:+.1f} percentage points vs target)")
    out = Path(args.out) if args.out else OUT.with_name("imp_level_cost_quick.json" if args.quick else OUT.name)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(
        {"args": vars(args), "density": mask.density(), "medians": med, "runs": runs, "early_stop_accuracy": accs,
         "target": {"max_eval_fraction_b": TARGET, "value": frac, "met": met, "margin_pp": (frac - TARGET) * 100}},
        indent=2))


if __name__ == "__main__":
    main()
