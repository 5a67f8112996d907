"""`lottery`, `train`, `stability` and `reproduce`: studies of one config (experiments/study.py)."""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

from ..config import MAX_LEVELS, RunConfig
from ..configure import build_config
from ..data import DATASETS
from ..errors import TicketlabError
from .flags import add_run_flags, add_runtime_flags, config_layers, refuse_given
from .runtime import check_replicates, launch_from_args
from .tables import print_files

MAX_POINTS = 10_000  # stability --points


def add_parsers(sub: Any) -> None:
    lo = sub.add_parser("lottery", help="iterative magnitude pruning with rewinding")
    add_run_flags(lo, lottery=True, controls=True)
    lo.set_defaults(handler=run)
    tr = sub.add_parser("train", help="train one dense network, or a ticket file's subnetwork (--ticket)")
    add_run_flags(tr, lottery=False)
    tr.add_argument("--ticket", metavar="FILE", help="train this ticket (export --format safetensors) under the "
                    "recipe given here")
    tr.add_argument("--ticket-start", choices=["stored", "own"], help="with --ticket: stored: the file's "
                    "weights at its start step (default); own: this model's initial weights at step 0")
    tr.set_defaults(handler=run)
    st = sub.add_parser("stability", help="instability analysis: error barrier between two copies trained "
                        "from the state at step k with different data orders")
    add_run_flags(st, lottery=True)
    st.add_argument("--steps", default="0", help="comma list of split steps k (e.g. 0,25,100,500,2000)")
    st.add_argument("--at-levels", help="levels to analyse, e.g. 0 or 0-3,7 (default 0 to --levels); at (k, L > 0) the "
                    "mask is level L of IMP with rewinding to k (Frankle et al. 2020, section 5)")
    st.add_argument("--points", type=int, default=30, help="points along the path (default 30)")
    st.add_argument("--threshold", type=float, default=0.02, help="stable below this test barrier (default 0.02)")
    st.add_argument("--train-eval-size", type=int, default=10_000, help="training examples evaluated per point")
    st.add_argument("--no-bn-recompute", action="store_true", help="keep batch-norm statistics of the ends")
    st.add_argument("--figure-dir", help="where the sweep's figure and tables go, outside the run store "
                    "(default ./stability_<experiment>)")
    st.set_defaults(handler=stability)
    rp = sub.add_parser("reproduce", help="a paper's experiment in one command, with its report")
    rp.add_argument("recipe", help="lth-lenet")
    rp.add_argument("--dataset", default="fashion_mnist", help=f"the data set; one of: {', '.join(DATASETS)} "
                    "(default: fashion_mnist)")
    rp.add_argument("--budget", choices=["quick", "full"], default="quick",
                    help="quick: minutes on 2 cores, says so in the report; full: the paper's protocol")
    rp.add_argument("--report-dir", help="report folder, outside the run store (default ./report_<experiment>)")
    add_runtime_flags(rp)
    rp.set_defaults(handler=reproduce)


def config_from_args(args: argparse.Namespace, kind: str) -> RunConfig:
    return build_config(config_layers(args, kind))


def levels_arg(spec: str | None, flag: str = "--control-levels") -> tuple[int, ...] | None:
    """'all' | '1-3,5' -> level numbers (each in [0, MAX_LEVELS], ranges low-high)."""
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


def _controls(args: argparse.Namespace) -> tuple:
    from ..experiments.study import parse_controls

    if args.command != "lottery" or not args.controls:
        return ()
    try:
        scales = tuple(float(x) for x in args.noise_scales.split(",")) if args.noise_scales else (0.5, 1, 2, 3)
    except ValueError:
        raise TicketlabError(f"--noise-scales: cannot read {args.noise_scales!r} (e.g. 0.5,1,2,3)") from None
    if not all(0 < x < float("inf") for x in scales):
        raise TicketlabError(f"--noise-scales: each scale must be > 0 and finite, got {args.noise_scales!r}")
    return parse_controls(args.controls, args.control_reps, scales)


def run(args: argparse.Namespace) -> int:
    """lottery and train: one StudyPlan (or a ticket file's mask), its levels or aggregated table."""
    from ..experiments.study import LOTTERY, TICKET, StudyPlan, run_study, train_ticket

    launch = launch_from_args(args)
    if getattr(args, "ticket_start", None) and not args.ticket:
        raise TicketlabError("--ticket-start needs --ticket FILE")
    config = config_from_args(args, args.command)
    plan = StudyPlan(config, replicates=args.replicates, controls=_controls(args),
                     control_levels=levels_arg(getattr(args, "control_levels", None)))
    check_replicates(plan.replicates)
    if plan.control_levels is not None and args.controls:
        top = config.lottery.levels if config.kind == "lottery" else 0
        beyond = [lvl for lvl in plan.control_levels if lvl > top]
        if beyond:
            raise TicketlabError(f"--control-levels names level(s) {', '.join(map(str, beyond))}, but this run has "
                                 f"levels 0-{top}")
    keywords = launch.keywords(plan.replicates > 1 or bool(plan.controls))
    if getattr(args, "ticket", None):
        result = train_ticket(config, args.ticket, replicates=args.replicates, start=args.ticket_start or "stored",
                              **keywords)
    else:
        result = run_study(plan, **keywords)
    experiment = TICKET if getattr(args, "ticket", None) else LOTTERY
    print(json.dumps(experiment.to_json(result)) if args.json else experiment.table(result))
    warn_checks(result.replicates)
    return 0


def warn_checks(replicates: dict[int, dict[str, Any]]) -> None:
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


def stability(args: argparse.Namespace) -> int:
    from ..experiments.stability_sweep import STABILITY, stability_sweep

    launch = launch_from_args(args)
    try:
        steps = [int(x) for x in args.steps.split(",")]
    except ValueError:
        raise TicketlabError(f"--steps: cannot read {args.steps!r} (e.g. 0,25,100,500,2000)") from None
    layers = config_layers(args, "lottery")
    if args.at_levels is not None:
        refuse_given(layers, {"lottery.levels": "--at-levels names the levels trained and analysed"})
    config = build_config(layers)
    levels = levels_arg(args.at_levels, "--at-levels") or tuple(range(config.lottery.levels + 1))
    if args.points > MAX_POINTS:
        raise TicketlabError(f"--points must be at most {MAX_POINTS:,} (each point is an evaluation), got "
                             f"{args.points:,}")
    check_replicates(args.replicates)
    sweep = stability_sweep(config, steps, list(levels), replicates=args.replicates, points=args.points,
                            threshold=args.threshold, train_eval_size=args.train_eval_size,
                            recompute_bn=not args.no_bn_recompute, out=args.figure_dir, **launch.keywords())
    print(json.dumps(STABILITY.to_json(sweep)) if args.json else STABILITY.table(sweep))
    return 0


def reproduce(args: argparse.Namespace) -> int:
    from ..experiments.reproduce import reproduce as run_recipe

    launch = launch_from_args(args)
    _, files = run_recipe(args.recipe, dataset=args.dataset, budget=args.budget, report_dir=args.report_dir,
                          **launch.keywords())
    print_files(files)
    return 0
