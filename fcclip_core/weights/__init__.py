"""Released weights: catalogue, cache, downloads, imports, single-file export, resolution.

For the model code two calls matter:
- ``resolve_weights(model, explicit, allow_download)`` -> ``ResolvedWeights``: which files
  (explicit path, then cache, then a download if allowed, else an error naming the command);
- ``load_weights_into(model, resolved)``: fills a model (memory-mapped for an export).

``WeightsStore`` holds the operations behind the ``fcclip-weights`` command.
"""
from fcclip_core.weights.cache import CACHE_ENV, default_cache_dir
from fcclip_core.weights.catalogue import BASE_URL_ENV, CATALOGUE_ENV, Catalogue, ModelEntry, load_catalogue
from fcclip_core.weights.errors import (
    CatalogueError,
    DownloadError,
    WeightsError,
    WeightsFileError,
    WeightsNotFoundError,
)
from fcclip_core.weights.resolve import ResolvedWeights, load_weights_into, resolve_weights
from fcclip_core.weights.store import ModelStatus, WeightsStore

__all__ = [
    "BASE_URL_ENV", "CACHE_ENV", "CATALOGUE_ENV", "Catalogue", "CatalogueError", "DownloadError", "ModelEntry",
    "ModelStatus", "ResolvedWeights", "WeightsError", "WeightsFileError", "WeightsNotFoundError", "WeightsStore",
    "default_cache_dir", "load_catalogue", "load_weights_into", "resolve_weights",
]
