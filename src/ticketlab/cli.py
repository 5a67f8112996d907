"""The `ticketlab` command: argument parsing and printing only; every command is one library call."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .config import RunConfig, build_config, load_toml, merge
from .errors import TicketlabError

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
    "levels": ("lottery", "levels"), "rewind_step": ("lottery", "rewind_step"),
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not a usage dump
        self.exit(2, f"ticketlab: error: {message} (see ticketlab {self.prog.split()[-1]} --help)\n")


def _add_run_flags(p: argparse.ArgumentParser, lottery: bool) -> None:
    p.add_argument("--model", help="lenet_300_100, mlp_<w1>_<w2>_.., conv2, conv4, conv6 (default lenet_300_100)")
    p.add_argument("--dataset", help="fashion_mnist (default), mnist, cifar10, synthetic")
    p.add_argument("--config", metavar="FILE", help="TOML file with [dataset] [model] [training] [pruning] "
                   "[lottery] tables; flags override it")
    p.add_argument("--seed", type=int, help="replicate seed: initialisation and data order (default 0)")
    p.add_argument("--train-steps", help="steps per level: 50000, 50000it, 20ep, 1ep10it (default: model preset)")
    p.add_argument("--eval-every", help="steps between evaluations on validation and test (default 100)")
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
        p.add_argument("--strategy", choices=["layerwise", "global"])
        p.add_argument("--prune-rate", type=float, help="fraction of surviving weights pruned per level")
        p.add_argument("--output-rate", type=float, help="rate for the output layer (paper: half the rate)")
        p.add_argument("--conv-rate", type=float, help="rate for conv layers (layer-wise)")
    p.add_argument("--data-dir", help="folder holding the data set's files")
    p.add_argument("--no-download", action="store_true", help="never download missing data")
    p.add_argument("--out", default=None, help="run store root (default ./runs or $TICKETLAB_RUNS)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N")
    p.add_argument("--threads", type=int, help="torch threads for this process")
    p.add_argument("--checkpoint-every", type=int, default=1000, help="steps between resumable checkpoints")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object on stdout")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="ticketlab", description="Find, check and study lottery tickets.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_run_flags(sub.add_parser("lottery", help="iterative magnitude pruning with rewinding"), lottery=True)
    _add_run_flags(sub.add_parser("train", help="train one dense network"), lottery=False)
    return p


def config_from_args(args: argparse.Namespace, kind: str) -> RunConfig:
    from .data import dataset_info

    layers: dict[str, Any] = load_toml(args.config) if args.config else {}
    flags: dict[str, Any] = {"kind": kind}
    if args.seed is not None:
        flags["seed"] = args.seed
    for flag, (section, key) in FLAG_FIELDS.items():
        value = getattr(args, flag, None)
        if value is not None:
            flags.setdefault(section, {})[key] = value
    merged = merge(layers, flags)
    return build_config(merged, steps_per_epoch=_steps_per_epoch(merged, dataset_info))


def _steps_per_epoch(merged: dict[str, Any], dataset_info: Any) -> int | None:
    """Epoch-denominated durations ('2ep') need the training set and batch sizes; None if unknowable yet."""
    from .config import DatasetHparams, preset_for

    ds = merged.get("dataset", {})
    model = merged.get("model", {}).get("name", "lenet_300_100")
    training = merge(preset_for(str(model)), merged).get("training", {})
    try:
        n = dataset_info(ds.get("name", DatasetHparams.name)).train_size - int(ds.get("val_size", 5000))
        return max(1, n // int(training.get("batch_size", 60)))
    except (TicketlabError, TypeError, ValueError):
        return None


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


def _table(levels: list[dict[str, Any]]) -> str:
    def pct(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:.2f}"

    rows = [("level", "% weights left", "early-stop step", "test acc @ early stop %", "final test acc %")]
    rows += [(str(s["level"]), f"{100 * s['density']:.1f}", str(s["early_stop_step"] if s["early_stop_step"] is not
              None else "-"), pct(s["early_stop_test_accuracy"]), pct(s["final_test_accuracy"])) for s in levels]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows)


def run(args: argparse.Namespace) -> int:
    import torch

    from .experiments.lottery import run_lottery
    from .store import DEFAULT_ROOT

    if args.threads:
        torch.set_num_threads(args.threads)
    config = config_from_args(args, args.command)
    result = run_lottery(config, root=args.out or DEFAULT_ROOT, data_dir=args.data_dir, device=args.device,
                         progress=_progress(args.quiet or args.json), download=not args.no_download,
                         checkpoint_every=args.checkpoint_every)
    keys = ("level", "density", "layer_density", "early_stop_step", "early_stop_test_accuracy", "final_test_accuracy")
    if args.json:
        print(json.dumps({"run_dir": str(result.run_dir), "levels": [{k: s[k] for k in keys} for s in result.levels]}))
    else:
        print(_table(result.levels))
        print(f"run folder: {result.run_dir}")
        for s in result.levels:
            if s["checks"]["collapsed_layers"]:
                print(f"warning: level {s['level']} has collapsed layers (no weight left): "
                      f"{', '.join(s['checks']['collapsed_layers'])}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return run(args)
    except TicketlabError as e:
        print(f"ticketlab: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ticketlab: interrupted; rerun the same command to resume where it stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
