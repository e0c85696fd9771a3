"""The data layer: layout adapters, the demo data set, patient-level splits, the HDF5 cache, tf.data pipelines.

``load_dataset(spec)`` lists and splits a data set (no pixel read); ``prepare(dataset, image_size)`` decodes
it once into the cache; ``runner.data.pipeline`` turns cached splits into ``tf.data`` pipelines. Importing this
package does not import TensorFlow.
"""

from __future__ import annotations

from runner.data._dataset import DataSet, DataSpec, load_dataset, parse_data_spec
from runner.data._records import SPLITS, DataAdapter, Listing, Problem, Record
from runner.data.adapters._registry import ADAPTERS
from runner.data.cache import CachedData, prepare
from runner.paths import default_cache_dir

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
