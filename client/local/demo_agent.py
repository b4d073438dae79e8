"""The demo agent: a small deterministic ``ResponsesAgent`` that answers questions about the iris model
(and the same answers behind MLflow's legacy ``ChatAgent`` and ``ChatModel`` interfaces, which the
tests serve end to end).

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

import mlflow
from mlflow.pyfunc import ChatAgent, ChatModel, ResponsesAgent
from mlflow.types.agent import ChatAgentChunk, ChatAgentMessage, ChatAgentResponse, ChatContext
from mlflow.types.llm import (
    ChatChoice,
    ChatChoiceDelta,
    ChatChunkChoice,
    ChatCompletionChunk,
    ChatCompletionResponse,
    ChatMessage,
)
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


class IrisAnswers:
    """What the demo agents say, whatever their chat interface: a sequence of steps, each
    ``("call", call_id, name, arguments)``, ``("output", call_id, output)`` or ``("text", piece)``.
    ``IrisAssistant`` (Responses), ``IrisChatAgent`` and ``IrisChatModel`` only put them in their format."""

    _iris: Any = None

    def steps(self, question: str, pace: float) -> Generator[tuple[str, ...], None, None]:
        numbers = [float(n) for n in _NUMBER.findall(question)]
        if (say := _SAY.match(question)) is not None:
            import base64

            answer = base64.urlsafe_b64decode(say.group(1)).decode()
        elif len(numbers) >= 4:
            measurements = dict(zip(FEATURES, numbers[:4], strict=True))
            call_id = f"call_{_digest(question)}"
            yield ("call", call_id, "classify_iris", json.dumps(measurements))
            species = self._classify(measurements)
            yield ("output", call_id, json.dumps({"species": species}))
            answer = (f"The iris model says a flower with sepal {numbers[0]} x {numbers[1]} cm and petal "
                      f"{numbers[2]} x {numbers[3]} cm is an Iris {species}.")
        else:
            answer = HELP
        for i, piece in enumerate(re.findall(r"\S+\s*", answer)):
            if pace and i:
                time.sleep(pace)
            yield ("text", piece)

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


class IrisAssistant(IrisAnswers, ResponsesAgent):
    """Answers "which iris is 5.1 3.5 1.4 0.2?" by calling ``main.default.iris@champion``."""

    def predict(self, request: ResponsesAgentRequest) -> ResponsesAgentResponse:  # type: ignore[override]
        events = self._events(_question(request.input)[0], pace=0.0)
        items = [e.model_dump()["item"] for e in events if e.type == "response.output_item.done"]
        return ResponsesAgentResponse(output=items)

    def predict_stream(  # type: ignore[override]  # ResponsesAgent's own signature, not PythonModel's
        self, request: ResponsesAgentRequest
    ) -> Generator[ResponsesAgentStreamEvent, None, None]:
        question, told = _question(request.input)
        yield from self._events(question, pace_seconds(request.custom_inputs, told))

    def _events(self, question: str, pace: float) -> Generator[ResponsesAgentStreamEvent, None, None]:
        item_id, text = f"msg_{_digest(question)}", []
        for step in self.steps(question, pace):
            if step[0] == "call":
                yield _done(self.create_function_call_item(
                    id=f"fc_{_digest(question)}", call_id=step[1], name=step[2], arguments=step[3]))
            elif step[0] == "output":
                yield _done(self.create_function_call_output_item(call_id=step[1], output=step[2]))
            else:
                text.append(step[1])
                yield ResponsesAgentStreamEvent(**self.create_text_delta(delta=step[1], item_id=item_id))
        yield _done(self.create_text_output_item(text="".join(text), id=item_id))


class IrisChatAgent(IrisAnswers, ChatAgent):
    """The demo agent behind MLflow's (legacy) ``ChatAgent`` interface (``agent/v2/chat``): the tool
    call, its result and the answer as messages; the answer's text streamed as ``delta`` chunks of
    one message id. Traced with ``mlflow.trace``, as MLflow's ChatAgent examples do."""

    @mlflow.trace(span_type="AGENT")
    def predict(self, messages: list[ChatAgentMessage], context: ChatContext | None = None,  # type: ignore[override]
                custom_inputs: dict[str, Any] | None = None) -> ChatAgentResponse:
        merged: dict[str | None, ChatAgentMessage] = {}
        for delta in self._deltas(_question(messages)[0], 0.0):
            if delta.id in merged:  # the answer's text pieces, one message
                merged[delta.id].content = (merged[delta.id].content or "") + (delta.content or "")
            else:
                merged[delta.id] = delta
        return ChatAgentResponse(messages=list(merged.values()))

    @mlflow.trace(span_type="AGENT")
    def predict_stream(self, messages: list[ChatAgentMessage], context: ChatContext | None = None,  # type: ignore[override]
                       custom_inputs: dict[str, Any] | None = None) -> Generator[ChatAgentChunk, None, None]:
        question, told = _question(messages)
        for delta in self._deltas(question, pace_seconds(custom_inputs, told)):
            yield ChatAgentChunk(delta=delta)

    def _deltas(self, question: str, pace: float) -> Generator[ChatAgentMessage, None, None]:
        for step in self.steps(question, pace):
            if step[0] == "call":
                call = {"id": step[1], "type": "function", "function": {"name": step[2], "arguments": step[3]}}
                yield ChatAgentMessage(role="assistant", content="", id=f"fc_{_digest(question)}",
                                       tool_calls=[call])  # type: ignore[list-item]  # pydantic validates the dict
            elif step[0] == "output":
                yield ChatAgentMessage(role="tool", content=step[2], tool_call_id=step[1], id=f"out_{step[1]}",
                                       name="classify_iris")  # ChatAgent wants the tool's name too
            else:
                yield ChatAgentMessage(role="assistant", content=step[1], id=f"msg_{_digest(question)}")


class IrisChatModel(IrisAnswers, ChatModel):
    """The demo agent behind MLflow's ``ChatModel`` interface (OpenAI chat completions,
    ``agent/v1/chat``): one assistant message (the tool call stays inside the model), streamed as
    ``chat.completion.chunk`` deltas."""

    @mlflow.trace(span_type="LLM")
    def predict(self, context: Any, messages: list[Any], params: Any) -> ChatCompletionResponse:  # type: ignore[override]
        question, _ = _question(messages)
        text = "".join(step[1] for step in self.steps(question, 0.0) if step[0] == "text")
        return ChatCompletionResponse(id=f"chatcmpl_{_digest(question)}", model="iris-chat",
                                      choices=[ChatChoice(message=ChatMessage(role="assistant", content=text))])

    @mlflow.trace(span_type="LLM")
    def predict_stream(self, context: Any, messages: list[Any], params: Any  # type: ignore[override]
                       ) -> Generator[ChatCompletionChunk, None, None]:
        question, told = _question(messages)
        for step in self.steps(question, pace_seconds(params.custom_inputs, told)):
            if step[0] == "text":
                yield ChatCompletionChunk(id=f"chatcmpl_{_digest(question)}", model="iris-chat", choices=[
                    ChatChunkChoice(delta=ChatChoiceDelta(role="assistant", content=step[1]))])


def pace_seconds(custom_inputs: dict[str, Any] | None, told: str | None) -> float:
    """The pause between chunks: ``custom_inputs["pace_ms"]``, a ``/pace N`` prefix, else the environment."""
    pace_ms = (custom_inputs or {}).get("pace_ms", told if told is not None else os.environ.get(PACE_ENV))
    return float(pace_ms or 0) / 1000


def _done(item: dict[str, Any]) -> ResponsesAgentStreamEvent:
    return ResponsesAgentStreamEvent(type="response.output_item.done", item=item)  # type: ignore[call-arg]


def _question(messages: Any) -> tuple[str, str | None]:
    """The last user turn without a leading ``/pace N``, and that N if given."""
    text = _last_user_text(messages)
    told = _PACE.match(text)
    return (text[told.end():], told.group(1)) if told else (text, None)


def _last_user_text(messages: Any) -> str:
    """Of Responses input items, ChatAgent messages or ChatModel messages (pydantic, dataclass or dict)."""
    for item in reversed(list(messages)):
        data = item.model_dump() if hasattr(item, "model_dump") else item if isinstance(item, dict) else vars(item)
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
