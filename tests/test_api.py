"""The public surface: one small sorted facade, and a cheap import."""

from __future__ import annotations

import subprocess
import sys

import client


def test_all_is_sorted_and_importable():
    assert client.__all__ == sorted(client.__all__)
    for name in client.__all__:
        assert hasattr(client, name), name


def test_error_tree():
    assert issubclass(client.SchemaValidationError, client.PredictorError)
    assert issubclass(client.SchemaValidationError, ValueError)
    for cls in (client.APIConnectionError, client.APITimeoutError, client.APIStatusError):
        assert issubclass(cls, client.APIError) and issubclass(cls, client.PredictorError)
    for cls in (
        client.BadRequestError,
        client.AuthenticationError,
        client.PermissionDeniedError,
        client.NotFoundError,
        client.RateLimitError,
        client.InternalServerError,
    ):
        assert issubclass(cls, client.APIStatusError)


def test_import_loads_no_heavy_module():
    code = (
        "import sys, client; heavy = ('mlflow', 'pandas', 'gradio', 'streamlit', 'databricks.sdk');"
        "print([m for m in heavy if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_predictor_needs_exactly_one_target():
    import pytest

    with pytest.raises(client.ConfigurationError):
        client.Predictor.from_endpoint()
    with pytest.raises(client.ConfigurationError):
        client.Predictor.from_endpoint("a", url="http://127.0.0.1/invocations")
