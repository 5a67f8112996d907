"""ticketlab: find, check and study lottery tickets on any nn.Module.

The library is the product; the `ticketlab` command is a thin layer over these calls.
"""

from .config import (DatasetHparams, LotteryHparams, ModelHparams, PruningHparams, RunConfig, TrainingHparams,
                     build_config)
from .data import DataSplits, load_dataset
from .errors import TicketlabError
from .experiments.lottery import LotteryResult, run_lottery
from .masks import Mask, prunable
from .models import build_model
from .pruning import keep_top_k, magnitude_prune
from .training.loop import TrainResult, train

__version__ = "0.1.0"

__all__ = ["DatasetHparams", "LotteryHparams", "ModelHparams", "PruningHparams", "RunConfig", "TrainingHparams",
           "build_config", "DataSplits", "load_dataset", "TicketlabError", "LotteryResult", "run_lottery", "Mask",
           "prunable", "build_model", "keep_top_k", "magnitude_prune", "TrainResult", "train"]
