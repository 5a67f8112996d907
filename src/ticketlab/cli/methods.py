"""`compare`, `sweep`, `strong`, `plant` and `seek`: methods and settings side by side, each with its report."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..config import ModelHparams, merge
from ..configure import build_config
from ..errors import TicketlabError
from ..models.planted import OUTPUTS as PLANTED_OUTPUTS
from ..settings import setting_of
from ..training.supermask import METHODS as STRONG_METHODS, ROUNDINGS as STRONG_ROUNDINGS, SCALE_FAN_RULES
from .flags import add_run_flags, config_layers, refuse_given
from .runtime import check_out, check_replicates, launch_from_args
from .tables import command_of, print_report

PLANTED_TASKS = ["circle", "relu", "helix"]


def add_parsers(sub: Any) -> None:
    cp = sub.add_parser("compare", help="IMP, pruning at initialisation and random masks at the same densities, "
                        "trained alike, with their sanity checks and a report")
    add_run_flags(cp, lottery=True)
    from ..experiments.pai import METHODS as PAI
    from ..training.dynamic import METHODS as DYNAMIC

    cp.add_argument("--methods", default="imp,snip,grasp,synflow,magnitude,random,random-erk",
                    help=f"comma list of imp; pruning at init and random masks: {', '.join(PAI)} (random-erk: "
                    "RigL's ERK; random-erk-gadhikar and random-balanced: Gadhikar et al.'s rules, a layer clamped "
                    "at dense gives its excess to no one; random-balanced-reshared: shared again); sparse from the "
                    f"start: {', '.join(DYNAMIC)}; early-bird, early-bird-channel (models with batch norm; its "
                    "density is the fraction of BN channels kept) "
                    "(default: imp,snip,grasp,synflow,magnitude,random,random-erk)")
    cp.add_argument("--densities", default="0.2,0.05,0.01", help="fractions of weights KEPT, each in (0, 1) "
                    "(default 0.2,0.05,0.01); IMP is read at its nearest ladder level")
    cp.add_argument("--checks", default="shuffle,reinit,invert", help="sanity checks of every method: shuffle, "
                    "reinit, invert, or none (default all three)")
    cp.add_argument("--score-mode", choices=["eval", "train"], default="eval", help="the mode the network is in "
                    "while pruning at init scores it: eval (default, as Synaptic-Flow: batch norm's running "
                    "statistics) or train (the batch's own); it matters only with batch norm or dropout")
    cp.add_argument("--report-dir", help="report folder, outside the run store (default ./compare_<model>_<dataset>)")
    cp.set_defaults(handler=compare)
    sw = sub.add_parser("sweep", help="dense runs (or IMP with --levels) over the cross product of settings x seeds, "
                        "with figures of test and train error, the interpolation threshold and sparse double descent")
    add_run_flags(sw, lottery=True)
    sw.add_argument("--over", action="append", metavar="SECTION.FIELD=V1,V2,..", help="a setting and its values, "
                    "e.g. model.width=0.25,0.5,1,2 or dataset.label_noise=0,0.2 (repeat for a cross product)")
    sw.add_argument("--tolerance", type=float, default=0.005, help="training error counted as interpolating "
                    "(default 0.005)")
    sw.add_argument("--report-dir", help="report folder, outside the run store (default ./sweep_<model>_<dataset>)")
    sw.set_defaults(handler=sweep)
    sp = sub.add_parser("strong", help="strong tickets: a mask learned on frozen random weights (edge-popup, "
                        "supermask) or Zhou et al.'s large_final_same_sign mask on the untrained network")
    add_run_flags(sp, lottery=False)
    sp.add_argument("--method", choices=list(STRONG_METHODS), default="edge-popup",
                    help="edge-popup (top-k scores per layer), supermask (learned Bernoulli mask) or lfss "
                    "(large_final_same_sign of a trained dense run, applied to the untrained weights)")
    sp.add_argument("--k", default="0.5", help="comma list of k = the fraction of weights KEPT in each layer "
                    "(edge-popup's --prune-rate; 0.3 keeps 30%%, prunes 70%%; not ticketlab's --prune-rate, the "
                    "fraction PRUNED per IMP level); supermask: the starting keep probability (default 0.5)")
    sp.add_argument("--weights", choices=["own", "signed_constant"], default="own", help="frozen weights: the "
                    "model's init (own) or the signed Kaiming constant sign(w) sqrt(2/fan_in)")
    sp.add_argument("--scale-fan", action="store_true", help="the signed constant computed with the fan of the kept "
                    "inputs (edge-popup's --scale-fan; the rule: --scale-fan-rule)")
    sp.add_argument("--scale-fan-rule", choices=list(SCALE_FAN_RULES), default="kept", help="kept (default, the "
                    "paper: sqrt(2 / (fan_in k))) or hidden-networks (its code: sqrt(2 / (fan_in (1 - k))))")
    sp.add_argument("--bias-mask", action="store_true", help="edge-popup: a top-k mask over each layer's biases too, "
                    "with the same k (Plant 'n' Seek's edge-popup)")
    sp.add_argument("--rounding", choices=list(STRONG_ROUNDINGS), default="nearest", help="weights a layer of n keeps "
                    "at k: nearest (default, round(k n), at least 1) or hidden-networks (its GetSubnet: "
                    "n - int((1 - k) n))")
    sp.add_argument("--report-dir", help="report folder, outside the run store (default ./strong_<method>_<model>)")
    sp.set_defaults(handler=strong)
    pl = sub.add_parser("plant", help="plant a known ticket (Plant 'n' Seek) in a He-initialised MLP; store it")
    pl.add_argument("--task", choices=PLANTED_TASKS, required=True)
    pl.add_argument("--depth", type=int, default=5, help="layers of neurons, input and output included (default 5)")
    pl.add_argument("--width", type=int, default=50, help="hidden width (default 50)")
    pl.add_argument("--seed", type=int, default=0, help="the replicate seed whose init stream draws it (default 0)")
    pl.add_argument("--planted-output", choices=list(PLANTED_OUTPUTS), default="scaled",
                    help=setting_of(ModelHparams.__dataclass_fields__["planted_output"]).help + " (default scaled)")
    pl.add_argument("--out", default=None, help="run store root (default ./runs or $TICKETLAB_RUNS)")
    pl.add_argument("--json", action="store_true", help="print the record as JSON")
    pl.set_defaults(handler=plant)
    sk = sub.add_parser("seek", help="run pruning methods on a planted network: accuracy (or loss) and recovery "
                        "(precision, recall) of the planted ticket per density")
    add_run_flags(sk, lottery=True, skip=["model.width"])  # a planted network is built at its own width
    sk.add_argument("--task", choices=PLANTED_TASKS, required=True)
    sk.add_argument("--depth", type=int, default=5, help="layers of neurons, input and output included (default 5)")
    sk.add_argument("--planted-width", type=int, default=50, help="the planted network's hidden width (default 50)")
    sk.add_argument("--width", action=_Refused, nargs="?", help=argparse.SUPPRESS)
    sk.add_argument("--methods", default="imp,snip,grasp,synflow,random,edge-popup",
                    help="comma list of imp, snip, grasp, synflow, random, magnitude, edge-popup")
    sk.add_argument("--densities", default="0.2,0.05,0.0204,0.01", help="fractions of weights KEPT, each in (0, 1)")
    sk.add_argument("--edge-popup-biases", action=argparse.BooleanOptionalAction, default=True,
                    help="edge-popup also learns a top-k mask over biases with the same k, as Plant 'n' Seek's does "
                         "(default on)")
    sk.add_argument("--report-dir", help="report folder, outside the run store (default ./seek_<task>_<depth>_<width>)")
    sk.set_defaults(handler=seek)


class _Refused(argparse.Action):
    """seek --width: until this release the planted hidden width; refused, naming its new flag."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: str | None = None) -> None:
        parser.error("seek --width is now --planted-width N (the planted network's hidden width; a width "
                     "multiplier does not apply to planted networks)")


def floats_arg(text: str, flag: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise TicketlabError(f"{flag}: cannot read {text!r} (e.g. 0.1,0.5)") from None
    if not values:
        raise TicketlabError(f"{flag}: give at least one value")
    return values


def compare(args: argparse.Namespace) -> int:
    from ..data import dataset_info
    from ..experiments.compare import run_compare
    from ..report.html import check_report_dir
    from ..report.methods import write_report

    launch = launch_from_args(args)
    layers = config_layers(args, "lottery")
    refuse_given(layers, {"lottery.levels": "compare reads IMP at the level nearest each of --densities"})
    config = build_config(layers)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    try:
        densities = [float(d) for d in args.densities.split(",") if d.strip()]
    except ValueError:
        raise TicketlabError(f"--densities: cannot read {args.densities!r} (e.g. 0.2,0.05,0.01)") from None
    checks = () if args.checks.strip() in ("", "none") else tuple(c.strip() for c in args.checks.split(","))
    check_replicates(args.replicates)
    out = Path(args.report_dir or f"compare_{config.model.name}_{config.dataset.name}")
    check_report_dir(out)  # before any training: the report must not land in the store
    result = run_compare(config, methods, densities, replicates=args.replicates, checks=checks,
                         score_mode=args.score_mode, **launch.keywords())
    title = f"{', '.join(methods)} on {config.model.name} / {config.dataset.name}"
    files = write_report(result, out, title, chance=1 / dataset_info(config.dataset.name).num_classes,
                         command=command_of(args))
    print_report(files, args.json, cut="\n## ")
    return 0


def sweep(args: argparse.Namespace) -> int:
    from ..experiments.sweep import parse_over, plan_sweep, run_sweep
    from ..report.html import check_report_dir
    from ..report.sweep import write_report

    launch = launch_from_args(args)
    if not args.over:
        raise TicketlabError("sweep needs at least one --over SECTION.FIELD=V1,V2,.. (e.g. model.width=0.5,1,2)")
    if not 0 <= args.tolerance < 1:
        raise TicketlabError(f"--tolerance must be in [0, 1), got {args.tolerance}")
    over = parse_over(args.over)
    layers = config_layers(args, "lottery")  # unresolved: each point resolves its epochs for its own data
    config = build_config(layers, given={})  # a setting may apply at some points only: plan_sweep checks each
    plan_sweep(layers, over, config.lottery.levels)  # every point checked before anything is written
    check_replicates(args.replicates)
    out = Path(args.report_dir or f"sweep_{config.model.name}_{config.dataset.name}")
    check_report_dir(out)
    result = run_sweep(layers, over, replicates=args.replicates, levels=config.lottery.levels, **launch.keywords())
    title = f"Sweep of {config.model.name} on {config.dataset.name} over {', '.join(over)}"
    files = write_report(result, out, title, tolerance=args.tolerance, command=command_of(args))
    print_report(files, args.json, cut="\n![")
    bad = [r for r in result.rows if r["status"] == "diverged"]
    not_run = [r for r in result.rows if r["status"] == "not run"]
    if bad or not_run:
        raise TicketlabError(f"{len(bad)} job(s) diverged and {len(not_run)} not run (built on a collapsed or "
                             "diverged job): left out of the report's means; rerun with a lower --lr")
    return 0


def strong(args: argparse.Namespace) -> int:
    from ..data import dataset_info
    from ..experiments.strong import RECIPES, run_strong
    from ..models import preset_for
    from ..report.html import check_report_dir
    from ..report.strong import write_report

    launch = launch_from_args(args)
    layers = config_layers(args, "train")
    model = layers.get("model", {}).get("name") or "lenet_300_100"
    recipe = RECIPES[args.method]  # the method's own (experiments/strong.py); --config and flags win
    config = build_config(merge(preset_for(str(model)), recipe, layers), given=layers)
    ks = floats_arg(args.k, "--k")
    check_replicates(args.replicates)
    out = Path(args.report_dir or f"strong_{args.method}_{config.model.name}_{config.dataset.name}")
    check_report_dir(out)
    result = run_strong(config, args.method, ks, replicates=args.replicates, weights=args.weights,
                        scale_fan=args.scale_fan, scale_fan_rule=args.scale_fan_rule, bias_mask=args.bias_mask,
                        rounding=args.rounding, **launch.keywords())
    info = dataset_info(config.dataset.name)
    files = write_report(result.rows, out, f"{args.method} on {config.model.name} / {config.dataset.name} "
                         f"(weights {args.weights}{', scale-fan ' + args.scale_fan_rule if args.scale_fan else ''})",
                         None if info.regression else 1 / info.num_classes, command=command_of(args))
    print_report(files, args.json, cut="![")
    diverged = [f"seed {r['seed']} k={r['k']:g} at step {r['diverged_at_step']}" for r in result.rows
                if r["status"] == "diverged"]
    if diverged:
        raise TicketlabError(f"{len(diverged)} strong ticket(s) diverged ({', '.join(diverged)}): their accuracies "
                             "are left out; rerun with a lower --lr")
    return 0


def plant(args: argparse.Namespace) -> int:
    from ..experiments.seek import plant_record
    from ..seeds import check_seed
    from ..store import DEFAULT_ROOT

    check_seed(args.seed)
    check_out(args.out or DEFAULT_ROOT)
    record = plant_record(args.task, args.depth, args.width, args.seed, args.out or DEFAULT_ROOT,
                          args.planted_output)
    if args.json:
        print(json.dumps(record, indent=2))
    else:
        print(f"planted {args.task}, depth {args.depth}, width {args.width}, seed {args.seed}: "
              f"{record['planted_weights']} of {record['weights']} weights ({100 * record['density']:.3g}%); "
              f"planted subnetwork / output scale vs target: max |difference| "
              f"{record['subnetwork_vs_target_max_abs']:.3g}")
        print(f"output scale ({record['planted_output']}): {', '.join(f'{c:.3g}' for c in record['output_scale'])}; "
              f"largest planted weight per layer: {', '.join(f'{w:.3g}' for w in record['largest_planted_weight'])}")
        print(f"record: {record['folder']}")
    return 0


def seek(args: argparse.Namespace) -> int:
    from ..experiments.seek import model_name, run_seek
    from ..report.html import check_report_dir
    from ..report.seek import write_report

    launch = launch_from_args(args)
    if args.model is not None or args.dataset is not None:
        raise TicketlabError("seek builds its model and data from --task, --depth and --planted-width: drop "
                             "--model/--dataset")
    width = args.planted_width
    if width < 1:
        raise TicketlabError(f"--planted-width: the planted network's hidden width must be a whole number >= 1, "
                             f"got {width}")
    layers = config_layers(args, "lottery")
    layers = merge(layers, {"model": {"name": model_name(args.task, args.depth, width)}})
    config = build_config(layers)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    densities = floats_arg(args.densities, "--densities")
    check_replicates(args.replicates)
    out = Path(args.report_dir or f"seek_{config.model.name.removeprefix('planted_')}")
    check_report_dir(out)
    result = run_seek(config, methods, densities, replicates=args.replicates,
                      edge_popup_biases=args.edge_popup_biases, **launch.keywords())
    files = write_report(result, out, f"Plant 'n' Seek: {args.task}, depth {args.depth}, width {width}",
                         command=command_of(args))
    print_report(files, args.json, cut="![")
    return 0
