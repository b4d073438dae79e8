"""Monitoring's errors: part of the package's one tree (``client.PredictorError``)."""

from __future__ import annotations

from .._exceptions import ConfigurationError, PredictorError

__all__ = ["BaselineError", "EmptyWindowError", "MonitoringError", "NoDataError", "NoTracesError"]


class MonitoringError(PredictorError):
    """Something stops a monitoring report from being computed."""


class BaselineError(MonitoringError, ConfigurationError):
    """The baseline cannot be used: unreadable, not found, or its columns do not match the model's
    signature (``missing`` names the signature's columns it lacks; ``source`` says which baseline)."""

    def __init__(self, message: str, *, source: str | None = None, missing: list[str] | None = None) -> None:
        super().__init__(f"baseline {source}: {message}" if source else f"baseline: {message}")
        self.source = source
        self.missing = list(missing or [])


class NoDataError(MonitoringError):
    """There is nothing to compute a report from."""


class NoTracesError(NoDataError):
    """No traced prediction of the model (or endpoint) in the experiments and time range searched."""


class EmptyWindowError(NoDataError, ValueError):
    """The records frame (or the part of it in the time range asked for) has no rows."""
