"""ticketlab: find, check and study lottery tickets on any nn.Module.

The library is the product; the `ticketlab` command is a thin layer over these calls.
"""

import os

# Idle OpenMP threads sleep instead of spinning. With spinning (the default), a 2-thread job on a machine
# where anything else runs slows down ~40x (measured: 10 vs 560 steps/s for LeNet on 2 cores). It must be
# set before torch loads its OpenMP runtime, hence here, before the first torch import.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .config import DatasetHparams, LotteryHparams, ModelHparams, PruningHparams, RunConfig, TrainingHparams
from .configure import build_config
from .data import DataSplits, load_dataset
from .errors import TicketlabError
from .jobs import Job, RunOptions, register_kind
from .masks import Mask, prunable
from .models import build_model, register_model
from .pruning import (keep_top_k, prune, register_allocation, register_schedule, register_scorer)
from .training.loop import TrainResult, train
from . import experiments  # noqa: F401  (registers every job kind, in this process and in workers)
from .experiments.study import LotteryResult, StudyPlan, run_lottery, run_study

__version__ = "0.1.0"

__all__ = ["DatasetHparams", "LotteryHparams", "ModelHparams", "PruningHparams", "RunConfig", "TrainingHparams",
           "build_config", "DataSplits", "load_dataset", "TicketlabError", "Job", "RunOptions", "register_kind",
           "Mask", "prunable", "build_model", "register_model", "keep_top_k", "prune", "register_allocation",
           "register_schedule", "register_scorer", "TrainResult", "train", "LotteryResult", "StudyPlan",
           "run_lottery", "run_study"]
