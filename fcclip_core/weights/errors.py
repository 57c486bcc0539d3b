"""Errors of the weights tooling; every message says what is wrong and what to do."""
from __future__ import annotations


class WeightsError(RuntimeError):
    """Base class: anything that keeps the weights of a model from being used."""


class CatalogueError(WeightsError):
    """The model catalogue is malformed or does not know a model."""


class WeightsFileError(WeightsError):
    """A weights file cannot be read, or it does not fit the model (keys, shapes, hash)."""


class DownloadError(WeightsError):
    """A download failed; a partial file, if any, is kept for resuming."""


class WeightsNotFoundError(WeightsError):
    """No usable weights: the message names the command that gets them."""
