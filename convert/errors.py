"""The converter's error type. The CLI prints it as one line, ``Error: <message>``, and exits 1."""

from edge.errors import EdgeError


class DeployKitError(EdgeError):
    """A problem the user can fix; the message names the problem and what to do."""
