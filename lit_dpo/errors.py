"""Errors a user can act on: each message names the file, row or setting and says what to change."""


class LitDPOError(Exception):
    """Base class for expected failures; the CLI prints these without a traceback."""


class DataError(LitDPOError):
    """A preference row or data source is unusable."""


class ConfigError(LitDPOError):
    """A combination of settings cannot work."""


class ModelSourceError(LitDPOError):
    """A model name resolves to nothing loadable."""


class NonFiniteError(LitDPOError):
    """The loss, a gradient or a weight of training became NaN or infinite."""
