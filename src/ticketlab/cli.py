"""The `ticketlab` command: argument parsing and printing only; every command is one library call."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from .config import RunConfig, load_toml, merge
from .configure import build_config
from .errors import TicketlabError
from .pruning import ALLOCATIONS

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
    p.add_argument("--workers", default="auto", help="parallel worker processes for independent jobs "
                   "(replicates, controls); auto: one per core when there are such jobs, else 1")
    p.add_argument("--checkpoint-every", type=int, default=1000, help="steps between resumable checkpoints")
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
    st.add_argument("--at-levels", default="0", help="levels whose ticket to analyse: e.g. 0 or 0-3,7 (default 0)")
    st.add_argument("--points", type=int, default=30, help="points along the path (default 30)")
    st.add_argument("--threshold", type=float, default=0.02, help="stable below this test barrier (default 0.02)")
    st.add_argument("--train-eval-size", type=int, default=10_000, help="training examples evaluated per point")
    st.add_argument("--no-bn-recompute", action="store_true", help="keep batch-norm statistics of the ends")
    rep = sub.add_parser("report", help="HTML/Markdown report, figures and tables from stored runs")
    rep.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="experiment folders or their seed_<s> folders")
    rep.add_argument("--out", help="report folder (default RUN_DIR/report)")
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
    ex.add_argument("--out", help="file or folder (default: the level's folder)")
    ex.add_argument("--batch-size", type=int, default=256, help="sparse: the inference batch to optimise for")
    rp = sub.add_parser("reproduce", help="a paper's experiment in one command, with its report")
    rp.add_argument("recipe", help="lth-lenet")
    rp.add_argument("--dataset", default="fashion_mnist")
    rp.add_argument("--budget", choices=["quick", "full"], default="quick",
                    help="quick: minutes on 2 cores, says so in the report; full: the paper's protocol")
    rp.add_argument("--report-dir", help="report folder (default <experiment>/report)")
    _add_common_flags(rp)
    return p


def config_from_args(args: argparse.Namespace, kind: str) -> RunConfig:
    layers: dict[str, Any] = load_toml(args.config) if args.config else {}
    flags: dict[str, Any] = {"kind": kind}
    if args.seed is not None:
        flags["seed"] = args.seed
    for flag, (section, key) in FLAG_FIELDS.items():
        value = getattr(args, flag, None)
        if value is not None:
            flags.setdefault(section, {})[key] = value
    return build_config(merge(layers, flags))


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
    rows += [(str(s["level"]), f"{100 * s['density']:.1f}", str(s["early_stop_step"] if s["early_stop_step"] is not
              None else "-"), _pct(s["early_stop_test_accuracy"]), _pct(s["final_test_accuracy"])) for s in levels]
    return _align(rows)


def _study_table(table: list[dict[str, Any]]) -> str:
    rows = [("level", "% weights left", "variant", "n", "early-stop step", "test acc @ early stop % [min, max]",
             "final test acc %", "matching")]
    for e in table:
        es, acc, fin = e["early_stop_step"], e["early_stop_test_accuracy"], e["final_test_accuracy"]
        verdict = {True: "yes", False: "no", None: "-"}[e["matching"]]
        rows.append((str(e["level"]), f"{100 * e['density']:.1f}", e["variant"], str(e["n"]),
                     "-" if es["mean"] is None else f"{es['mean']:.0f}",
                     f"{_pct(acc['mean'])} [{_pct(acc['min'])}, {_pct(acc['max'])}]", _pct(fin["mean"]), verdict))
    return _align(rows)


def _levels(spec: str | None) -> tuple[int, ...] | None:
    """'all' | '1-3,5' -> level numbers."""
    if spec is None or spec == "all":
        return None
    out: list[int] = []
    try:
        for part in spec.split(","):
            lo, _, hi = part.partition("-")
            out += range(int(lo), int(hi or lo) + 1)
    except ValueError:
        raise TicketlabError(f"--control-levels: cannot read {spec!r} (use all, or e.g. 1-3,5)") from None
    return tuple(out)


def _workers(value: str, parallel_work: bool) -> int:
    import os

    if value == "auto":
        return (os.cpu_count() or 1) if parallel_work else 1
    if not value.isdigit() or int(value) < 1:
        raise TicketlabError(f"--workers must be auto or a whole number >= 1, got {value!r}")
    return int(value)


def _run_options(args: argparse.Namespace) -> dict[str, Any]:
    """run_study's keyword arguments from the common flags."""
    from .store import DEFAULT_ROOT

    return {"root": args.out or DEFAULT_ROOT, "data_dir": args.data_dir, "device": args.device,
            "threads": args.threads, "progress": _progress(args.quiet or args.json),
            "download": not args.no_download, "checkpoint_every": args.checkpoint_every}


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
        controls = parse_controls(args.controls, args.control_reps, scales)
    plan = StudyPlan(config, replicates=args.replicates, controls=controls,
                     control_levels=_levels(getattr(args, "control_levels", None)))
    workers = _workers(args.workers, plan.replicates > 1 or bool(plan.controls))
    if getattr(args, "ticket", None):
        result = train_ticket(config, args.ticket, replicates=args.replicates, start=args.ticket_start or "stored",
                              workers=workers, **_run_options(args))
    else:
        result = run_study(plan, workers=workers, **_run_options(args))
    first = result.replicates[plan.seeds[0]]
    run_dir = first["run_dir"]
    keys = ("level", "density", "layer_density", "early_stop_step", "early_stop_test_accuracy", "final_test_accuracy")
    simple = plan.replicates == 1 and not plan.controls
    table = None if simple else aggregate(collect([r["run_dir"] for r in result.replicates.values()]))
    if args.json:
        out: dict[str, Any] = {"run_dir": str(run_dir), "levels": [{k: s[k] for k in keys} for s in first["levels"]]}
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


def _warn_checks(replicates: dict[int, dict[str, Any]]) -> None:
    for seed, r in replicates.items():
        for s in r["levels"] + r["controls"]:
            if s["checks"]["collapsed_layers"] or not s["checks"]["counts_as_requested"]:
                print(f"warning: seed {seed} level {s['level']} {s.get('variant', 'ticket')}: "
                      f"collapsed layers {s['checks']['collapsed_layers']}, counts as requested: "
                      f"{s['checks']['counts_as_requested']}", file=sys.stderr)


def report(args: argparse.Namespace) -> int:
    from .report.aggregate import experiment_dirs
    from .report.html import write_report

    out = args.out or (experiment_dirs(args.run_dirs)[0][0] / "report")
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
    from .experiments.stability import StabilitySpec
    from .experiments.study import StudyPlan, run_study

    _check_device(args)
    levels = _levels(args.at_levels) or (0,)
    try:
        steps = [int(x) for x in args.steps.split(",")]
    except ValueError:
        raise TicketlabError(f"--steps: cannot read {args.steps!r} (e.g. 0,25,100,500,2000)") from None
    config = config_from_args(args, "lottery")
    specs = tuple(StabilitySpec(step=k, level=level, points=args.points, threshold=args.threshold,
                                train_eval_size=args.train_eval_size, recompute_bn=not args.no_bn_recompute)
                  for level in levels for k in steps)
    plan = StudyPlan(dataclasses.replace(config, lottery=dataclasses.replace(config.lottery, levels=0)),
                     replicates=args.replicates, stability=specs)
    result = run_study(plan, workers=_workers(args.workers, True), **_run_options(args))
    results = [r for rep in result.replicates.values() for r in rep["stability"]]
    if args.json:
        print(json.dumps({"experiment_dir": str(result.experiment_dir), "results": results}))
        return 0
    rows = [("seed", "level", "% weights left", "k", "test barrier %", "train barrier %", "stable",
             "copies' final test acc %")]
    rows += [(str(r["seed"]), str(r["level"]), f"{100 * r['density']:.1f}", str(r["step"]), _pct(r["test_barrier"]),
              _pct(r["train_barrier"]), "yes" if r["stable"] else "no",
              ", ".join(_pct(a) for a in r["copy_final_test_accuracy"])) for r in results]
    print(_align(rows))
    print(f"run folder: {result.experiment_dir}")
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
    path = export_ticket(run_dir, args.level, args.format, args.out or store.level_dir(run_dir, args.level),
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


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return {"lottery": run, "train": run, "report": report, "reproduce": reproduce,
                "stability": stability, "export": export}[args.command](args)
    except TicketlabError as e:
        print(f"ticketlab: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `ticketlab ... | head`: the reader left, nothing to report
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("ticketlab: interrupted; rerun the same command to resume where it stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
