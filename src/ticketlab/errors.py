"""The one exception type users see: the CLI prints its message as a single line and exits non-zero."""


class TicketlabError(Exception):
    """Bad input or a missing resource, said in one line that tells the user what to do."""


class Blocked(TicketlabError):
    """A job refuses to run because a job it builds on cannot be built on (it diverged, or was itself
    blocked). Executors run every other job, skip the jobs that depend on this one, then raise one
    TicketlabError listing what was not run and why."""
