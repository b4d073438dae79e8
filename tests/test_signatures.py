"""Signatures: model URIs, the registry (a tiny sqlite one built here), serving endpoints."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from workspace_standin import Endpoint, WorkspaceStandin, workspace  # noqa: F401  (fixture)

import client._schema.signatures as sigs
from client._exceptions import ConfigurationError, NotFoundError, PredictorError
from client._http.auth import TokenAuth
from client._http.transport import RetryConfig, Transport, WorkspaceApi
from client._schema.openapi import load_openapi
from client._schema.signatures import ModelRef, from_endpoint, from_registry, parse_model_uri, signature_from_openapi

PAT = "dapiSIGTEST0000"


@pytest.fixture(scope="module")
def tiny_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """sqlite registry with ``main.default.tiny`` v1 and v2 (v2 has an extra column), alias champion -> v1."""
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature

    home = tmp_path_factory.mktemp("tiny_registry")
    uri = f"sqlite:///{home / 'mlflow.db'}"
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    os.environ["MLFLOW_TRACKING_URI"] = uri
    os.environ["MLFLOW_REGISTRY_URI"] = uri
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)

    class Tiny(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return [0] * len(model_input)

    exp = mlflow.create_experiment("tiny", artifact_location=(home / "artifacts").as_uri())
    for _version, cols in ((1, {"x": [1.0], "name": ["a"]}), (2, {"x": [1.0], "name": ["a"], "n": [3]})):
        df = pd.DataFrame(cols)
        with mlflow.start_run(experiment_id=exp):
            mlflow.pyfunc.log_model(
                name="model",
                python_model=Tiny(),
                signature=infer_signature(df, [0]),
                registered_model_name="main.default.tiny",
            )
    mlflow.MlflowClient().set_registered_model_alias("main.default.tiny", "champion", "1")
    try:
        yield uri
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture
def registry(tiny_registry: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tiny_registry)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", tiny_registry)
    sigs.clear_cache()
    return tiny_registry


# --- parse_model_uri -------------------------------------------------------------------


def test_parse_model_uri_ok() -> None:
    assert parse_model_uri("models:/main.default.iris@champion") == ("main.default.iris", None, "champion")
    assert parse_model_uri("models:/main.default.iris/3") == ("main.default.iris", "3", None)
    assert parse_model_uri("models:/iris/12") == ("iris", "12", None)


@pytest.mark.parametrize(
    ("uri", "needle"),
    [
        ("", "empty"),
        ("runs:/abc/model", "must start with 'models:/'"),
        ("main.default.iris", "must start with 'models:/'"),
        ("models:/", "names no model"),
        ("models:/main.default.iris", "needs a version or an alias"),
        ("models:/main.default.iris/latest", "not supported"),
        ("models:/main.default.iris/Production", "not supported"),
        ("models:/main.default.iris/x1", "not a number"),
        ("models:/main.default.iris@", "bad alias"),
        ("models:/@champion", "bad model name"),
        ("models:/a/b/c", "needs a version or an alias"),
    ],
)
def test_parse_model_uri_errors(uri: str, needle: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_model_uri(uri)
    assert needle in str(info.value)
    assert isinstance(info.value, ValueError)


# --- from_registry ---------------------------------------------------------------------


async def test_from_registry_alias_and_version(registry: str) -> None:
    sig, ref = await from_registry("models:/main.default.tiny@champion")
    assert (ref.name, ref.version) == ("main.default.tiny", "1")
    assert ref.run_id and len(ref.run_id) == 32  # the MLflow run that logged the version
    assert sig is not None
    assert [(c.name, c.type) for c in sig.columns] == [("x", "double"), ("name", "string")]

    sig2, ref2 = await from_registry("models:/main.default.tiny/2", registry)
    assert (ref2.name, ref2.version) == ("main.default.tiny", "2") and ref2.run_id not in (None, ref.run_id)
    assert sig2 is not None and [c.name for c in sig2.columns] == ["x", "name", "n"]


async def test_from_registry_caches(registry: str, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"alias": 0, "info": 0}
    real_alias, real_load = sigs.resolve_alias, sigs._load_signature_sync

    def alias(*a):
        calls["alias"] += 1
        return real_alias(*a)

    def load(*a):
        calls["info"] += 1
        return real_load(*a)

    monkeypatch.setattr(sigs, "resolve_alias", alias)
    monkeypatch.setattr(sigs, "_load_signature_sync", load)
    for _ in range(3):
        _sig, ref = await from_registry("models:/main.default.tiny@champion")
    await from_registry("models:/main.default.tiny/1")
    assert calls == {"alias": 1, "info": 1}
    assert ref.version == "1"

    # Alias resolutions expire after SIGNATURE_ALIAS_TTL; the signature stays cached.
    import mlflow

    mlflow.MlflowClient(registry_uri=registry).set_registered_model_alias("main.default.tiny", "champion", "2")
    try:
        monkeypatch.setattr(sigs, "SIGNATURE_ALIAS_TTL", 0.0)
        sigs._alias_cache.clear()
        _, ref = await from_registry("models:/main.default.tiny@champion")
        assert ref.version == "2" and calls["alias"] == 2 and calls["info"] == 2
        await from_registry("models:/main.default.tiny/2")
        assert calls["info"] == 2
    finally:
        mlflow.MlflowClient(registry_uri=registry).set_registered_model_alias("main.default.tiny", "champion", "1")


async def test_from_registry_missing(registry: str) -> None:
    with pytest.raises(PredictorError) as info:
        await from_registry("models:/main.default.tiny@nope")
    assert "main.default.tiny@nope" in str(info.value)
    with pytest.raises(PredictorError) as info2:
        await from_registry("models:/main.default.absent/1")
    assert "main.default.absent" in str(info2.value)
    assert isinstance(info2.value, (NotFoundError, ConfigurationError))


# --- from_endpoint ---------------------------------------------------------------------

OPENAPI_RECORDS = {
    "openapi": "3.1.0",
    "info": {"title": "tiny", "version": "1"},
    "paths": {
        "/serving-endpoints/tiny/invocations": {
            "post": {
                "requestBody": {
                    "content": {
                        "application/json": {
                            "schema": {
                                "oneOf": [
                                    {
                                        "type": "object",
                                        "properties": {
                                            "dataframe_records": {
                                                "type": "array",
                                                "items": {
                                                    "type": "object",
                                                    "required": ["x"],
                                                    "properties": {
                                                        "x": {"type": "number", "format": "double"},
                                                        "n": {"type": "integer", "format": "int64"},
                                                        "name": {"type": "string"},
                                                    },
                                                },
                                            }
                                        },
                                    },
                                    {"$ref": "#/components/schemas/split"},
                                ]
                            }
                        }
                    }
                }
            }
        }
    },
    "components": {"schemas": {"split": {"type": "object", "properties": {"dataframe_split": {"type": "object"}}}}},
}


def test_signature_from_openapi_shapes() -> None:
    sig = signature_from_openapi(OPENAPI_RECORDS)
    assert sig is not None
    assert [(c.name, c.type, c.required) for c in sig.columns] == [
        ("x", "double", True),
        ("n", "long", False),
        ("name", "string", False),
    ]
    assert signature_from_openapi({}) is None
    assert signature_from_openapi({"paths": {"/x/invocations": {"post": {}}}}) is None


# The documented shape of GET /api/2.0/serving-endpoints/{name}/openapi (Databricks docs, "Get a
# model serving endpoint schema"): OpenAPI 3.1, a relative path per served model, a oneOf of
# dataframe_split and dataframe_records, params with defaults.
DOCUMENTED = Path(__file__).parent / "data" / "openapi_endpoint_schema.json"
IRIS_COLUMNS = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]


def documented() -> dict:
    return json.loads(DOCUMENTED.read_text())


def test_documented_openapi_example_from_a_byte_stream() -> None:
    doc = load_openapi(io.BytesIO(DOCUMENTED.read_bytes()))  # what databricks-sdk's get_open_api().contents is
    sig = signature_from_openapi(doc)
    assert sig is not None and not sig.tensors
    assert [(c.name, c.type, c.required) for c in sig.columns] == [(n, "double", True) for n in IRIS_COLUMNS]
    assert [(p.name, p.type, p.default, p.shape) for p in sig.params] == [("threshold", "double", 0.5, None)]
    wrapped = load_openapi(json.dumps({"contents": DOCUMENTED.read_text()}))  # the REST reference's form
    assert signature_from_openapi(wrapped) == sig
    with pytest.raises(ValueError):
        load_openapi(b"[1, 2]")


def test_dataframe_split_alone_gives_names_and_positional_types() -> None:
    doc = documented()
    body = doc["paths"]["/served-models/iris-1/invocations"]["post"]["requestBody"]["content"]["application/json"]
    del body["schema"]["oneOf"][1]  # no dataframe_records branch
    split = body["schema"]["oneOf"][0]["properties"]["dataframe_split"]["properties"]
    split["data"]["items"]["prefixItems"][3] = {"type": "integer", "format": "int32"}
    sig = signature_from_openapi(doc)
    assert sig is not None
    assert [(c.name, c.type) for c in sig.columns] == [*((n, "double") for n in IRIS_COLUMNS[:3]),
                                                        (IRIS_COLUMNS[3], "integer")]
    split["data"]["items"]["prefixItems"].pop()  # types that do not line up with the names: names only
    assert {c.type for c in signature_from_openapi(doc).columns} == {"any"}  # type: ignore[union-attr]


def with_second_model(doc: dict) -> dict:
    """An A/B endpoint: iris-2 takes a fifth column."""
    second = json.loads(json.dumps(doc["paths"]["/served-models/iris-1/invocations"]))
    records = second["post"]["requestBody"]["content"]["application/json"]["schema"]["oneOf"][1]
    records["properties"]["dataframe_records"]["items"]["properties"]["petal ratio"] = {"type": "number"}
    doc["paths"]["/served-models/iris-2/invocations"] = second
    return doc


def test_the_served_entitys_path_is_picked_among_several() -> None:
    doc = with_second_model(documented())
    one, two = signature_from_openapi(doc, "iris-1"), signature_from_openapi(doc, "iris-2")
    assert one is not None and two is not None
    assert [c.name for c in one.columns] == IRIS_COLUMNS
    assert [c.name for c in two.columns] == [*IRIS_COLUMNS, "petal ratio"]
    assert not two.columns[-1].required  # not in the records' 'required'
    # Several models and none named: no guess (the caller falls back to the registry).
    assert signature_from_openapi(doc) is None and signature_from_openapi(doc, "iris-3") is None


def test_tensor_bodies() -> None:
    def doc_with(body: dict) -> dict:
        schema = {"oneOf": [{"type": "object", "properties": body}]}
        post = {"requestBody": {"content": {"application/json": {"schema": schema}}}}
        return {"openapi": "3.1.0", "paths": {"/served-models/m-1/invocations": {"post": post}}}

    image = {"type": "array", "items": {"type": "array", "items": {"type": "number", "format": "float"}}}
    sig = signature_from_openapi(doc_with({"inputs": image}))
    assert sig is not None and not sig.columns
    assert [(t.name, t.dtype, t.shape) for t in sig.tensors] == [(None, "float32", (-1, -1))]
    named = {"type": "object", "properties": {"ids": {"type": "array", "items": {"type": "integer"}},
                                              "mask": {"type": "array", "items": {"type": "boolean"}}}}
    sig = signature_from_openapi(doc_with({"instances": named}))
    assert sig is not None
    assert [(t.name, t.dtype, t.shape) for t in sig.tensors] == [("ids", "int64", (-1,)), ("mask", "bool", (-1,))]
    assert signature_from_openapi(doc_with({"inputs": {"type": "string"}})) is None


@contextlib.asynccontextmanager
async def api(ws: WorkspaceStandin, auth: Any) -> AsyncIterator[WorkspaceApi]:
    """The stand-in's REST API through a transport of its own (no retries: a refusal is final)."""
    transport = Transport(timeout=httpx.Timeout(30.0))
    try:
        yield WorkspaceApi(transport, ws.url, auth, RetryConfig(0, None), httpx.Timeout(30.0))
    finally:
        await transport.aclose()


@pytest.fixture
def ws(workspace) -> WorkspaceStandin:  # noqa: F811
    w = workspace()
    w.add_pat(PAT)
    return w


async def test_from_endpoint_via_openapi(ws: WorkspaceStandin) -> None:
    ws.add_endpoint(Endpoint("tiny", entity_version="7", openapi=OPENAPI_RECORDS))
    async with api(ws, TokenAuth(PAT)) as http:
        sig, ref = await from_endpoint(http, "tiny")
    assert sig is not None and [c.name for c in sig.columns] == ["x", "n", "name"]
    assert ref == ModelRef("main.default.tiny", "7")
    assert ("GET", "/api/2.0/serving-endpoints/tiny/openapi") in ws.requests


async def test_from_endpoint_via_served_entity(
    ws: WorkspaceStandin, registry: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws.add_endpoint(Endpoint("tiny", entity_name="main.default.tiny", entity_version="2", openapi=None))
    seen: list[str | None] = []
    real = sigs.resolve_registry_uri

    def resolve(explicit: str | None = None) -> str:  # stand the sqlite registry in for databricks-uc
        seen.append(explicit)
        return registry if explicit == "databricks-uc" else real(explicit)

    monkeypatch.setattr(sigs, "resolve_registry_uri", resolve)
    async with api(ws, TokenAuth(PAT)) as http:
        sig, ref = await from_endpoint(http, "tiny")
    assert seen == ["databricks-uc"]
    assert (ref.name, ref.version) == ("main.default.tiny", "2") and ref.run_id
    assert sig is not None and [c.name for c in sig.columns] == ["x", "name", "n"]


async def test_from_endpoint_gives_up_cleanly(ws: WorkspaceStandin, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="client._schema.signatures")
    async with api(ws, TokenAuth(PAT)) as http:
        sig, ref = await from_endpoint(http, "absent")
        assert (sig, ref) == (None, ModelRef(None, None))
        assert any("absent" in r.getMessage() for r in caplog.records)
        # A refused token: still no exception, still a warning, and the token is not logged.
        sig, ref = await from_endpoint(replace(http, auth=TokenAuth("wrong-token-SENTINEL")), "absent")
        assert sig is None
    assert all("wrong-token-SENTINEL" not in r.getMessage() for r in caplog.records)


async def test_from_endpoint_refreshes_once_on_401(ws: WorkspaceStandin) -> None:
    ws.add_endpoint(Endpoint("tiny", openapi=OPENAPI_RECORDS))

    class Flaky:
        def __init__(self) -> None:
            self.token = "stale"
            self.refreshes = 0

        async def headers(self) -> dict[str, str]:
            return {"Authorization": f"Bearer {self.token}"}

        async def refresh(self) -> bool:
            self.refreshes += 1
            self.token = PAT
            return True

    auth = Flaky()
    async with api(ws, auth) as http:
        sig, _ = await from_endpoint(http, "tiny")
    assert sig is not None and auth.refreshes == 1


def test_home_is_untouched(tmp_path: Path) -> None:
    assert not (tmp_path / ".predictor").exists()


def test_reading_a_registry_leaves_the_callers_environment_alone(monkeypatch, tmp_path):
    from client._mlflow import activate

    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///elsewhere.db")
    activate(f"sqlite:///{tmp_path / 'r.db'}")  # MLflow itself would export both variables
    assert "MLFLOW_REGISTRY_URI" not in os.environ
    assert os.environ["MLFLOW_TRACKING_URI"] == "sqlite:///elsewhere.db"


async def test_from_endpoint_reads_the_documented_document_for_its_served_entity(ws: WorkspaceStandin) -> None:
    """The stand-in serves the documented shape for an A/B endpoint; the served entity with the
    traffic (iris-2 here) picks its path, by name through httpx and through databricks-sdk alike."""
    from databricks.sdk import WorkspaceClient

    doc = with_second_model(documented())
    ws.add_endpoint(Endpoint("ab", entity_name="main.default.iris", entity_version="2", served_model_name="iris-2",
                             openapi=doc))
    async with api(ws, TokenAuth(PAT)) as http:
        sig, ref = await from_endpoint(http, "ab")
    assert sig is not None and [c.name for c in sig.columns][-1] == "petal ratio"
    assert ref == ModelRef("main.default.iris", "2")
    contents = WorkspaceClient(host=ws.url, token=PAT).serving_endpoints.get_open_api("ab").contents
    assert signature_from_openapi(load_openapi(contents), "iris-2") == sig
