"""The one exception type users see: the CLI prints its message as a single line and exits non-zero."""


class TicketlabError(Exception):
    """Bad input or a missing resource, said in one line that tells the user what to do."""
