"""What the driver ships to every Python worker for one ``score`` job (its own module: the driver's
``_score`` makes it and the executors' ``_worker`` reads it, and neither imports the other for it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import types as T

    from .._pickling import Portable


@dataclass(frozen=True)
class Job:
    """What every Python worker gets: the Predictor as it travels and how to score."""

    key: str
    settings: Portable
    columns: tuple[str, ...]
    params: dict[str, Any] | None
    batch_rows: int | None  # None: the whole Arrow batch in one call (direct mode)
    concurrency: int
    fail_on_error: bool
    out_type: T.DataType
    prediction_col: str
    error_col: str
