"""Errors raised by the edge runner. The CLI prints them as one line, ``Error: <message>``."""


class EdgeError(Exception):
    """A problem the user can fix; the message names the problem and the fix."""


class BundleError(EdgeError):
    """The bundle is missing, malformed, tampered with, or of an unknown schema version."""


class RuntimeTooOld(EdgeError):
    """The installed interpreter cannot run an artifact (op-version skew)."""
