"""The `ticketlab` command: argument parsing and printing only; every command is one library call."""

from __future__ import annotations

import argparse
import errno
import json
import os
import re
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from .config import RunConfig, load_toml, merge
from .configure import build_config
from .errors import TicketlabError
from .pruning import ALLOCATIONS

MAX_REPLICATES = 10_000  # sane bounds: more is a typo (and would take minutes just to plan)
MAX_PROCESSES = 1024  # --workers, --threads
MAX_POINTS = 10_000  # stability --points

# flag -> (section, key); a flag left unset leaves the preset/config file value alone.
FLAG_FIELDS = {
    "model": ("model", "name"), "init": ("model", "init"), "dropout": ("model", "dropout"),
    "dataset": ("dataset", "name"), "val_size": ("dataset", "val_size"),
    "train_steps": ("training", "train_steps"), "eval_every": ("training", "eval_every"),
    "optimizer": ("training", "optimizer"), "lr": ("training", "lr"), "batch_size": ("training", "batch_size"),
    "momentum": ("training", "momentum"), "weight_decay": ("training", "weight_decay"),
    "warmup_steps": ("training", "warmup_steps"),
    "strategy": ("pruning", "strategy"), "prune_rate": ("pruning", "rate"),
    "output_rate": ("pruning", "output_rate"), "conv_rate": ("pruning", "conv_rate"),
    "levels": ("lottery", "levels"), "rewind_step": ("lottery", "rewind_step"), "retrain": ("lottery", "retrain"),
    "finetune_lr": ("lottery", "finetune_lr"), "test_every": ("training", "test_every"),
    "width": ("model", "width"), "label_noise": ("dataset", "label_noise"), "noise_type": ("dataset", "noise_type"),
    "noise_seed": ("dataset", "noise_seed"), "subsample": ("dataset", "subsample"),
}


def _at_least_one(text: str) -> int:
    """argparse type of a count that must be a whole number >= 1 (replicates, draws, threads)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return value


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not a usage dump
        self.exit(2, f"ticketlab: error: {message} (see ticketlab {self.prog.split()[-1]} --help)\n")


def _add_common_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", help="folder holding the data set's files")
    p.add_argument("--no-download", action="store_true", help="never download missing data")
    p.add_argument("--out", default=None, help="run store root (default ./runs or $TICKETLAB_RUNS)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N")
    p.add_argument("--threads", type=_at_least_one, default=1, help="torch threads per job (default 1). Results "
                   "are stored per thread count: other counts change their last bits")
    p.add_argument("--executor", choices=["local", "ray"], default="local", help="local: processes on this "
                   "machine (--workers); ray: one Ray task per job on a Ray cluster (pip install 'ticketlab[ray]')")
    p.add_argument("--address", default=None, help="with --executor ray: the cluster, auto or HOST:PORT (default: "
                   "a Ray instance started here with --workers CPUs); --out must be on a file system every "
                   "machine of the cluster sees at the same path")
    p.add_argument("--workers", default="auto", help="parallel worker processes for independent jobs "
                   "(replicates, controls); auto: one per core when there are such jobs, else 1")
    p.add_argument("--population", default="auto", help="auto (default), off or N: ready jobs of one model and "
                   "recipe (replicates, controls, methods at one level) train as one population of up to N "
                   "networks in this process; auto: on CUDA, as many as fit; on a CPU off (measured no faster)")
    p.add_argument("--checkpoint-every", type=_at_least_one, default=1000,
                   help="steps between resumable checkpoints (default 1000)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object on stdout")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _add_run_flags(p: argparse.ArgumentParser, lottery: bool) -> None:
    p.add_argument("--model", help="lenet_300_100, mlp_<w1>_<w2>_.., conv2, conv4, conv6 (default lenet_300_100)")
    p.add_argument("--dataset", help="fashion_mnist (default), mnist, cifar10, synthetic")
    p.add_argument("--config", metavar="FILE", help="TOML file with [dataset] [model] [training] [pruning] "
                   "[lottery] tables; flags override it")
    p.add_argument("--seed", type=int, help="replicate seed: initial weights, data order and every draw derive "
                   "from it (default 0)")
    p.add_argument("--train-steps", help="steps per level: 50000, 50000it, 20ep, 1ep10it (default: model preset)")
    p.add_argument("--eval-every", help="steps between evaluations on validation and test (default 100)")
    p.add_argument("--test-every", help="steps between test evaluations (default: every evaluation); the "
                   "early-stopping step's test accuracy stays exact")
    p.add_argument("--val-size", type=int, help="validation examples held out of the training set (default 5000)")
    p.add_argument("--optimizer", choices=["adam", "sgd"])
    p.add_argument("--lr", type=float)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--momentum", type=float)
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--warmup-steps")
    p.add_argument("--init", help="glorot_normal (default), glorot_uniform, kaiming_normal, kaiming_uniform")
    p.add_argument("--dropout", type=float)
    p.add_argument("--width", type=float, help="multiplies every hidden width / channel count of lenet, mlp_.., "
                   "conv2/4/6 (rounded, at least 1; default 1)")
    p.add_argument("--label-noise", type=float, help="fraction of training labels changed (exactly round(p n); "
                   "validation and test labels never; default 0)")
    p.add_argument("--noise-type", choices=["symmetric", "pairflip", "asymmetric"],
                   help="symmetric: a random other class (default); pairflip: c -> c+1; asymmetric: confusable classes")
    p.add_argument("--noise-seed", type=int, help="which labels change (default 0; the same for every replicate)")
    p.add_argument("--subsample", type=int, help="training examples kept after the validation split, a seeded "
                   "subset (default 0: all)")
    if lottery:
        p.add_argument("--levels", type=int, help="pruning rounds after the dense level 0")
        p.add_argument("--rewind-step", help="rewind survivors to this step of the dense run (default 0: init)")
        p.add_argument("--retrain", choices=["rewind", "lr_rewind", "finetune", "scratch"],
                       help="how pruned levels retrain (default rewind: the LTH)")
        p.add_argument("--finetune-lr", type=float, help="LR of --retrain finetune (default: the schedule's last)")
        p.add_argument("--strategy", help="how survivors are allocated to layers: a registered allocation "
                       f"({', '.join(ALLOCATIONS)}; default: the model's preset)")
        p.add_argument("--prune-rate", type=float, help="fraction of surviving weights pruned per level")
        p.add_argument("--output-rate", type=float, help="rate for the output layer (paper: half the rate)")
        p.add_argument("--conv-rate", type=float, help="rate for conv layers (layer-wise)")
        p.add_argument("--controls", help="comma list of reinit, sign_reinit, random_prune, shuffle, noise, "
                       "oneshot: branches of each level trained like the ticket")
        p.add_argument("--control-reps", type=_at_least_one, default=1, help="draws of each random control per "
                       "replicate (oneshot is deterministic: always one)")
        p.add_argument("--noise-scales", help="noise control scales x layer init std (default 0.5,1,2,3)")
        p.add_argument("--control-levels", help="levels to branch controls from: all (default) or e.g. 1-3,5")
    p.add_argument("--replicates", type=_at_least_one, default=1, help="seeds seed, seed+1, ... (default 1)")
    _add_common_flags(p)


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="ticketlab", description="Find, check and study lottery tickets.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_run_flags(sub.add_parser("lottery", help="iterative magnitude pruning with rewinding"), lottery=True)
    tr = sub.add_parser("train", help="train one dense network, or a ticket file's subnetwork (--ticket)")
    _add_run_flags(tr, lottery=False)
    tr.add_argument("--ticket", metavar="FILE", help="train this ticket (export --format safetensors) under the "
                    "recipe given here")
    tr.add_argument("--ticket-start", choices=["stored", "own"], help="with --ticket: stored: the file's "
                    "weights at its start step (default); own: this model's initial weights at step 0")
    st = sub.add_parser("stability", help="instability analysis: error barrier between two copies trained "
                        "from the state at step k with different data orders")
    _add_run_flags(st, lottery=True)
    st.add_argument("--steps", default="0", help="comma list of split steps k (e.g. 0,25,100,500,2000)")
    st.add_argument("--at-levels", help="levels to analyse, e.g. 0 or 0-3,7 (default 0 to --levels); at (k, L > 0) the "
                    "mask is level L of IMP with rewinding to k (Frankle et al. 2020, section 5)")
    st.add_argument("--points", type=int, default=30, help="points along the path (default 30)")
    st.add_argument("--threshold", type=float, default=0.02, help="stable below this test barrier (default 0.02)")
    st.add_argument("--train-eval-size", type=int, default=10_000, help="training examples evaluated per point")
    st.add_argument("--no-bn-recompute", action="store_true", help="keep batch-norm statistics of the ends")
    st.add_argument("--figure-dir", help="where the sweep's figure and tables go, outside the run store "
                    "(default ./stability_<experiment>)")
    rep = sub.add_parser("report", help="HTML/Markdown report, figures and tables from stored runs")
    rep.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="experiment folders or their seed_<s> folders")
    rep.add_argument("--out", help="report folder, outside the run store (default ./report_<experiment>)")
    rep.add_argument("--spread", choices=["minmax", "std"], default="minmax", help="error bars (default min/max)")
    rep.add_argument("--title")
    fmt = rep.add_mutually_exclusive_group()
    fmt.add_argument("--csv", action="store_true", help="also print the aggregated table as CSV")
    fmt.add_argument("--json", action="store_true", help="also print the aggregated table as JSON")
    ex = sub.add_parser("export", help="write a ticket (one level of a run) as a portable file")
    ex.add_argument("run_dir", metavar="RUN", help="a replicate folder (.../seed_<s>) or an experiment folder "
                    "with one replicate")
    ex.add_argument("--level", type=int, required=True)
    ex.add_argument("--format", choices=["safetensors", "dense", "torch-prune", "sparse"], default="safetensors")
    ex.add_argument("--out", help="file or folder, outside the run store (default: ./ticket_level_<L>.<ext> "
                    "in the current folder)")
    ex.add_argument("--batch-size", type=_at_least_one, default=256,
                    help="sparse: the inference batch to optimise for")
    rp = sub.add_parser("reproduce", help="a paper's experiment in one command, with its report")
    rp.add_argument("recipe", help="lth-lenet")
    rp.add_argument("--dataset", default="fashion_mnist")
    rp.add_argument("--budget", choices=["quick", "full"], default="quick",
                    help="quick: minutes on 2 cores, says so in the report; full: the paper's protocol")
    rp.add_argument("--report-dir", help="report folder, outside the run store (default ./report_<experiment>)")
    _add_common_flags(rp)
    cp = sub.add_parser("compare", help="IMP, pruning at initialisation and random masks at the same densities, "
                        "trained alike, with their sanity checks and a report")
    _add_run_flags(cp, lottery=True)
    cp.add_argument("--methods", default="imp,snip,grasp,synflow,magnitude,random,random-erk",
                    help="comma list of imp, snip, grasp, synflow, magnitude, random, random-erk, random-balanced, "
                    "random-pyramidal (default: all but the last two)")
    cp.add_argument("--densities", default="0.2,0.05,0.01", help="weights kept, each in (0, 1) (default "
                    "0.2,0.05,0.01); IMP is read at its nearest ladder level")
    cp.add_argument("--checks", default="shuffle,reinit,invert", help="sanity checks of every method: shuffle, "
                    "reinit, invert, or none (default all three)")
    cp.add_argument("--report-dir", help="report folder, outside the run store (default ./compare_<model>_<dataset>)")
    _add_strong_parsers(sub)  # strong, plant, seek (strong and planted tickets)
    vf = sub.add_parser("verify", help="check a run store: damaged or missing files, leftovers, dangling links")
    vf.add_argument("path", metavar="PATH", help="a store root, experiment, replicate or job folder")
    vf.add_argument("--json", action="store_true", help="print the problems as a JSON list")
    sw = sub.add_parser("sweep", help="dense runs (or IMP with --levels) over the cross product of settings x seeds, "
                        "with figures of test and train error, the interpolation threshold and sparse double descent")
    _add_run_flags(sw, lottery=True)
    sw.add_argument("--over", action="append", metavar="SECTION.FIELD=V1,V2,..", help="a setting and its values, "
                    "e.g. model.width=0.25,0.5,1,2 or dataset.label_noise=0,0.2 (repeat for a cross product)")
    sw.add_argument("--tolerance", type=float, default=0.005, help="training error counted as interpolating "
                    "(default 0.005)")
    sw.add_argument("--report-dir", help="report folder, outside the run store (default ./sweep_<model>_<dataset>)")
    return p


def config_from_args(args: argparse.Namespace, kind: str) -> RunConfig:
    return build_config(layers_from_args(args, kind))


def layers_from_args(args: argparse.Namespace, kind: str) -> dict[str, Any]:
    """The TOML file and the flags as given, merged, unresolved (durations still e.g. "2ep")."""
    layers: dict[str, Any] = load_toml(args.config) if args.config else {}
    flags: dict[str, Any] = {"kind": kind}
    if args.seed is not None:
        flags["seed"] = args.seed
    for flag, (section, key) in FLAG_FIELDS.items():
        value = getattr(args, flag, None)
        if value is not None:
            flags.setdefault(section, {})[key] = value
    return merge(layers, flags)


def _progress(quiet: bool):  # noqa: ANN202
    if quiet:
        return None
    from tqdm import tqdm

    bars: dict[str, Any] = {}

    def update(label: str, step: int, total: int) -> None:
        bar = bars.get(label)
        if bar is None:
            bar = bars[label] = tqdm(total=total, initial=step - 1, desc=label, unit="step", file=sys.stderr,
                                     leave=False, mininterval=0.5)
        bar.update(step - bar.n)
        if step == total:
            bar.close()

    return update


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}"


def _align(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows)


def _level_table(levels: list[dict[str, Any]]) -> str:
    rows = [("level", "% weights left", "early-stop step", "test acc @ early stop %", "final test acc %")]
    for s in levels:
        if s.get("status") == "diverged":  # no accuracy to show: where it stopped instead
            rows.append((str(s["level"]), f"{100 * s['density']:.1f}", f"diverged at step {s['diverged_at_step']}",
                         "-", "-"))
            continue
        rows.append((str(s["level"]), f"{100 * s['density']:.1f}", str(s["early_stop_step"] if s["early_stop_step"]
                     is not None else "-"), _pct(s["early_stop_test_accuracy"]), _pct(s["final_test_accuracy"])))
    return _align(rows)


def _study_table(table: list[dict[str, Any]]) -> str:
    rows = [("level", "% weights left", "variant", "n", "early-stop step", "test acc @ early stop % [min, max]",
             "final test acc %", "matching")]
    for e in table:
        es, acc, fin = e["early_stop_step"], e["early_stop_test_accuracy"], e["final_test_accuracy"]
        verdict = {True: "yes", False: "no", None: "-"}[e["matching"]]
        n = f"{e['n']} (+{e['diverged']} diverged)" if e.get("diverged") else str(e["n"])
        rows.append((str(e["level"]), f"{100 * e['density']:.1f}", e["variant"], n,
                     "-" if es["mean"] is None else f"{es['mean']:.0f}",
                     f"{_pct(acc['mean'])} [{_pct(acc['min'])}, {_pct(acc['max'])}]", _pct(fin["mean"]), verdict))
    return _align(rows)


def _levels(spec: str | None, flag: str = "--control-levels") -> tuple[int, ...] | None:
    """'all' | '1-3,5' -> level numbers (each in [0, MAX_LEVELS], ranges low-high)."""
    from .config import MAX_LEVELS

    if spec is None or spec == "all":
        return None
    out: list[int] = []
    for part in spec.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not m:
            raise TicketlabError(f"{flag}: cannot read {spec!r} (use all, or e.g. 1-3,5)")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if lo > hi or hi > MAX_LEVELS:
            raise TicketlabError(f"{flag}: {part.strip()!r} is not a range of levels low-high within "
                                 f"[0, {MAX_LEVELS:,}] (e.g. 1-3,5)")
        out += range(lo, hi + 1)
    return tuple(sorted(set(out)))


def _workers(value: str, parallel_work: bool) -> int:
    if value == "auto":
        return (os.cpu_count() or 1) if parallel_work else 1
    if not re.fullmatch(r"[0-9]+", value) or not 1 <= int(value) <= MAX_PROCESSES:
        raise TicketlabError(f"--workers must be auto or a whole number in [1, {MAX_PROCESSES}], got {value!r}")
    return int(value)


def _check_out(root: Path | str) -> None:
    """The run store's root must be a folder this process can write (or one it can make): said in one line
    before anything is loaded, trained or written."""
    path = Path(root)
    existing = next(a for a in (path, *path.absolute().parents) if a.exists())
    if not existing.is_dir():
        where = "it is a file" if existing == path else f"{existing} is a file"
        raise TicketlabError(f"cannot write {path}: {where}, not a folder")
    if hasattr(os, "ST_RDONLY") and os.statvfs(existing).f_flag & os.ST_RDONLY:
        raise TicketlabError(f"cannot write {path}: {os.strerror(errno.EROFS)}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise TicketlabError(f"cannot write {path}: {os.strerror(errno.EACCES)}")


def _run_options(args: argparse.Namespace) -> dict[str, Any]:
    """run_study's keyword arguments from the common flags; the store's root is checked here."""
    from .store import DEFAULT_ROOT

    if args.threads > MAX_PROCESSES:
        raise TicketlabError(f"--threads must be at most {MAX_PROCESSES}, got {args.threads:,}")
    _check_out(args.out or DEFAULT_ROOT)
    return {"root": args.out or DEFAULT_ROOT, "data_dir": args.data_dir, "device": args.device,
            "threads": args.threads, "progress": _progress(args.quiet or args.json),
            "download": not args.no_download, "checkpoint_every": args.checkpoint_every,
            "executor": args.executor, "address": args.address, "population": args.population}


def _check_device(args: argparse.Namespace) -> None:
    """The device must exist on this machine: said before any data are loaded or folder is written."""
    from .jobs import parse_device

    parse_device(args.device)


def run(args: argparse.Namespace) -> int:
    from .experiments.study import StudyPlan, parse_controls, run_study, train_ticket
    from .report.aggregate import aggregate, collect

    _check_device(args)
    if getattr(args, "ticket_start", None) and not args.ticket:
        raise TicketlabError("--ticket-start needs --ticket FILE")
    config = config_from_args(args, args.command)
    controls = ()
    if args.command == "lottery" and args.controls:
        try:
            scales = tuple(float(x) for x in args.noise_scales.split(",")) if args.noise_scales else (0.5, 1, 2, 3)
        except ValueError:
            raise TicketlabError(f"--noise-scales: cannot read {args.noise_scales!r} (e.g. 0.5,1,2,3)") from None
        if not all(0 < x < float("inf") for x in scales):
            raise TicketlabError(f"--noise-scales: each scale must be > 0 and finite, got {args.noise_scales!r}")
        controls = parse_controls(args.controls, args.control_reps, scales)
    plan = StudyPlan(config, replicates=args.replicates, controls=controls,
                     control_levels=_levels(getattr(args, "control_levels", None)))
    _check_replicates(plan.replicates)
    if plan.control_levels is not None and args.controls:
        top = config.lottery.levels if config.kind == "lottery" else 0
        beyond = [lvl for lvl in plan.control_levels if lvl > top]
        if beyond:
            raise TicketlabError(f"--control-levels names level(s) {', '.join(map(str, beyond))}, but this run has "
                                 f"levels 0-{top}")
    workers = _workers(args.workers, plan.replicates > 1 or bool(plan.controls))
    if getattr(args, "ticket", None):
        result = train_ticket(config, args.ticket, replicates=args.replicates, start=args.ticket_start or "stored",
                              workers=workers, **_run_options(args))
    else:
        result = run_study(plan, workers=workers, **_run_options(args))
    first = result.replicates[plan.seeds[0]]
    run_dir = first["run_dir"]
    keys = ("level", "density", "layer_density", "status", "diverged_at_step", "early_stop_step",
            "early_stop_test_accuracy", "final_test_accuracy")
    simple = plan.replicates == 1 and not plan.controls
    table = None if simple else aggregate(collect([r["run_dir"] for r in result.replicates.values()]))
    if args.json:
        out: dict[str, Any] = {"run_dir": str(run_dir),
                               "levels": [{k: s.get(k) for k in keys} for s in first["levels"]]}
        if not simple:
            out |= {"experiment_dir": str(result.experiment_dir), "table": table,
                    "replicates": [{"seed": seed, "run_dir": str(r["run_dir"]), "levels": r["levels"],
                                    "controls": r["controls"]} for seed, r in result.replicates.items()]}
        print(json.dumps(out))
    else:
        print(_level_table(first["levels"]) if simple else _study_table(table))
        print(f"run folder: {run_dir if simple else result.experiment_dir}")
    _warn_checks(result.replicates)
    return 0


def _check_replicates(replicates: int) -> None:
    """A sane number of replicates, said before anything is loaded or written. The seeds' range, the data
    sizes and what only the network can tell are checked by the library as it plans (run_study,
    run_compare), also before anything is written."""
    if replicates > MAX_REPLICATES:
        raise TicketlabError(f"--replicates must be at most {MAX_REPLICATES:,}, got {replicates:,}")


def _warn_checks(replicates: dict[int, dict[str, Any]]) -> None:
    """Self-check warnings on stderr; then, if any job diverged, a TicketlabError naming them (exit 2)."""
    diverged = []
    for seed, r in replicates.items():
        for s in r["levels"] + r["controls"]:
            if s["checks"]["collapsed_layers"] or not s["checks"]["counts_as_requested"]:
                print(f"warning: seed {seed} level {s['level']} {s.get('variant', 'ticket')}: "
                      f"collapsed layers {s['checks']['collapsed_layers']}, counts as requested: "
                      f"{s['checks']['counts_as_requested']}", file=sys.stderr)
            if s.get("status") == "diverged":
                what = f"seed {seed} level {s['level']}" + (f" {s['variant']}" if "variant" in s else "")
                diverged.append(f"{what} at step {s['diverged_at_step']}")
                print(f"warning: {what} diverged at step {s['diverged_at_step']}: "
                      f"{s.get('diverged_because', 'not finite')}; it has no accuracy", file=sys.stderr)
    if diverged:
        raise TicketlabError(f"{len(diverged)} job(s) diverged ({', '.join(diverged)}): their accuracies are "
                             "left out and nothing is built on them; rerun with a lower --lr")


def _print_report(files: dict[str, Path], as_json: bool, cut: str) -> None:
    """A report's JSON, or the head of its Markdown (up to `cut`) and the files written."""
    if as_json:
        print(files["json"].read_text())
        return
    print(files["md"].read_text().split(cut)[0].strip())
    for kind, path in files.items():
        print(f"{kind}: {path}")


def report(args: argparse.Namespace) -> int:
    from .report.aggregate import experiment_dirs
    from .report.html import write_report

    out = args.out or f"report_{experiment_dirs(args.run_dirs)[0][0].name}"  # never inside the run store
    files = write_report(args.run_dirs, out, spread=args.spread, title=args.title)
    if args.json:
        print(Path(files["json"]).read_text())
    elif args.csv:
        sys.stdout.write(Path(files["csv"]).read_text())
    else:
        for kind, path in files.items():
            print(f"{kind}: {path}")
    return 0


def stability(args: argparse.Namespace) -> int:
    from .experiments.stability import stability_sweep

    _check_device(args)
    try:
        steps = [int(x) for x in args.steps.split(",")]
    except ValueError:
        raise TicketlabError(f"--steps: cannot read {args.steps!r} (e.g. 0,25,100,500,2000)") from None
    config = config_from_args(args, "lottery")
    levels = _levels(args.at_levels, "--at-levels") or tuple(range(config.lottery.levels + 1))
    if args.points > MAX_POINTS:
        raise TicketlabError(f"--points must be at most {MAX_POINTS:,} (each point is an evaluation), got "
                             f"{args.points:,}")
    _check_replicates(args.replicates)
    sweep = stability_sweep(config, steps, list(levels), replicates=args.replicates, points=args.points,
                            threshold=args.threshold, train_eval_size=args.train_eval_size,
                            recompute_bn=not args.no_bn_recompute, out=args.figure_dir,
                            workers=_workers(args.workers, True), **_run_options(args))
    results = sweep["results"]
    if args.json:
        print(json.dumps({"experiment_dir": str(sweep["experiment_dir"]), "results": results,
                          "rows": sweep["rows"], "dense": sweep["dense_accuracy"]}))
        return 0
    rows = [("seed", "level", "% weights left", "k", "test barrier %", "train barrier %", "stable",
             "copies' final test acc %")]
    rows += [(str(r["seed"]), str(r["level"]), f"{100 * r['density']:.1f}", str(r["step"]), _pct(r["test_barrier"]),
              _pct(r["train_barrier"]), "yes" if r["stable"] else "no",
              ", ".join(_pct(a) for a in r["copy_final_test_accuracy"])) for r in results]
    print(_align(rows))
    print(sweep["files"]["md"].read_text(), end="")
    print(f"run folder: {sweep['experiment_dir']}")
    print(f"figure: {sweep['files']['png']}")
    return 0


def export(args: argparse.Namespace) -> int:
    from . import store
    from .export import export_ticket

    run_dir = Path(args.run_dir)
    if store.is_experiment(run_dir):  # an experiment folder: its only replicate
        seeds = store.seed_dirs(run_dir)
        if len(seeds) != 1:
            raise TicketlabError(f"{run_dir} holds {len(seeds)} replicates; name one: {run_dir}/seed_<s>")
        run_dir = seeds[0]
    path = export_ticket(run_dir, args.level, args.format, args.out or Path("."),  # never inside the run store
                         batch_size=args.batch_size)
    print(path)
    return 0


def reproduce(args: argparse.Namespace) -> int:
    from .experiments.reproduce import reproduce as run_recipe

    _check_device(args)
    _, files = run_recipe(args.recipe, dataset=args.dataset, budget=args.budget, report_dir=args.report_dir,
                          workers=_workers(args.workers, True), **_run_options(args))
    for kind, path in files.items():
        print(f"{kind}: {path}")
    return 0


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread where it arrives, as Ctrl-C raises KeyboardInterrupt: the same
    unwinding (atomic writes leave the old file or none; checkpoints stay), then one line and exit 143."""


def _on_sigterm(signum: int, frame: Any) -> None:
    import multiprocessing

    for child in multiprocessing.active_children():  # worker processes stop with us; their jobs resume later
        child.terminate()
    raise Terminated


# errno values that say a write failed for a reason the user can fix (disk full, read-only, not a folder, ...)
_WRITE_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EISDIR, errno.EEXIST,
                 errno.EFBIG, errno.ENAMETOOLONG, getattr(errno, "EDQUOT", errno.ENOSPC)}


def _io_message(e: OSError, args: argparse.Namespace) -> str:
    """An OSError as one line: 'cannot write <path>: <reason>' for a failed write; the path from the error,
    or else where this command writes."""
    from .store import DEFAULT_ROOT

    target = {"report": args.out or "the report folder", "export": args.out or "the current folder"}.get(
        args.command, args.out or DEFAULT_ROOT) if hasattr(args, "out") else None
    path = e.filename if e.filename is not None else target
    if path is not None:  # an atomic write's temporary file (.<name>.<random>.tmp): name the file it stands for
        tmp = re.fullmatch(r"\.(.+)\.[^.]+\.tmp", os.path.basename(os.fsdecode(path)))
        path = os.path.join(os.path.dirname(os.fsdecode(path)), tmp.group(1)) if tmp else path
    reason = e.strerror or " ".join(str(e).split()) or type(e).__name__
    inside = target is not None and path is not None and os.path.abspath(os.fsdecode(path)).startswith(
        os.path.abspath(os.fsdecode(target)))
    if e.errno in _WRITE_ERRNOS or e.errno is None or inside:
        return f"cannot write {path}: {reason}"
    return f"{path}: {reason}"


def compare(args: argparse.Namespace) -> int:
    from .data import dataset_info
    from .experiments.compare import run_compare
    from .report.html import check_report_dir
    from .report.methods import write_report

    _check_device(args)
    config = config_from_args(args, "lottery")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    try:
        densities = [float(d) for d in args.densities.split(",") if d.strip()]
    except ValueError:
        raise TicketlabError(f"--densities: cannot read {args.densities!r} (e.g. 0.2,0.05,0.01)") from None
    checks = () if args.checks.strip() in ("", "none") else tuple(c.strip() for c in args.checks.split(","))
    _check_replicates(args.replicates)
    out = Path(args.report_dir or f"compare_{config.model.name}_{config.dataset.name}")
    check_report_dir(out)  # before any training: the report must not land in the store
    result = run_compare(config, methods, densities, replicates=args.replicates, checks=checks,
                         workers=_workers(args.workers, True), **_run_options(args))
    title = f"{', '.join(methods)} on {config.model.name} / {config.dataset.name}"
    files = write_report(result, out, title, chance=1 / dataset_info(config.dataset.name).num_classes)
    _print_report(files, args.json, cut="\n## ")
    return 0


def sweep(args: argparse.Namespace) -> int:
    from .experiments.sweep import parse_over, plan_sweep, run_sweep
    from .report.html import check_report_dir
    from .report.sweep import write_report

    _check_device(args)
    if not args.over:
        raise TicketlabError("sweep needs at least one --over SECTION.FIELD=V1,V2,.. (e.g. model.width=0.5,1,2)")
    if args.controls:
        raise TicketlabError("sweep trains no controls: leave out --controls (use ticketlab lottery for them)")
    if not 0 <= args.tolerance < 1:
        raise TicketlabError(f"--tolerance must be in [0, 1), got {args.tolerance}")
    over = parse_over(args.over)
    layers = layers_from_args(args, "lottery")  # unresolved: each point resolves its epochs for its own data
    config = build_config(layers)
    plan_sweep(layers, over, config.lottery.levels)  # every point checked before anything is written
    _check_replicates(args.replicates)
    out = Path(args.report_dir or f"sweep_{config.model.name}_{config.dataset.name}")
    check_report_dir(out)
    result = run_sweep(layers, over, replicates=args.replicates, levels=config.lottery.levels,
                       workers=_workers(args.workers, True), **_run_options(args))
    title = f"Sweep of {config.model.name} on {config.dataset.name} over {', '.join(over)}"
    files = write_report(result, out, title, tolerance=args.tolerance)
    _print_report(files, args.json, cut="\n![")
    bad = [r for r in result.rows if r["status"] == "diverged"]
    not_run = [r for r in result.rows if r["status"] == "not run"]
    if bad or not_run:
        raise TicketlabError(f"{len(bad)} job(s) diverged and {len(not_run)} not run (built on a collapsed or "
                             "diverged job): left out of the report's means; rerun with a lower --lr")
    return 0


# ---- Strong tickets and planted tickets (experiments/strong.py, experiments/seek.py) -----------------------

def _add_strong_parsers(sub: Any) -> None:
    sp = sub.add_parser("strong", help="strong tickets: a mask learned on frozen random weights (edge-popup, "
                        "supermask) or Zhou et al.'s large_final_same_sign mask on the untrained network")
    _add_run_flags(sp, lottery=False)
    sp.add_argument("--method", choices=["edge-popup", "supermask", "lfss"], default="edge-popup",
                    help="edge-popup (top-k scores per layer), supermask (learned Bernoulli mask) or lfss "
                    "(large_final_same_sign of a trained dense run, applied to the untrained weights)")
    sp.add_argument("--k", default="0.5", help="comma list of k = the fraction of weights KEPT in each layer "
                    "(edge-popup's --prune-rate; 0.3 keeps 30%%, prunes 70%%); supermask: the starting keep "
                    "probability (default 0.5)")
    sp.add_argument("--weights", choices=["own", "signed_constant"], default="own", help="frozen weights: the "
                    "model's init (own) or the signed Kaiming constant sign(w) sqrt(2/fan_in)")
    sp.add_argument("--scale-fan", action="store_true", help="signed_constant / sqrt(k) (edge-popup's --scale-fan)")
    sp.add_argument("--report-dir", help="report folder, outside the run store (default ./strong_<method>_<model>)")
    pl = sub.add_parser("plant", help="plant a known ticket (Plant 'n' Seek) in a He-initialised MLP; store it")
    pl.add_argument("--task", choices=["circle", "relu", "helix"], required=True)
    pl.add_argument("--depth", type=int, default=5, help="layers of neurons, input and output included (default 5)")
    pl.add_argument("--width", type=int, default=50, help="hidden width (default 50)")
    pl.add_argument("--seed", type=int, default=0, help="the replicate seed whose init stream draws it (default 0)")
    pl.add_argument("--out", default=None, help="run store root (default ./runs or $TICKETLAB_RUNS)")
    pl.add_argument("--json", action="store_true", help="print the record as JSON")
    sk = sub.add_parser("seek", help="run pruning methods on a planted network: accuracy (or loss) and recovery "
                        "(precision, recall) of the planted ticket per density (--width: its hidden width, "
                        "default 50)")
    _add_run_flags(sk, lottery=True)
    sk.add_argument("--task", choices=["circle", "relu", "helix"], required=True)
    sk.add_argument("--depth", type=int, default=5, help="layers of neurons, input and output included (default 5)")
    # --width (a run flag: model.width) is read by seek as the planted network's hidden width (default 50)
    sk.add_argument("--methods", default="imp,snip,grasp,synflow,random,edge-popup",
                    help="comma list of imp, snip, grasp, synflow, random, magnitude, edge-popup")
    sk.add_argument("--densities", default="0.2,0.05,0.0204,0.01", help="weights kept, each in (0, 1)")
    sk.add_argument("--report-dir", help="report folder, outside the run store (default ./seek_<task>_<depth>_<width>)")


def _floats(text: str, flag: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise TicketlabError(f"{flag}: cannot read {text!r} (e.g. 0.1,0.5)") from None
    if not values:
        raise TicketlabError(f"{flag}: give at least one value")
    return values


def strong(args: argparse.Namespace) -> int:
    from .data import dataset_info
    from .experiments.strong import RECIPES, run_strong
    from .report.html import check_report_dir
    from .report.strong import write_report

    _check_device(args)
    layers: dict[str, Any] = load_toml(args.config) if args.config else {}
    flags: dict[str, Any] = {"kind": "train", **({"seed": args.seed} if args.seed is not None else {})}
    for flag, (section, key) in FLAG_FIELDS.items():
        if getattr(args, flag, None) is not None:
            flags.setdefault(section, {})[key] = getattr(args, flag)
    model = flags.get("model", {}).get("name") or layers.get("model", {}).get("name") or "lenet_300_100"
    from .models import preset_for
    recipe = RECIPES[args.method]  # the method's own (experiments/strong.py); flags and --config win
    config = build_config(merge(preset_for(str(model)), recipe, layers, flags))
    ks = _floats(args.k, "--k")
    _check_replicates(args.replicates)
    out = Path(args.report_dir or f"strong_{args.method}_{config.model.name}_{config.dataset.name}")
    check_report_dir(out)
    result = run_strong(config, args.method, ks, replicates=args.replicates, weights=args.weights,
                        scale_fan=args.scale_fan, workers=_workers(args.workers, True), **_run_options(args))
    info = dataset_info(config.dataset.name)
    files = write_report(result.rows, out, f"{args.method} on {config.model.name} / {config.dataset.name} "
                         f"(weights {args.weights}{', scale-fan' if args.scale_fan else ''})",
                         None if info.regression else 1 / info.num_classes)
    _print_report(files, args.json, cut="![")
    return 0


def plant(args: argparse.Namespace) -> int:
    from .experiments.seek import plant_record
    from .seeds import check_seed
    from .store import DEFAULT_ROOT

    check_seed(args.seed)
    _check_out(args.out or DEFAULT_ROOT)
    record = plant_record(args.task, args.depth, args.width, args.seed, args.out or DEFAULT_ROOT)
    if args.json:
        print(json.dumps(record, indent=2))
    else:
        print(f"planted {args.task}, depth {args.depth}, width {args.width}, seed {args.seed}: "
              f"{record['planted_weights']} of {record['weights']} weights ({100 * record['density']:.3g}%); "
              f"planted subnetwork vs target: max |difference| {record['subnetwork_vs_target_max_abs']:.3g}")
        print(f"record: {record['folder']}")
    return 0


def seek(args: argparse.Namespace) -> int:
    from .experiments.seek import model_name, run_seek
    from .report.html import check_report_dir
    from .report.seek import write_report

    _check_device(args)
    if args.model is not None or args.dataset is not None:
        raise TicketlabError("seek builds its model and data from --task, --depth and --width: drop --model/--dataset")
    width = 50 if args.width is None else args.width  # the run flag --width: here the planted hidden width
    if width != int(width) or width < 1:
        raise TicketlabError(f"--width: the planted network's hidden width must be a whole number >= 1, got {width:g}")
    args.model, args.width = model_name(args.task, args.depth, int(width)), None
    config = config_from_args(args, "lottery")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    densities = _floats(args.densities, "--densities")
    _check_replicates(args.replicates)
    out = Path(args.report_dir or f"seek_{config.model.name.removeprefix('planted_')}")
    check_report_dir(out)
    result = run_seek(config, methods, densities, replicates=args.replicates, workers=_workers(args.workers, True),
                      **_run_options(args))
    files = write_report(result, out, f"Plant 'n' Seek: {args.task}, depth {args.depth}, width {int(width)}")
    _print_report(files, args.json, cut="![")
    return 0


def verify(args: argparse.Namespace) -> int:
    from .store import verify as verify_store

    problems = verify_store(Path(args.path))
    if args.json:
        print(json.dumps(problems))
    elif problems:
        print("\n".join(problems))
        print(f"{len(problems)} problem(s) found")
    else:
        print(f"{args.path}: no problems found")
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    for name, value in vars(args).items():  # argparse turns `--flag=--` into [] (a CPython bug): one line
        if isinstance(value, list) and name not in ("run_dirs", "over"):
            flag = "--" + name.replace("_", "-")
            sys.stderr.write(f"ticketlab: error: argument {flag}: expected one argument (see ticketlab "
                             f"{args.command} --help)\n")
            return 2
    # SIGTERM (kill, a scheduler, a container stop) ends a run like Ctrl-C: one line, resumable state
    installed = threading.current_thread() is threading.main_thread()
    if installed:
        previous = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
        signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return {"lottery": run, "train": run, "report": report, "reproduce": reproduce,
                "stability": stability, "export": export, "compare": compare,
                "sweep": sweep,
                "strong": strong, "plant": plant, "seek": seek,
                "verify": verify}[args.command](args)
    except TicketlabError as e:
        print(f"ticketlab: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `ticketlab ... | head`: the reader left, nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as e:  # a full or read-only disk, --out a file, ...: once here, not at every write
        print(f"ticketlab: error: {_io_message(e, args)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:
        if installed:  # a second signal now would interrupt this line
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        name, code = ("SIGTERM", 143) if isinstance(e, Terminated) else ("SIGINT", 130)
        print(f"ticketlab: stopped by {name}; rerun the same command to resume", file=sys.stderr)
        return code
    finally:
        if installed:  # as they were (main is also called in-process, e.g. by tests)
            for signum, handler in zip((signal.SIGTERM, signal.SIGINT), previous):
                signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


if __name__ == "__main__":
    sys.exit(main())
