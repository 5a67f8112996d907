"""`python -m ticketlab.cli`: the same as the `ticketlab` command."""

import sys

from . import main

sys.exit(main())
