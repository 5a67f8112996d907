"""Executors: how a list of jobs is run. Same jobs, same run store, whichever executor runs them."""

from .jobs import JobSpec, RunOptions, execute, options_from
from .local import LocalExecutor, SerialExecutor

__all__ = ["JobSpec", "RunOptions", "execute", "options_from", "LocalExecutor", "SerialExecutor"]
