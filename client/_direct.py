"""Direct-load mode: an MLflow pyfunc model in this process, run off the event loop.

MLflow is imported here, lazily, on first use.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
from typing import Any

from ._exceptions import ConfigurationError, ModelError, SchemaProblem, SchemaValidationError
from ._http.sync import SingleFlight
from ._types import Signature

log = logging.getLogger(__name__)


class DirectModel:
    """A registered model loaded with ``mlflow.pyfunc.load_model``, pinned to one version."""

    def __init__(self, model_uri: str, registry_uri: str | None) -> None:
        self.model_uri = model_uri
        self.registry_uri = registry_uri
        self.name: str | None = None
        self.version: str | None = None
        self.signature: Signature | None = None
        self.run_id: str | None = None
        #: The MLmodel's ``metadata.task`` (e.g. ``agent/v1/responses`` for a ResponsesAgent), if any.
        self.task: str | None = None
        self._model: Any = None
        self._loading: SingleFlight[None] = SingleFlight()  # not an asyncio.Lock: any event loop may load

    async def load(self) -> None:
        while self._model is None:
            await self._loading.run(self._load_once)

    async def _load_once(self) -> None:
        if self._model is None:
            await asyncio.to_thread(self._load_blocking)

    def _load_blocking(self) -> None:
        import mlflow
        from mlflow.exceptions import MlflowException

        from ._mlflow import mlflow_session, resolve_alias
        from ._schema.signatures import parse_model_uri

        name, version, alias = parse_model_uri(self.model_uri)
        # Under the lock: another thread switching MLflow's registry mid-load would load another model.
        with mlflow_session(self.registry_uri) as registry:
            if alias is not None:  # pin the alias to a version, so the result can say which answered
                version = resolve_alias(registry, name, alias)
            try:
                model = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
            except MlflowException as err:
                raise ConfigurationError(f"cannot load {self.model_uri} from {registry}: {err.message}") from err
        self.name, self.version = name, str(version)
        self.run_id = model.metadata.run_id
        self.task = (model.metadata.metadata or {}).get("task")
        sig = model.metadata.signature
        self.signature = Signature.from_mlflow(sig.to_dict()) if sig is not None else None
        self._model = model
        log.info("loaded %s version %s", name, version)

    @property
    def pyfunc(self) -> Any:
        """The loaded ``PyFuncModel`` (after :meth:`load`): chat models call ``predict``/``predict_stream``."""
        return self._model

    async def predict(self, model_input: Any, params: dict[str, Any] | None) -> Any:
        await self.load()
        return await asyncio.to_thread(self._predict_blocking, model_input, params)

    def _predict_blocking(self, model_input: Any, params: dict[str, Any] | None) -> Any:
        from mlflow.exceptions import MlflowException
        from mlflow.pyfunc.scoring_server import predictions_to_json

        try:
            raw = self._model.predict(model_input, params=params) if params else self._model.predict(model_input)
        except MlflowException as err:  # MLflow's own schema enforcement; ours should have caught it
            raise SchemaValidationError([SchemaProblem(str(err.message)[:300])]) from err
        except Exception as err:
            raise ModelError(f"the model raised {type(err).__name__}: {str(err)[:300]}") from err
        # The scoring server's own serialiser: direct mode answers exactly what serving would.
        out = io.StringIO()
        predictions_to_json(raw, out)
        return json.loads(out.getvalue())["predictions"]
