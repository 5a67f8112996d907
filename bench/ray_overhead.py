"""What the Ray executor costs per job over the local executor, on the same 2-worker sweep.

Two sweeps, each run from a fresh empty run root (every job really trains; the script checks each wrote its
summary) and timed as a user waits for it (planning, data loading, worker start-up, store writes, read-back):
  tiny:  --tiny-jobs dense runs of mlp_32_16 on the synthetic task (200 steps; independent jobs);
  lenet: LeNet-300-100 on Fashion-MNIST, --lenet-replicates seeds x 2 levels (level 1 waits on level 0),
         --lenet-steps steps per level.
Each sweep runs
  local: run_study(plan, workers=2): the LocalExecutor, 2 spawned worker processes x 1 thread;
  ray:   run_study(plan, executor="ray", address=...): a Ray cluster already running on this machine
         (`ray start --head --num-cpus=2`, started once by this script), which each sweep connects to and
         leaves as the CLI would: its worker processes start fresh for every sweep, as local's do.
local and ray alternate (ABBA) for --repeats rounds; the table gives medians and the overhead per job,
(median ray - median local) / jobs. For context, the script also times once what `--executor ray` without
--address adds on top: starting and stopping a Ray instance in this process (ray.init + ray.shutdown).

Both need both cores: other CPU-bound work on the machine distorts this (the log says the load average).
Run (from /work/main; ~3 min on 2 cores):
    .venv/bin/python bench/ray_overhead.py 2>&1 | tee bench/results/ray_overhead.log
"""

import ticketlab  # noqa: F401, I001  (first: sets OMP_WAIT_POLICY before torch loads)

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from ticketlab import build_config
from ticketlab.experiments.study import StudyPlan, run_study

OUT = Path(__file__).parent / "results" / "ray_overhead.json"


def timed(plan: StudyPlan, mode: str, address: str, expected: int) -> float:
    root = tempfile.mkdtemp(prefix="ticketlab_rayb_")
    try:
        how = {"workers": 2} if mode == "local" else {"executor": "ray", "address": address}
        t = time.perf_counter()
        run_study(plan, root=root, threads=1, **how)
        seconds = time.perf_counter() - t
        done = len([p for p in Path(root).rglob("summary.json") if not p.parent.is_symlink()])
        if done != expected:
            raise RuntimeError(f"{mode}: expected {expected} finished jobs, found {done} in {root}")
        return seconds
    finally:
        shutil.rmtree(root, ignore_errors=True)


def start_head(temp: str) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = Path(temp) / "head.log"
    head = subprocess.Popen([str(Path(sys.executable).parent / "ray"), "start", "--head", f"--port={port}",
                             "--node-ip-address=127.0.0.1", "--num-cpus=2", "--include-dashboard=false",
                             f"--object-store-memory={100 * 1024 * 1024}", "--disable-usage-stats",
                             f"--temp-dir={temp}", "--block"], stdout=open(log, "w"), stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while "block forever" not in log.read_text():
        if head.poll() is not None or time.time() > deadline:
            raise RuntimeError("ray start failed:\n" + log.read_text())
        time.sleep(0.2)
    return head, f"127.0.0.1:{port}"


def local_instance_seconds() -> float:
    import ray

    t = time.perf_counter()
    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=100 * 1024 * 1024,
             logging_level="warning")
    ray.shutdown()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny-jobs", type=int, default=8)
    ap.add_argument("--lenet-replicates", type=int, default=2, help="x 2 levels each")
    ap.add_argument("--lenet-steps", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=3, help="alternating rounds of local and ray per sweep")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()

    tiny = StudyPlan(build_config({"kind": "train", "seed": 0, "dataset": {"name": "synthetic", "val_size": 500},
                                   "model": {"name": "mlp_32_16"},
                                   "training": {"train_steps": 200, "eval_every": 50, "batch_size": 32}}),
                     replicates=args.tiny_jobs)
    lenet = StudyPlan(build_config({"kind": "lottery", "seed": 0, "lottery": {"levels": 1},
                                    "training": {"train_steps": args.lenet_steps, "eval_every": 100}}),
                      replicates=args.lenet_replicates)
    sweeps = {"tiny": (tiny, args.tiny_jobs), "lenet": (lenet, 2 * args.lenet_replicates)}

    os.environ.update({"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token",
                       "RAY_AUTH_TOKEN": uuid.uuid4().hex + uuid.uuid4().hex})
    temp = tempfile.mkdtemp(prefix="tlrayb")
    print(f"load average before: {os.getloadavg()[0]:.2f}", flush=True)
    head, address = start_head(temp)
    secs: dict[str, dict[str, list[float]]] = {name: {"local": [], "ray": []} for name in sweeps}
    try:
        timed(StudyPlan(tiny.config, replicates=1), "local", address, 1)  # warm-up of this process
        for name, (plan, jobs) in sweeps.items():
            for r in range(args.repeats):
                for mode in (["local", "ray"] if r % 2 == 0 else ["ray", "local"]):
                    secs[name][mode].append(timed(plan, mode, address, jobs))
                    print(f"  {name} round {r + 1} {mode}: {secs[name][mode][-1]:.1f}s", flush=True)
    finally:
        head.terminate()  # `ray start --block` stops what it started
        head.wait(timeout=60)
        shutil.rmtree(temp, ignore_errors=True)
    instance = local_instance_seconds()

    print(f"\n2 workers (2 CPUs) x 1 thread per job; median of {args.repeats} alternating rounds; "
          f"load average after: {os.getloadavg()[0]:.2f}")
    head_row = f"{'sweep':<44}{'local s':>9}{'ray s':>9}{'overhead/job s':>16}"
    print(head_row + "\n" + "-" * len(head_row))
    result = {"args": vars(args), "seconds": secs, "sweeps": {}}
    for name, (plan, jobs) in sweeps.items():
        med = {m: statistics.median(v) for m, v in secs[name].items()}
        per_job = (med["ray"] - med["local"]) / jobs
        label = (f"tiny: {jobs} dense mlp_32_16 jobs, 200 steps" if name == "tiny" else
                 f"lenet: {plan.replicates} seeds x 2 levels, {args.lenet_steps} steps")
        print(f"{label:<44}{med['local']:>9.1f}{med['ray']:>9.1f}{per_job:>16.2f}")
        result["sweeps"][name] = {"jobs": jobs, "median_seconds": med, "overhead_per_job_seconds": per_job}
    print(f"\n--executor ray without --address also starts and stops a Ray instance: {instance:.1f}s per run")
    result["local_ray_instance_start_stop_seconds"] = instance
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
