"""The cost of a subset-sum construction (existence/, Pensia et al. 2020) on this machine.

Part 1, error against width factor: a fixed 2-4-2 target (the weights of tests/test_existence.py), width
factors 2..48 at seed 0, each built at that width (no search): the measured sup-norm error and the bound.
Part 2, the smallest width factor meeting eps (the search) for eps in {1e-1, 1e-2, 1e-3}, seeds 0..2.
Part 3, time per construction as the target grows: random d-d-d targets (weights U[-1, 1] / d, seeded), eps 1e-2.

    .venv/bin/python bench/existence_cost.py [--out bench/existence_cost.json]
        [--figure docs/existence/error_vs_width.png] [--sizes 2,4,8,16]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from ticketlab.existence import build
from ticketlab.existence.targets import Layer

W1 = np.array([[0.5, -0.3], [0.2, 0.8], [-0.6, 0.1], [0.4, 0.4]])
W2 = np.array([[0.3, -0.5, 0.2, 0.1], [-0.2, 0.4, 0.6, -0.3]])
SMALL = [Layer(W1, np.zeros(4)), Layer(W2, np.zeros(2))]


def random_target(d: int, seed: int = 0) -> list[Layer]:
    rng = np.random.default_rng(seed)
    return [Layer(rng.uniform(-1, 1, (d, d)) / d, np.zeros(d)) for _ in range(2)]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="bench/existence_cost.json")
    p.add_argument("--figure", default="docs/existence/error_vs_width.png")
    p.add_argument("--sizes", default="2,4,8,16")
    args = p.parse_args()
    out: dict = {"fixed_width": [], "search": [], "sizes": []}
    for n in range(2, 49, 2):  # eps only sets the tolerance, unused at a fixed width: the error is the answer
        _, rep = build(SMALL, 1e-3, seed=0, width_factor=n, samples=5000)
        out["fixed_width"].append({k: rep[k] for k in ("width_factor", "sup_error", "bound", "kept", "seconds")})
        print(f"width {n:3d}  sup error {rep['sup_error']:.3e}  bound {rep['bound']:.3e}  kept {rep['kept']}")
    for eps in (1e-1, 1e-2, 1e-3):
        for seed in range(3):
            _, rep = build(SMALL, eps, seed=seed, samples=5000)
            row = {k: rep[k] for k in ("eps", "seed", "width_factor", "sup_error", "bound", "kept", "source_weights",
                                       "log2_dl_over_eps", "seconds")}
            row["milp"], row["problems"] = rep["solves"]["milp"], rep["solves"]["problems"]
            out["search"].append(row)
            print(f"eps {eps:g} seed {seed}: width factor {rep['width_factor']}  error {rep['sup_error']:.2e}  "
                  f"bound {rep['bound']:.2e}  kept {rep['kept']}/{rep['source_weights']}  {rep['seconds']:.2f} s")
    for d in (int(s) for s in args.sizes.split(",")):
        start = time.perf_counter()
        _, rep = build(random_target(d), 1e-2, seed=0, samples=2000)
        row = {"d": d, "target_weights": rep["target_weights"], "width_factor": rep["width_factor"],
               "problems_last_try": rep["solves"]["problems"], "tries": len(rep["tries"]),
               "sup_error": rep["sup_error"], "bound": rep["bound"], "kept": rep["kept"],
               "source_weights": rep["source_weights"], "seconds": time.perf_counter() - start}
        out["sizes"].append(row)
        print(f"d {d:3d}: {row['target_weights']} target weights, width factor {row['width_factor']}, "
              f"{row['tries']} tries, {row['seconds']:.2f} s, error {row['sup_error']:.2e}")
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    figure(out, Path(args.figure))


def figure(out: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    rows = out["fixed_width"]
    ax.semilogy([r["width_factor"] for r in rows], [r["sup_error"] for r in rows], "o-", label="measured sup error")
    ax.semilogy([r["width_factor"] for r in rows], [r["bound"] for r in rows], "s--", label="bound (per-weight errors)")
    for eps, colour in zip((1e-1, 1e-2, 1e-3), ("C2", "C3", "C4")):
        ax.axhline(eps, color=colour, lw=0.8)
        found = [r["width_factor"] for r in out["search"] if r["eps"] == eps]
        ax.plot(found, [eps] * len(found), "v", color=colour, ms=9, label=f"search's width, eps {eps:g} (3 seeds)")
    ax.set_xlabel("width factor n (intermediate neurons per target input)")
    ax.set_ylabel("sup-norm error on [-1, 1]^2")
    ax.set_title("subset-sum construction of a 2-4-2 target (seed 0)")
    ax.legend(fontsize=7)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
