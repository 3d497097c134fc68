"""Errors a user can act on: each message names the file, row or setting and says what to change."""


class LitDPOError(Exception):
    """Base class for expected failures; the CLI prints these without a traceback."""


class DataError(LitDPOError):
    """A preference row or data source is unusable."""


class RowError(DataError):
    """One row is malformed: ``where`` names the file and row, ``reason`` says what is wrong.

    ``reason`` carries no row-specific values, so rows dropped with ``on_bad_row: skip`` can be
    counted by it; ``detail`` (shown in the message) does.
    """

    def __init__(self, where: str, reason: str, detail: str = "") -> None:
        self.where, self.reason, self.detail = where, reason, detail
        super().__init__(f"{where}: {reason}{detail}")


class ConfigError(LitDPOError):
    """A combination of settings cannot work."""


class ModelSourceError(LitDPOError):
    """A model name resolves to nothing loadable."""


class NonFiniteError(LitDPOError):
    """The loss, a gradient or a weight of training became NaN or infinite."""
