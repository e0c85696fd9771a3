"""Cell values: how a Python, NumPy or pandas value becomes one of the few types a leaderboard column holds
(float, int, bool, str, JSON str, UTC timestamp, null)."""

from __future__ import annotations

import json
import math
import numbers
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    return str(value)


def to_json(value: Any) -> str:
    """Stable JSON text (sorted keys, no NaN) so equal values give equal strings across trials."""
    return json.dumps(value, sort_keys=True, default=_json_default, allow_nan=True)


def is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def missing(value: Any) -> bool:
    """None, NaN, pandas NA or NaT (what a row edited through pandas may hold)."""
    return value is None or value is pd.NA or value is pd.NaT or (is_number(value) and math.isnan(value))


def timestamp(value: Any) -> datetime | None:
    """An ISO string or datetime as an aware UTC datetime (naive values are taken to be UTC already)."""
    if missing(value) or value == "":
        return None
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    if isinstance(value, str):
        text = value.strip()
        value = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
    if not isinstance(value, datetime):
        raise ValueError(f"not a timestamp: {value!r}")
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def plain_value(value: Any) -> Any:
    """A hyper-parameter or extra value as bool, float, str, JSON str or None (ints become floats so that
    ``dropout`` 0 and 0.3 share one column type)."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if is_number(value):
        return float(value)
    if isinstance(value, str):
        return value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, datetime):
        return timestamp(value)
    return to_json(value)


def metric_value(value: Any) -> Any:
    """Scalars as float (None -> NaN); anything structured (a confusion matrix) as JSON text."""
    if value is None:
        return math.nan
    if isinstance(value, (bool, np.bool_)) or is_number(value):
        return float(value)
    if isinstance(value, str):
        return value
    return to_json(value)


def int_or_none(value: Any) -> int | None:
    return None if missing(value) else int(value)


def float_or_nan(value: Any) -> float:
    return math.nan if value is None else float(value)
