"""Experiment kinds: each module registers the job kinds it computes and plans their jobs.

Importing this package registers every job kind and every experiment kind (registry.py); ticketlab's own
__init__ does, so any process that runs jobs, a spawned worker included, finds them by name."""

from . import controls, early_bird, lottery, pai, sparse, stability, tickets  # noqa: F401  (registration)
from . import seek, strong  # noqa: F401,E402  (registration: strong tickets, planted tickets)
from . import compare, reproduce, stability_sweep, study, sweep  # noqa: F401,E402  (experiment kinds)
