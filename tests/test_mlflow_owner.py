"""client._mlflow owns MLflow's process-global state: one lock, activation inside it, one alias
lookup, one experiment set-up, MLflow's errors as the SDK's."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from client._exceptions import ConfigurationError, NotFoundError
from client._mlflow import (
    activate,
    mlflow_error,
    mlflow_lock,
    mlflow_session,
    resolve_alias,
    use_experiment,
    version_exists,
)


class _Err(Exception):
    def __init__(self, text: str, error_code: str = "") -> None:
        super().__init__(text)
        self.error_code = error_code


def test_mlflow_errors_become_the_sdks_own():
    missing = mlflow_error(_Err("Registered Model with name=m not found", "RESOURCE_DOES_NOT_EXIST"), "reading m")
    assert isinstance(missing, NotFoundError) and missing.status_code == 404
    assert "reading m: not found (Registered Model with name=m not found)" in str(missing)
    denied = mlflow_error(_Err("nope", "PERMISSION_DENIED"), "reading m")
    assert isinstance(denied, ConfigurationError) and "permission denied" in str(denied)
    other = mlflow_error(_Err("x" * 1000), "reading m")
    assert isinstance(other, ConfigurationError) and len(str(other)) < 400 and str(other).endswith("…")


def test_a_session_keeps_other_threads_from_switching_mlflow(tmp_path: Path):
    """While one thread reads in its session, another's activation waits for it: the first never
    sees the registry switched under it (before, ``activate`` took a lock of its own, and callers
    outside ``signatures`` took none)."""
    import mlflow

    first, second = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    inside, seen, switched_at = threading.Event(), [], []

    def other() -> None:
        assert inside.wait(30)
        activate(second)
        switched_at.append(time.monotonic())

    thread = threading.Thread(target=other)
    thread.start()
    with mlflow_session(first) as registry:
        assert registry == first
        inside.set()
        time.sleep(0.5)  # the other thread tries to switch meanwhile
        seen.append(mlflow.get_registry_uri())
        left_at = time.monotonic()
    thread.join(30)
    assert seen == [first]
    assert switched_at and switched_at[0] >= left_at
    assert mlflow.get_registry_uri() == second


def test_the_lock_is_reentrant_for_helpers_inside_a_session(registry_uri: str):
    with mlflow_session(registry_uri) as registry:
        assert resolve_alias(registry, "main.default.iris", "champion").isdigit()  # takes the lock again
        assert mlflow_lock._is_owned()  # type: ignore[attr-defined]  # still ours


def test_alias_and_version_lookups_map_a_missing_one_to_not_found(registry_uri: str):
    version = resolve_alias(registry_uri, "main.default.iris", "champion")
    assert version_exists(registry_uri, "main.default.iris", version) == version
    with pytest.raises(NotFoundError, match=r"resolving alias main\.default\.iris@nobody"):
        resolve_alias(registry_uri, "main.default.iris", "nobody")
    with pytest.raises(NotFoundError, match=r"main\.default\.iris version 999"):
        version_exists(registry_uri, "main.default.iris", "999")


def test_use_experiment_by_id_and_by_name_keeps_local_artifacts_home(registry_uri: str):
    import mlflow

    with mlflow_session(registry_uri):
        made = use_experiment("/owner-test-experiment")
        exp = mlflow.get_experiment(made)
        assert exp.name == "/owner-test-experiment"
        location = exp.artifact_location
        assert location.startswith("file://") and "/artifacts/owner-test-experiment" in location  # under the home
        assert use_experiment("/owner-test-experiment") == made  # reused, not duplicated
        assert use_experiment(made) == made  # an id, as a Databricks App's resource gives it
        mlflow.set_experiment(experiment_id="0")


def test_a_direct_mode_load_pins_the_alias_and_loads_inside_a_session(registry_uri: str, monkeypatch):
    """Before, ``DirectModel`` activated without the lock: another thread could switch MLflow's
    registry between the activation and the load."""
    import mlflow
    import mlflow.pyfunc

    from client._direct import DirectModel

    seen, real = [], mlflow.pyfunc.load_model

    def load(uri: str, *args, **kwargs):
        seen.append((uri, mlflow_lock._is_owned(), mlflow.get_registry_uri()))  # type: ignore[attr-defined]
        return real(uri, *args, **kwargs)

    monkeypatch.setattr(mlflow.pyfunc, "load_model", load)
    model = DirectModel("models:/main.default.iris@champion", registry_uri)
    model._load_blocking()
    assert model.version == resolve_alias(registry_uri, "main.default.iris", "champion")
    assert seen == [(f"models:/main.default.iris/{model.version}", True, registry_uri)]
    assert not mlflow_lock._is_owned()  # type: ignore[attr-defined]
