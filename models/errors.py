"""The product's exception tree.

It lives in the lowest package so that every layer (models, workers, search, pbt, dashboards)
can raise it without an upward import. The CLI maps ``ConfigError`` to one stderr line and exit
status 2; any ``PBTError`` is a failure the user can read, never a bug report.
"""


class PBTError(Exception):
    """Root of every error this product raises on purpose."""


class ConfigError(PBTError, ValueError):
    """A config value, an argument or an input file is wrong.

    The message names the field (or file) and the problem, e.g.
    ``budget.population: must be >= 1, got 0``.
    """


class StoreError(PBTError):
    """A run directory or its SQLite store is missing, corrupt or of another version, or a write
    to it failed (and was rolled back: the store holds what was committed before it)."""
