"""The data layer: layout adapters, the demo data set, patient-level splits, the HDF5 cache, tf.data pipelines.

``load_dataset(spec)`` lists and splits a data set (no pixel read); ``prepare(dataset, image_size)`` decodes
it once into the cache; ``runner.data.pipeline`` turns cached splits into ``tf.data`` pipelines. Importing this
package does not import TensorFlow.
"""

from __future__ import annotations

from runner.data._records import SPLITS, DataAdapter, Listing, Problem, Record
from runner.registry import Registry

ADAPTERS: Registry[type[DataAdapter]] = Registry("data layout", package="runner.data.adapters")

from runner.data._dataset import DataSet, DataSpec, load_dataset, parse_data_spec  # noqa: E402
from runner.data.cache import CachedData, default_cache_dir, prepare  # noqa: E402

__all__ = [
    "ADAPTERS",
    "SPLITS",
    "CachedData",
    "DataAdapter",
    "DataSet",
    "DataSpec",
    "Listing",
    "Problem",
    "Record",
    "default_cache_dir",
    "load_dataset",
    "parse_data_spec",
    "prepare",
]
