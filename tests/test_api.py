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


def loaded_after(statement: str, modules: tuple[str, ...]) -> list[str]:
    code = f"import sys; {statement}; print([m for m in {modules!r} if m in sys.modules])"
    return eval(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


def test_import_loads_no_heavy_module():
    heavy = ("mlflow", "pandas", "numpy", "gradio", "streamlit", "databricks.sdk", "pyspark")
    assert loaded_after("from client import Predictor, PredictionResult, Batching", heavy) == []
    # The facade loads names on first use: the bare import does not even bring httpx.
    assert loaded_after("import client", ("httpx", "pydantic", *heavy)) == []
    assert loaded_after("from client import PredictorError", ("httpx", "pydantic")) == []
    # pydantic's model machinery (most of the Predictor's import cost) comes with the first result
    assert loaded_after("from client import Predictor", ("pydantic.main",)) == []


def test_unknown_names_are_attribute_errors_and_dir_is_the_api():
    import pytest

    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        client.Nope  # noqa: B018
    assert dir(client) == client.__all__


def test_predictor_needs_exactly_one_target():
    import pytest

    with pytest.raises(client.ConfigurationError):
        client.Predictor.from_endpoint()
    with pytest.raises(client.ConfigurationError):
        client.Predictor.from_endpoint("a", url="http://127.0.0.1/invocations")


def test_the_endpoint_request_path_imports_no_pandas_numpy_or_mlflow():
    statement = (
        "import httpx; from client import Predictor;"
        "answer = lambda r: httpx.Response(200, json={'predictions': [0, 1]});"
        "p = Predictor.from_endpoint(url='http://127.0.0.1:9/invocations', validate=False,"
        " http_transport=httpx.MockTransport(answer));"
        "assert p.predict([{'x': 1.0}, {'x': 2.0}]).predictions == [0, 1]"
    )
    assert loaded_after(statement, ("pandas", "numpy", "mlflow", "databricks.sdk", "pyspark")) == []


def test_the_control_plane_is_its_own_small_lazy_package():
    import client.endpoints as endpoints

    assert endpoints.__all__ == sorted(endpoints.__all__)
    for name in endpoints.__all__:
        assert hasattr(endpoints, name), name
    assert dir(endpoints) == endpoints.__all__
    assert not set(endpoints.__all__) & set(client.__all__)  # the SDK's facade does not grow with it
    assert loaded_after("import client", ("client.endpoints",)) == []
    assert loaded_after("import client.endpoints", ("yaml", "databricks.sdk", "mlflow")) == []


def test_pickling_a_predictor_imports_no_pyspark_pandas_or_mlflow():
    statement = (
        "import pickle; from client import Predictor;"
        "p = pickle.loads(pickle.dumps(Predictor.from_endpoint(url='http://127.0.0.1:9/invocations', validate=False)));"
        "assert p.url == 'http://127.0.0.1:9/invocations'"
    )
    assert loaded_after(statement, ("pyspark", "pandas", "mlflow", "databricks.sdk")) == []
