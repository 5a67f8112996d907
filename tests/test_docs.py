"""The code in the docs runs."""

import re
from pathlib import Path

import torch

from ticketlab.pruning import SCORERS

DOCS = Path(__file__).parents[1] / "docs"


def test_the_architecture_scorer_example_runs_through_prune():
    block = re.search(r"```python\n(from ticketlab import prunable.*?)```", (DOCS / "ARCHITECTURE.md").read_text(),
                      re.S).group(1)
    model = torch.nn.Sequential(torch.nn.Linear(10, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    namespace = {"model": model}
    try:
        exec(block, namespace)
        mask = namespace["mask"]
        kept = torch.cat([model[0].weight[mask["0.weight"]], model[2].weight[mask["2.weight"]]]).abs()
        dropped = torch.cat([model[0].weight[~mask["0.weight"]], model[2].weight[~mask["2.weight"]]]).abs()
        assert sum(mask.counts().values()) == round(0.1 * 96) and kept.max() <= dropped.min()
    finally:
        SCORERS.pop("smallest", None)
