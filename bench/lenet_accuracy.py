"""Accuracy of ticketlab's dense LeNet-300-100 on Fashion-MNIST against a plain hand-written PyTorch loop.

Both follow the Frankle & Carbin (2019) protocol: Adam lr 1.2e-3, batch 60, 50,000 steps, Gaussian Glorot
weights with zero biases, inputs normalised (mean 0.2860, std 0.3530), 5,000 validation examples held out
of the 60k training set, validation loss and test accuracy every 100 steps. Early stop = step of minimum
validation loss. Per seed, ticketlab (`kind="train"`, the paper preset) and the hand-written loop run in
turn on the same data split; the script prints early-stop step, test accuracy at early stop and at the
end, wall seconds, and whether ticketlab is at least as accurate (within TOLERANCE_PP).

Rerun (from /work/main; ~25 min on 2 CPU cores):
    nohup .venv/bin/python bench/lenet_accuracy.py > bench/results/lenet_accuracy.log 2>&1 &
Quick check:  .venv/bin/python bench/lenet_accuracy.py --seeds 1 --steps 500
"""

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from ticketlab import build_config, load_dataset, run_lottery

TOLERANCE_PP = 0.2  # ticketlab passes if its mean early-stop accuracy >= hand-written mean - this


def handwritten(data, seed: int, steps: int, eval_every: int) -> dict:
    """Plain PyTorch: own model, own init, own batch order; evaluation as in the paper."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(),
                          nn.Linear(100, 10))
    for m in model:
        if isinstance(m, nn.Linear):
            nn.init.xavier_normal_(m.weight)
            nn.init.zeros_(m.bias)
    opt = torch.optim.Adam(model.parameters(), lr=1.2e-3)
    gen = torch.Generator().manual_seed(seed)
    n, bs = len(data.train_x), 60
    per_epoch = n // bs  # the last partial batch is dropped

    @torch.inference_mode()
    def evaluate(x, y):
        out = torch.cat([model(x[i:i + 5000]) for i in range(0, len(x), 5000)])
        return nn.functional.cross_entropy(out, y).item(), (out.argmax(1) == y).float().mean().item()

    evals = []
    for step in range(steps + 1):
        if step % eval_every == 0 or step == steps:
            val_loss, _ = evaluate(data.val_x, data.val_y)
            evals.append({"step": step, "val_loss": val_loss, "test_accuracy": evaluate(data.test_x, data.test_y)[1]})
        if step == steps:
            break
        if step % per_epoch == 0:
            perm = torch.randperm(n, generator=gen)
        idx = perm[(step % per_epoch) * bs:(step % per_epoch + 1) * bs]
        loss = nn.functional.cross_entropy(model(data.train_x[idx]), data.train_y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    best = min(evals, key=lambda e: e["val_loss"])  # first minimum on ties
    return {"early_stop_step": best["step"], "early_stop_test_accuracy": best["test_accuracy"],
            "final_test_accuracy": evals[-1]["test_accuracy"]}


def with_ticketlab(data, seed: int, steps: int, eval_every: int, root: Path) -> dict:
    cfg = build_config({"kind": "train", "seed": seed, "model": {"name": "lenet_300_100"},
                        "dataset": {"name": "fashion_mnist"},
                        "training": {"train_steps": steps, "eval_every": eval_every}})
    level = run_lottery(cfg, data=data, root=root).levels[0]
    return {k: level[k] for k in ("early_stop_step", "early_stop_test_accuracy", "final_test_accuracy")}


def stats(rows: list[dict], key: str) -> dict:
    vals = [r[key] for r in rows]
    return {"mean": statistics.fmean(vals), "min": min(vals), "max": max(vals)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1")
    ap.add_argument("--steps", type=int, default=50_000)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "lenet_accuracy.json")
    ap.add_argument("--runs-dir", type=Path, default=None, help="ticketlab run store (default: a fresh temp dir)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tmp = tempfile.TemporaryDirectory(prefix="lenet_bench_") if args.runs_dir is None else None
    root = Path(tmp.name) if tmp else args.runs_dir
    data = load_dataset(build_config({"dataset": {"name": "fashion_mnist"}}).dataset)

    runs: dict[str, list[dict]] = {"ticketlab": [], "handwritten": []}
    for seed in range(args.seeds):
        for name in runs:  # alternate the two variants
            began = time.perf_counter()
            if name == "ticketlab":
                r = with_ticketlab(data, seed, args.steps, args.eval_every, root)
            else:
                r = handwritten(data, seed, args.steps, args.eval_every)
            r = {"seed": seed, **r, "seconds": time.perf_counter() - began}
            runs[name].append(r)
            print(f"seed {seed} {name:11s} es_step {r['early_stop_step']:6d} es_acc {100 * r['early_stop_test_accuracy']:.2f}"
                  f" final_acc {100 * r['final_test_accuracy']:.2f} {r['seconds']:.1f}s", flush=True)
    if tmp:
        tmp.cleanup()

    keys = ["early_stop_step", "early_stop_test_accuracy", "final_test_accuracy", "seconds"]
    summary = {name: {k: stats(rows, k) for k in keys} for name, rows in runs.items()}
    diff = {k: 100 * (summary["ticketlab"][k]["mean"] - summary["handwritten"][k]["mean"])
            for k in ("early_stop_test_accuracy", "final_test_accuracy")}
    ok = diff["early_stop_test_accuracy"] >= -TOLERANCE_PP

    fmt = {"early_stop_step": "{:.0f}", "seconds": "{:.1f}"}
    print(f"\nLeNet-300-100 / Fashion-MNIST, {args.steps} steps, eval every {args.eval_every}, "
          f"seeds 0..{args.seeds - 1}, {args.threads} thread(s); accuracies in %")
    heads = ["es_step", "es_test_acc", "final_test_acc", "wall_s"]
    print(f"{'variant':12s} {'row':8s}" + "".join(f"{h:>15s}" for h in heads))
    for name, rows in runs.items():
        labelled = [(f"seed {r['seed']}", r) for r in rows]
        labelled += [(s, {k: summary[name][k][s] for k in keys}) for s in ("mean", "min", "max")]
        for label, r in labelled:
            cells = [fmt.get(k, "{:.2f}").format(r[k] if k in fmt else 100 * r[k]) for k in keys]
            print(f"{name:12s} {label:8s}" + "".join(f"{c:>15s}" for c in cells))
    print(f"ticketlab - handwritten (mean): early-stop acc {diff['early_stop_test_accuracy']:+.2f} pp, "
          f"final acc {diff['final_test_accuracy']:+.2f} pp")
    print(f"ticketlab at least as accurate (mean early-stop acc >= handwritten - {TOLERANCE_PP} pp): "
          f"{'YES' if ok else 'NO'}")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"protocol": {"steps": args.steps, "eval_every": args.eval_every,
                                                 "seeds": args.seeds, "threads": args.threads},
                                    "runs": runs, "summary": summary, "diff_pp": diff,
                                    "tolerance_pp": TOLERANCE_PP, "at_least_as_accurate": ok}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
