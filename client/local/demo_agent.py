"""The demo agent: a small deterministic ``ResponsesAgent`` that answers questions about the iris model.

No weights and no network: given four measurements it calls the registered iris model as a tool
(a ``function_call`` item, then its ``function_call_output``) and says which iris it is; otherwise
it explains what it can do. The answer streams word by word. It can be told to pace its chunks,
so that tests can watch text arrive: a question starting ``/pace 300`` (milliseconds between
chunks; the answer is the same as without it), ``custom_inputs={"pace_ms": 300}``, or
``PREDICTOR_DEMO_AGENT_PACE_MS`` in the server's environment. ``/say64 B64`` makes it answer the
base64-encoded text B64 verbatim (tests show the apps a given answer, e.g. markup, that the
user's own message does not contain).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Generator
from typing import Any

from mlflow.pyfunc import ResponsesAgent
from mlflow.types.responses import ResponsesAgentRequest, ResponsesAgentResponse, ResponsesAgentStreamEvent

from .._constants import DEMO_MODEL_URI

SPECIES = ("setosa", "versicolor", "virginica")
FEATURES = ("sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)")
PACE_ENV = "PREDICTOR_DEMO_AGENT_PACE_MS"
HELP = (
    "I answer questions about the demo iris model. Give me four measurements in cm (sepal length, "
    "sepal width, petal length, petal width), for example 5.1 3.5 1.4 0.2, and I will ask the model "
    "which iris it is."
)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_PACE = re.compile(r"^\s*/pace\s+(\d+)\s*")
_SAY = re.compile(r"^\s*/say64\s+([A-Za-z0-9+/=_-]+)\s*$")


class IrisAssistant(ResponsesAgent):
    """Answers "which iris is 5.1 3.5 1.4 0.2?" by calling ``main.default.iris@champion``."""

    def __init__(self) -> None:
        self._iris: Any = None

    def predict(self, request: ResponsesAgentRequest) -> ResponsesAgentResponse:  # type: ignore[override]
        events = self._events(_question(request)[0], pace=0.0)
        items = [e.model_dump()["item"] for e in events if e.type == "response.output_item.done"]
        return ResponsesAgentResponse(output=items)

    def predict_stream(  # type: ignore[override]  # ResponsesAgent's own signature, not PythonModel's
        self, request: ResponsesAgentRequest
    ) -> Generator[ResponsesAgentStreamEvent, None, None]:
        question, told = _question(request)
        pace_ms = (request.custom_inputs or {}).get("pace_ms", told if told is not None else os.environ.get(PACE_ENV))
        yield from self._events(question, float(pace_ms or 0) / 1000)

    def _events(self, question: str, pace: float) -> Generator[ResponsesAgentStreamEvent, None, None]:
        numbers = [float(n) for n in _NUMBER.findall(question)]
        if (say := _SAY.match(question)) is not None:
            import base64

            answer = base64.urlsafe_b64decode(say.group(1)).decode()
        elif len(numbers) >= 4:
            measurements = dict(zip(FEATURES, numbers[:4], strict=True))
            call_id = f"call_{_digest(question)}"
            yield _done(self.create_function_call_item(
                id=f"fc_{_digest(question)}", call_id=call_id, name="classify_iris",
                arguments=json.dumps(measurements)))
            species = self._classify(measurements)
            yield _done(self.create_function_call_output_item(call_id=call_id, output=json.dumps({"species": species})))
            answer = (f"The iris model says a flower with sepal {numbers[0]} x {numbers[1]} cm and petal "
                      f"{numbers[2]} x {numbers[3]} cm is an Iris {species}.")
        else:
            answer = HELP
        item_id = f"msg_{_digest(question)}"
        for i, piece in enumerate(re.findall(r"\S+\s*", answer)):
            if pace and i:
                time.sleep(pace)
            yield ResponsesAgentStreamEvent(**self.create_text_delta(delta=piece, item_id=item_id))
        yield _done(self.create_text_output_item(text=answer, id=item_id))

    def _classify(self, measurements: dict[str, float]) -> str:
        import mlflow
        import pandas as pd

        if self._iris is None:
            self._iris = mlflow.pyfunc.load_model(DEMO_MODEL_URI)
        out = self._iris.predict(pd.DataFrame([measurements]).astype("float64"))
        if isinstance(out, pd.DataFrame) and "prediction" in out.columns:  # a class name (the demo model)
            return str(out["prediction"].iloc[0])
        label = int(out[0])  # a class index (an iris model registered before the demo answered names)
        return SPECIES[label] if 0 <= label < len(SPECIES) else str(label)


def _done(item: dict[str, Any]) -> ResponsesAgentStreamEvent:
    return ResponsesAgentStreamEvent(type="response.output_item.done", item=item)  # type: ignore[call-arg]


def _question(request: ResponsesAgentRequest) -> tuple[str, str | None]:
    """The last user turn without a leading ``/pace N``, and that N if given."""
    text = _last_user_text(request)
    told = _PACE.match(text)
    return (text[told.end():], told.group(1)) if told else (text, None)


def _last_user_text(request: ResponsesAgentRequest) -> str:
    for item in reversed(request.input):
        data = item.model_dump() if hasattr(item, "model_dump") else dict(item)
        if data.get("role") == "user":
            content = data.get("content")
            if isinstance(content, list):
                return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
            return str(content or "")
    return ""


def _digest(text: str) -> str:
    """A stable id for a question (deterministic answers, chunk for chunk, in every mode)."""
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()[:12]
