"""The data layer: layout adapters, the demo data set, patient-level splits, the HDF5 cache, tf.data pipelines.

``load_dataset(spec)`` lists and splits a data set (no pixel read); ``prepare(dataset, image_size)`` decodes
it once into the cache; ``runner.data.pipeline`` turns cached splits into ``tf.data`` pipelines. Importing this
package does not import TensorFlow.
"""

from __future__ import annotations

from runner.data._dataset import DataSet, DataSpec, load_dataset, map_label, parse_data_spec
from runner.data._records import (
    LABEL_SEPARATOR,
    NO_FINDING,
    SPLITS,
    UNCERTAIN_MARK,
    DataAdapter,
    Ignored,
    Listing,
    Problem,
    Record,
    findings_label,
    label_parts,
    read_findings,
)
from runner.data.adapters._registry import ADAPTERS
from runner.data.cache import CachedData, prepare
from runner.paths import default_cache_dir

__all__ = [
    "ADAPTERS",
    "LABEL_SEPARATOR",
    "NO_FINDING",
    "SPLITS",
    "UNCERTAIN_MARK",
    "CachedData",
    "DataAdapter",
    "DataSet",
    "DataSpec",
    "Ignored",
    "Listing",
    "Problem",
    "Record",
    "default_cache_dir",
    "findings_label",
    "label_parts",
    "load_dataset",
    "map_label",
    "parse_data_spec",
    "prepare",
    "read_findings",
]
