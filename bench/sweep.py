"""Wall time of a whole small sweep: one process with 2 threads vs the local executor's 2 workers x 1 thread.

The sweep: LeNet-300-100 on Fashion-MNIST, --replicates seeds x (--levels + 1) IMP levels, --steps steps per
level, validation (and test, --test-every 0 = at every evaluation) every --eval-every steps. Run as
  (i)  `run_study(plan, workers=1, root=...)` in this process with threads=2 per job: one job at a time;
  (ii) `run_study(plan, workers=2, root=...)`: LocalExecutor, 2 spawned worker processes x 1 thread.
This process is warmed up first by a tiny study (workers pay their own start-up). Each run starts from a
fresh empty run root (so every job really trains; the script checks that every level wrote its summary) and
includes everything a user would wait for: data loading, process start-up, store writes and the final
read-back. (i) and (ii) alternate (ABBA order) for --repeats rounds; the table gives median wall time and the
ratio (i)/(ii) (> 1: the workers are faster). Target: ratio >= 1.3.
For context it also times one job alone (one dense level, run_lottery, data already loaded) with 1 and with
2 threads, alternating for --context-repeats rounds: the most a second thread gives one small job.

Both modes need both cores, so other CPU-bound work distorts this benchmark (2-thread OpenMP suffers most).
Linux autogroup scheduling makes `nice` of a process in another session ineffective against this one; to
give this run priority over such (deliberately niced) background jobs, start it in its own session with a
raised group priority, as the recorded run was:
    setsid nohup bash -c 'echo -10 > /proc/self/autogroup && exec .venv/bin/python bench/sweep.py' \
        > bench/results/sweep.log 2>&1 < /dev/null &

Plain rerun (from /work/main; ~5 min on 2 cores):
    nohup .venv/bin/python bench/sweep.py > bench/results/sweep.log 2>&1 &
Smoke run:  .venv/bin/python bench/sweep.py --quick
"""

import ticketlab  # noqa: F401, I001  (first: sets OMP_WAIT_POLICY before torch loads)

import argparse
import dataclasses
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path


from ticketlab import build_config, load_dataset, run_lottery
from ticketlab.config import DatasetHparams
from ticketlab.experiments.study import StudyPlan, run_study

TARGET = 1.3
OUT = Path(__file__).parent / "results" / "sweep.json"


def timed_study(plan: StudyPlan, workers: int) -> tuple[float, float]:
    """(wall seconds, mean early-stop test accuracy of the last level) of the plan in a fresh run root."""
    root = tempfile.mkdtemp(prefix="ticketlab_sweep_")
    try:
        t = time.perf_counter()
        # (i) one process, 2 threads per job; (ii) 2 workers, 1 thread per job (threads are per job now)
        result = run_study(plan, workers=workers, root=root, threads=2 if workers == 1 else 1)
        seconds = time.perf_counter() - t
        done = len(list(Path(root).rglob("summary.json")))
        expected = plan.replicates * (plan.config.lottery.levels + 1)
        if done != expected:
            raise RuntimeError(f"expected {expected} trained levels, found {done} in {root}")
        last = [rep["levels"][-1]["early_stop_test_accuracy"] for rep in result.replicates.values()]
        return seconds, statistics.mean(last)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def timed_single_job(config, data, threads: int) -> float:
    root = tempfile.mkdtemp(prefix="ticketlab_job_")
    try:
        t = time.perf_counter()
        run_lottery(dataclasses.replace(config, lottery=dataclasses.replace(config.lottery, levels=0)),
                    data=data, root=root, threads=threads)
        return time.perf_counter() - t
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replicates", type=int, default=4)
    ap.add_argument("--levels", type=int, default=2, help="pruning levels after level 0")
    ap.add_argument("--steps", type=int, default=1500, help="training steps per level")
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--test-every", type=int, default=0, help="0: test at every evaluation (the default schedule)")
    ap.add_argument("--repeats", type=int, default=3, help="alternating rounds of (i) and (ii)")
    ap.add_argument("--context-repeats", type=int, default=3, help="alternating rounds of the 1- vs 2-thread job")
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 seeds x 2 levels, 300 steps, 1 round")
    ap.add_argument("--out", default=None, help="JSON file (default: results/sweep.json)")
    args = ap.parse_args()
    if args.quick:
        args.replicates, args.levels, args.steps, args.repeats, args.context_repeats = 2, 1, 300, 1, 1

    config = build_config({"kind": "lottery", "seed": 0, "lottery": {"levels": args.levels},
                           "training": {"train_steps": args.steps, "eval_every": args.eval_every,
                                        "test_every": args.test_every}})
    plan = StudyPlan(config=config, replicates=args.replicates)
    jobs = args.replicates * (args.levels + 1)

    # Warm-up of this process (lazy torch imports, first-call allocations: ~1 s once); workers pay their own.
    timed_study(dataclasses.replace(plan, replicates=1, config=build_config(
        {"kind": "lottery", "lottery": {"levels": 0}, "training": {"train_steps": 20, "eval_every": 10}})), 1)
    secs = {"i": [], "ii": []}
    accs = {"i": [], "ii": []}
    for r in range(args.repeats):
        for key in (["i", "ii"] if r % 2 == 0 else ["ii", "i"]):
            s, acc = timed_study(plan, 1 if key == "i" else 2)
            secs[key].append(s)
            accs[key].append(acc)
            print(f"  round {r + 1} ({key}): {s:.1f}s", flush=True)

    data = load_dataset(DatasetHparams())
    single = {1: [], 2: []}
    timed_single_job(config, data, 1)  # warm-up
    for r in range(args.context_repeats):
        for threads in ([1, 2] if r % 2 == 0 else [2, 1]):
            single[threads].append(timed_single_job(config, data, threads))

    med = {k: statistics.median(v) for k, v in secs.items()}
    ratio = med["i"] / med["ii"]
    pair_ratios = [a / b for a, b in zip(secs["i"], secs["ii"])]
    one = {k: statistics.median(v) for k, v in single.items()}
    gain = one[1] / one[2]
    print(f"\nSweep: {args.replicates} replicates x {args.levels + 1} levels = {jobs} jobs of LeNet-300-100, "
          f"{args.steps} steps each, eval every {args.eval_every}; median of {args.repeats} alternating rounds")
    head = f"{'mode':<44}{'median s':>10}{'jobs/min':>10}{'runs (s)':>24}"
    print(head + "\n" + "-" * len(head))
    labels = {"i": "(i)  workers=1, 1 process x 2 threads", "ii": "(ii) workers=2, 2 processes x 1 thread"}
    for key, label in labels.items():
        runs = " ".join(f"{s:.1f}" for s in secs[key])
        print(f"{label:<44}{med[key]:>10.1f}{jobs / med[key] * 60:>10.1f}{runs:>24}")
    print(f"\nratio (i)/(ii) = {ratio:.3f}  (median of per-round ratios {statistics.median(pair_ratios):.3f})")
    print(f"mean last-level early-stop test accuracy: (i) {accs['i'][-1]:.4f}, (ii) {accs['ii'][-1]:.4f}")
    print(f"\nContext, one job alone (one level, {args.steps} steps, data loaded), median of {args.context_repeats}:")
    print(f"  1 thread {one[1]:.2f}s, 2 threads {one[2]:.2f}s -> a second thread gives {gain:.2f}x")
    print(f"  (ii)'s ideal over (i) if workers scaled perfectly: ~{2 / gain:.2f}x")
    met = ratio >= TARGET
    print(f"TARGET ratio (i)/(ii) >= {TARGET}: {'MET' if met else 'MISSED'} ({ratio:.3f}, "
          f"{(ratio / TARGET - 1) * 100:+.1f}% vs target)")
    out = Path(args.out) if args.out else OUT.with_name("sweep_quick.json" if args.quick else OUT.name)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(
        {"args": vars(args), "jobs": jobs, "seconds": secs, "median_seconds": med, "ratio": ratio,
         "pair_ratios": pair_ratios, "last_level_accuracy": accs, "single_job_seconds": single,
         "single_job_median": one, "second_thread_gain": gain,
         "target": {"min_ratio": TARGET, "value": ratio, "met": met}}, indent=2))


if __name__ == "__main__":
    main()
