"""Errors the CA raises for configuration the operator must fix."""


class CAConfigError(Exception):
    """The CA files given or found on disk cannot be used; the message says which and why."""
