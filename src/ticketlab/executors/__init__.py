"""Executors: how a list of jobs is run. Same jobs, same run store, whichever executor runs them.

Executors know jobs only as data (ticketlab.jobs): they order them by their dependencies and call
`execute`; they never import an experiment module."""

from .local import LocalExecutor, SerialExecutor, ready_order

__all__ = ["LocalExecutor", "SerialExecutor", "ready_order"]
