"""Network-steps per second of a population (training/population.py: N LeNet-300-100s stacked, vmap over the
module, one fused Adam) against one plain loop (training/loop.py's step: forward, cross-entropy, backward, masked
gradients, fused Adam, masked weights) run for each of the N networks in turn; batch 60, Adam 1.2e-3.

For N = 1, 2, 4, ... up to --max-n, the two alternate for --repeats rounds (ABAB) and the medians are kept; a
size whose population measurement took longer than --cap seconds is the last one (CPU). Then it projects the
full LTH LeNet protocol (5 replicates x 16 levels (0..15) x (ticket + reinit + random_prune) x 50,000 steps;
the levels run one after the other, so each level is one population of 15 networks) from the measured rates.

--level-run also times one whole level end to end through the grouping executor (run_study with
--population): the 5 dense runs (level 0), then level 1 of the 5 replicates with their reinit and
random_prune controls (one population of 15), --steps steps each (50,000 for the real figure: GPU machine).

Run (from /work/main):
    .venv/bin/python bench/population.py                       # CPU, a few minutes
    .venv/bin/python bench/population.py --device cuda --level-run --steps 50000   # the GPU figure
Smoke run:  .venv/bin/python bench/population.py --max-n 4 --steps 20 --level-run --level-steps 30
"""

import ticketlab  # noqa: F401, I001  (first: sets OMP_WAIT_POLICY before torch loads)

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from ticketlab import Mask, build_model
from ticketlab.config import ModelHparams, TrainingHparams
from ticketlab.training.optim import build_optimizer
from ticketlab.training.population import _apply, _member_loss, _stacked_optimizer, _Stack

BATCH, LR, STEPS = 60, 1.2e-3, 50_000
PROTOCOL = {"replicates": 5, "levels": 16, "variants": 3}  # ticket + reinit + random_prune per level
RESULTS = Path(__file__).parent / "results"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _models(n: int, device: torch.device) -> list[nn.Module]:
    hp = ModelHparams(name="lenet_300_100")
    return [build_model(hp, (1, 28, 28), 10, seed).to(device) for seed in range(n)]


def _data(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(6000, 1, 28, 28, generator=g).to(device), torch.randint(0, 10, (6000,), generator=g).to(device)


def time_population(n: int, steps: int, x: torch.Tensor, y: torch.Tensor, device: torch.device) -> float:
    """Seconds per population step of n members (after a warm-up)."""
    models = _models(n, device)
    masks = [Mask.ones(m) for m in models]
    stack = _Stack(models, masks)
    names = [k for k, _ in models[0].named_parameters()]
    opt = _stacked_optimizer(stack, names, TrainingHparams(lr=LR, batch_size=BATCH))
    base = models[0].to("meta")
    loss_fn = torch.func.vmap(_member_loss(base))
    g = torch.Generator(device=device).manual_seed(1)

    def step() -> None:
        idx = torch.randint(0, len(x), (n, BATCH), generator=g, device=device)
        loss = loss_fn(stack.params, stack.buffers, x[idx], y[idx])
        opt.zero_grad(set_to_none=False)
        loss.sum().backward()
        _apply(stack, grads=True)
        opt.step()
        _apply(stack, grads=False)

    return _seconds_per_step(step, steps, device)


def _seconds_per_step(step, steps: int, device: torch.device) -> float:  # noqa: ANN001
    """Wall seconds per call of `step` after 3 warm-up calls (device work included)."""
    for _ in range(3):
        step()
    _sync(device)
    began = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return (time.perf_counter() - began) / steps


def time_plain(steps: int, x: torch.Tensor, y: torch.Tensor, device: torch.device) -> float:
    """Seconds per step of one network with the loop's step (masks multiplied into every layer's gradients and
    weights, as at a pruned level; the population does the same)."""
    model = _models(1, device)[0]
    opt = build_optimizer(model, TrainingHparams(lr=LR, batch_size=BATCH))
    params = [m.weight for m in model.modules() if isinstance(m, nn.Linear)]
    masks = [torch.ones_like(p) for p in params]
    g = torch.Generator(device=device).manual_seed(1)

    def step() -> None:
        idx = torch.randint(0, len(x), (BATCH,), generator=g, device=device)
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=False)
        loss.backward()
        torch._foreach_mul_([p.grad for p in params], masks)
        opt.step()
        with torch.no_grad():
            torch._foreach_mul_(params, masks)

    return _seconds_per_step(step, steps, device)


def sizes(args: argparse.Namespace, x: torch.Tensor, y: torch.Tensor, device: torch.device) -> list[dict]:
    rows = []
    n = 1
    while n <= args.max_n:
        pop, plain = [], []
        began = time.perf_counter()
        for _ in range(args.repeats):  # alternating, so drifts in the machine's load hit both alike
            pop.append(time_population(n, args.steps, x, y, device))
            plain.append(time_plain(args.steps, x, y, device))
        pop_rate = n / statistics.median(pop)  # network-steps/s
        plain_rate = 1 / statistics.median(plain)  # one network at a time: the same for every n
        row = {"n": n, "population_network_steps_per_s": pop_rate, "plain_network_steps_per_s": plain_rate,
               "speedup": pop_rate / plain_rate, "seconds": time.perf_counter() - began}
        rows.append(row)
        print(f"N={n:5d}  population {pop_rate:10.1f} net-steps/s  plain {plain_rate:8.1f}  "
              f"x{row['speedup']:.2f}  ({row['seconds']:.1f}s)", flush=True)
        if device.type == "cpu" and row["seconds"] > args.cap:
            break
        n *= 2
    return rows


def project(rows: list[dict]) -> dict:
    """The whole protocol's wall time. Serial: every network-step at the plain rate. Population: the levels run
    one after another, each one population of replicates x variants (15), whose step takes what a measured
    population of the next size up (16) takes; if none that large was measured (CPU cap), populations of the
    largest measured size, ceil(15 / n) of them per level."""
    import math

    per_level = PROTOCOL["replicates"] * PROTOCOL["variants"]
    networks = per_level * PROTOCOL["levels"]
    plain = rows[0]["plain_network_steps_per_s"]
    at = next((r for r in rows if r["n"] >= per_level), rows[-1])
    population_steps_per_s = at["population_network_steps_per_s"] / at["n"]
    level_seconds = math.ceil(per_level / at["n"]) * STEPS / population_steps_per_s
    return {"networks": networks, "steps_each": STEPS, "population_per_level": per_level,
            "measured_size_used": at["n"], "serial_hours": networks * STEPS / plain / 3600,
            "population_hours": PROTOCOL["levels"] * level_seconds / 3600}


def level_run(args: argparse.Namespace, device: torch.device) -> dict:
    """One level end to end through the grouping executor: 5 dense runs, then level 1 + reinit + random_prune."""
    from ticketlab import build_config, run_study
    from ticketlab.experiments.study import StudyPlan, parse_controls

    dataset = "fashion_mnist" if Path("/usr/share/datasets/fashion-mnist").exists() else "synthetic"
    base = {"kind": "lottery", "model": {"name": "lenet_300_100"}, "dataset": {"name": dataset},
            "training": {"train_steps": args.level_steps}}
    out = {"dataset": dataset, "steps": args.level_steps}
    with tempfile.TemporaryDirectory() as root:
        common = {"root": root, "device": str(device), "population": args.population}
        for name, levels, controls in (("dense_level_seconds", 0, ()),
                                       ("level_1_seconds", 1, tuple(parse_controls("reinit,random_prune")))):
            config = build_config({**base, "lottery": {"levels": levels}})
            plan = StudyPlan(config, replicates=PROTOCOL["replicates"], controls=controls, control_levels=(1,))
            _sync(device)
            began = time.perf_counter()
            run_study(plan, **common)
            _sync(device)
            out[name] = time.perf_counter() - began
            print(f"{name}: {out[name]:.1f}s ({args.level_steps} steps each)", flush=True)
    out["protocol_projected_hours"] = (out["dense_level_seconds"] + 15 * out["level_1_seconds"]) \
        * (STEPS / args.level_steps) / 3600
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--max-n", type=int, default=1024)
    p.add_argument("--steps", type=int, default=200, help="timed steps per measurement")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--cap", type=float, default=20.0, help="CPU: stop after the size whose measurement took longer")
    p.add_argument("--level-run", action="store_true")
    p.add_argument("--level-steps", type=int, default=STEPS)
    p.add_argument("--population", default="auto", help="for --level-run: auto, off or N")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    device = torch.device(args.device)
    torch.set_num_threads(1)
    x, y = _data(device)
    result = {"device": args.device if device.type == "cpu" else torch.cuda.get_device_name(device),
              "threads": torch.get_num_threads(), "batch": BATCH, "steps_per_measurement": args.steps,
              "repeats": args.repeats, "sizes": sizes(args, x, y, device)}
    result["projection"] = project(result["sizes"])
    print(json.dumps(result["projection"], indent=1))
    if args.level_run:
        result["level_run"] = level_run(args, device)
    RESULTS.mkdir(exist_ok=True)
    path = Path(args.out) if args.out else RESULTS / f"population_{device.type}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
