"""The demo agent for real: MLflow's agent server (``predictor serve``), by URL and by name through the
workspace stand-in, and loaded in process; both modes must agree chunk for chunk.

The tests taking ``fmt`` run once per chat wire format: the demo agent as a ``ResponsesAgent``
(``agent/v1/responses``) and behind MLflow's legacy ``ChatAgent`` (``agent/v2/chat``) and ``ChatModel``
(``agent/v1/chat``, OpenAI chat completions) interfaces, each served by ``predictor serve``."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from conftest import CHAT_FORMATS, ChatServers
from workspace_standin import PAYLOAD_COLUMNS, Endpoint, workspace  # noqa: F401  (fixture)

from client import ChatDelta, Predictor, StreamEventError, StreamInterruptedError

AGENT = "models:/main.default.assistant@champion"
QUESTION = "Which iris is 6.7 3.0 5.2 2.3?"

pytestmark = pytest.mark.slow


def content(deltas: list[ChatDelta]) -> list[tuple[str, str, Any]]:
    """What the model said, delta by delta (trace deltas are the server's, not the model's)."""
    return [(d.type, d.text, d.message) for d in deltas if d.type != "trace"]


#: What the answer to QUESTION holds, by format: a ChatModel answers one message (its tool call stays inside).
ROLES = {"responses": ["assistant", "tool", "assistant"], "chat_agent": ["assistant", "tool", "assistant"],
         "completions": ["assistant"]}


@pytest.fixture(params=list(CHAT_FORMATS))
def fmt(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def uri(fmt: str) -> str:
    return f"models:/{CHAT_FORMATS[fmt][0]}@champion"


@pytest.fixture
def served(fmt: str, chat_servers: ChatServers) -> Predictor:
    chat_servers.start(*CHAT_FORMATS)  # all at once, the first time
    return Predictor.from_endpoint(url=chat_servers.invocations(fmt), model_uri=uri(fmt))


def test_endpoint_and_direct_mode_agree_chunk_for_chunk(fmt: str, served: Predictor) -> None:
    direct = Predictor.from_model(uri(fmt))
    assert served.kind == direct.kind == "chat"
    endpoint_stream = served.stream(QUESTION)
    endpoint_deltas = list(endpoint_stream)
    direct_stream = direct.stream(QUESTION)
    direct_deltas = list(direct_stream)
    assert content(endpoint_deltas) == content(direct_deltas)
    direct_reply = direct.chat(QUESTION)
    assert direct_stream.get_final_result().trace_id and direct_reply.trace_id  # MLflow traced the loaded agent
    assert sum(d.type == "text" for d in endpoint_deltas) > 10  # word by word, not one lump

    reply = served.chat(QUESTION)
    streamed = endpoint_stream.get_final_result()
    assert "".join(d.text for d in endpoint_deltas) == streamed.text == reply.text == direct_reply.text
    assert reply.text.endswith("is an Iris virginica.")  # the iris model's answer for that row, via the tool
    tools = ["classify_iris"] if "tool" in ROLES[fmt] else []
    assert [c.name for c in reply.tool_calls] == [c.name for c in streamed.tool_calls] == tools
    assert [m.role for m in reply.messages] == [m.role for m in streamed.messages] == ROLES[fmt]
    assert reply.trace_id and streamed.trace_id and reply.trace_id != streamed.trace_id
    assert (reply.model_name, reply.model_version, reply.mode) == (CHAT_FORMATS[fmt][0], "1", "endpoint")
    assert streamed.first_text_ms is not None and streamed.first_text_ms <= streamed.elapsed_ms


async def test_async_stream_and_both_server_paths(agent_server: str, agent_registry: str) -> None:
    texts = []
    for path in ("/invocations", "/serving-endpoints/assistant/invocations"):
        async with Predictor.from_endpoint(url=agent_server + path, model_uri=AGENT) as p:
            texts.append("".join([d.text async for d in p.astream([{"role": "user", "content": "hello"}])]))
            assert (await p.achat("hello")).text == texts[-1]
    assert texts[0] == texts[1] and texts[0].startswith("I answer questions about the demo iris model.")


def test_text_arrives_while_the_model_is_still_producing(served: Predictor) -> None:
    # 100 ms between 38 chunks, 3.7 s: a buffered answer would arrive all at once, at the end. Chunks
    # sent before the client reads the first pile up: 1.5 s lets it be 2.2 s late (at 50 ms: 0.35 s).
    arrivals = [time.monotonic() for d in served.stream("hello", custom_inputs={"pace_ms": 100}) if d.text]
    assert len(arrivals) > 30
    assert arrivals[-1] - arrivals[0] >= 1.5


def test_a_stall_between_chunks_is_an_interruption_saying_what_arrived(served: Predictor) -> None:
    got = []
    with pytest.raises(StreamInterruptedError) as info:
        # The first chunk comes unpaced, then a 60 s stall (the server's stream thread, a daemon, sleeps
        # it out). The headers and first chunk must come within the timeout: 1 s was tight on a loaded
        # machine; 3 s, paid once per format.
        for d in served.stream("hello", custom_inputs={"pace_ms": 60_000}, timeout=3.0):
            got.append(d.text)
    assert info.value.timed_out and info.value.text_received == len("".join(got)) > 0


def test_an_error_inside_the_model_is_a_stream_event_error(served: Predictor) -> None:
    with pytest.raises(StreamEventError, match="could not convert"):
        list(served.stream("hello", custom_inputs={"pace_ms": "soon"}))


def test_by_endpoint_name_the_task_says_chat_and_ids_come_back(
    fmt: str, workspace, chat_servers: ChatServers, agent_registry: str, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    ws = workspace()
    model, _, task = CHAT_FORMATS[fmt]
    ws.add_endpoint(Endpoint(name="support-agent", entity_name=model, entity_version="1",
                             upstream=chat_servers[fmt], served_model_name="assistant-1", task=task,
                             ai_gateway={"inference_table_config": {"catalog_name": "main", "schema_name": "logs",
                                                                    "table_name_prefix": "agent", "enabled": True}}))
    ws.add_pat("pat-123")
    monkeypatch.setenv("DATABRICKS_HOST", ws.url)
    monkeypatch.setenv("DATABRICKS_TOKEN", "pat-123")
    for var in ("DATABRICKS_CLIENT_ID", "DATABRICKS_CLIENT_SECRET"):
        monkeypatch.delenv(var, raising=False)
    with Predictor.from_endpoint("support-agent", registry_uri=agent_registry) as p:
        assert p.kind == "chat"
        stream = p.stream(QUESTION)
        text = "".join(d.text for d in stream)
        result = stream.get_final_result()
        reply = p.chat(QUESTION)
    assert text == reply.text and reply.text.endswith("Iris virginica.")
    for answer in (result, reply):
        assert answer.trace_id and answer.trace_id.startswith("tr-")
        assert answer.request_id and answer.endpoint == "support-agent"
        assert answer.model_version == "1"
    assert reply.served_model_name == "assistant-1"

    # The endpoint's inference table: one row per invocation, the documented columns, raw JSON.
    # A stream's row is written when the stand-in's relay of it ends. 60 s for a loaded machine: the
    # loop ends as soon as both rows are there.
    deadline = time.monotonic() + 60
    while len(rows := ws.read_rows("main.logs.agent_payload")) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [tuple(r) for r in rows] == [PAYLOAD_COLUMNS] * 2
    logged = {r["databricks_request_id"]: r for r in rows}
    streamed, whole = logged[str(result.request_id)], logged[str(reply.request_id)]
    [entity] = ws.read_rows("system.serving.served_entities")
    assert (entity["endpoint_name"], entity["served_entity_name"], entity["entity_version"]) == (
        "support-agent", "assistant-1", "1")
    for row in (streamed, whole):
        assert (row["status_code"], row["served_entity_id"], row["requester"], row["logging_error_codes"]) == (
            200, entity["served_entity_id"], "user@example.com", [])
        assert QUESTION in row["request"] and row["execution_duration_ms"] >= 0
    assert json.loads(streamed["request"])["stream"] is True and "stream" not in json.loads(whole["request"])
    ids = {"databricks_request_id": reply.request_id, "trace": {"info": {"trace_id": reply.trace_id}}}
    assert json.loads(whole["response"])["databricks_output"] == ids  # the answer as the client got it
    events = json.loads(streamed["response"])  # a stream: its events, aggregated in one JSON array
    assert len(events) > 10 and all(isinstance(e, dict) for e in events)
    assert {"databricks_output": {"databricks_request_id": result.request_id,
                                  "trace": {"info": {"trace_id": result.trace_id}}}} in events


def test_feedback_right_after_a_streamed_endpoint_answer_lands_on_the_servers_trace(agent_server: str) -> None:
    """The agent server sends the trace id before it exports the trace: the vote waits for it.
    (One format: the trace ids of the others are checked above, and the wait is the same.)"""
    import mlflow

    served = Predictor.from_endpoint(url=f"{agent_server}/serving-endpoints/assistant/invocations", model_uri=AGENT)

    from client.feedback import FEEDBACK_NAME, record_feedback

    stream = served.stream(QUESTION)
    for _ in stream:
        pass
    trace_id = stream.get_final_result().trace_id
    assert trace_id
    down = record_feedback(trace_id, "ann@example.com", thumbs_up=False, comment="which version?")
    up = record_feedback(trace_id, "ann@example.com", thumbs_up=True)
    trace = mlflow.get_trace(trace_id)
    [vote] = [a for a in trace.info.assessments if a.name == FEEDBACK_NAME and a.valid is not False]
    assert (vote.source.source_type, vote.source.source_id) == ("HUMAN", "ann@example.com")
    assert (vote.value, vote.rationale) == (True, "which version?")
    assert vote.assessment_id == down.assessment_id == up.assessment_id


@pytest.fixture(scope="module")
def agent_server_tracing_to_its_experiment(agent_registry: str) -> Any:
    """``predictor serve ... --experiment /chat-traces-e2e``: the agent server's traces go there."""
    from conftest import _start_server

    yield from _start_server(AGENT, "assistant", agent_registry, "--experiment", "/chat-traces-e2e")


def test_chat_answers_count_in_the_feedback_summary_of_the_servers_experiment(
    agent_server_tracing_to_its_experiment: str, agent_registry: str
) -> None:
    """Two answers, one vote: the summary of the assistant model, read from the app's experiment and
    PREDICTOR_TRACE_EXPERIMENT, says 2 predictions, 1 with feedback (before tagging: nothing)."""
    import mlflow

    from client.feedback import record_feedback, summarize, tag_answer_trace
    from frontends.core.feedback import trace_experiment_ids

    app_experiment = mlflow.create_experiment(f"/chat-app-e2e-{time.time_ns()}")
    experiments = trace_experiment_ids(app_experiment, {"PREDICTOR_TRACE_EXPERIMENT": "/chat-traces-e2e"})
    server_experiment = mlflow.get_experiment_by_name("/chat-traces-e2e")
    assert server_experiment is not None and experiments == [app_experiment, server_experiment.experiment_id]

    url = f"{agent_server_tracing_to_its_experiment}/serving-endpoints/assistant/invocations"
    with Predictor.from_endpoint(url=url, model_uri=AGENT) as p:
        answers = []
        for question in (QUESTION, "hello"):
            stream = p.stream(question)
            for _ in stream:
                pass
            answers.append(stream.get_final_result())
    assert all(a.trace_id for a in answers)
    assert summarize("main.default.assistant", experiments) == []  # untagged: the gap this closes
    assert [tag_answer_trace(a) for a in answers] == [True, True]
    for a in answers:  # in the server's experiment, tagged like a tabular prediction's trace
        trace = mlflow.get_trace(str(a.trace_id))
        assert trace.info.experiment_id == server_experiment.experiment_id
        assert trace.info.tags["predictor.model_name"] == "main.default.assistant"
        assert trace.info.tags["predictor.mode"] == "endpoint"
    record_feedback(str(answers[0].trace_id), "ann@example.com", thumbs_up=False, comment="too long")

    [row] = summarize("main.default.assistant", experiments)
    assert (row.model_version, row.served_model_name) == ("1", "assistant-1")
    assert (row.predictions, row.with_feedback, row.thumbs_down, row.thumbs_up) == (2, 1, 1, 0)
    assert [c.text for c in row.comments] == ["too long"]
    assert summarize("main.default.assistant", [app_experiment]) == []  # not found without the setting


def test_a_trace_that_cannot_be_tagged_costs_a_warning_not_the_chat(
    agent_registry: str, caplog: pytest.LogCaptureFixture
) -> None:
    from client import ChatResult
    from client.feedback import tag_answer_trace

    missing = ChatResult(text="hi", messages=[], trace_id="tr-0000000000000000000000000000dead", model_name="m")
    assert tag_answer_trace(missing, wait_s=0.5) is False
    assert "not tagged" in caplog.text


# --- the openai package against `predictor serve` (Model Serving's OpenAI-compatible routes) ------------------


def _openai(chat_servers: ChatServers, fmt: str) -> Any:
    from openai import OpenAI

    return OpenAI(base_url=f"{chat_servers[fmt]}/serving-endpoints", api_key="any-token", max_retries=0)


def test_the_openai_package_gets_the_same_answers_whole_and_streamed(
    fmt: str, served: Predictor, chat_servers: ChatServers
) -> None:
    """``chat.completions.create`` for a ChatModel and a ChatAgent, ``responses.create`` for a
    ResponsesAgent, as Databricks documents; the answer is the one ``/invocations`` gives the SDK.
    A ChatAgent's answer keeps its own shape (``messages``; ``delta`` chunks), as on ``/invocations``."""
    client, name = _openai(chat_servers, fmt), CHAT_FORMATS[fmt][1]
    expected = served.chat(QUESTION).text
    question = [{"role": "user", "content": QUESTION}]
    if fmt == "responses":
        raw = client.responses.with_raw_response.create(model=name, input=question)
        whole = raw.parse().output_text
        events = list(client.responses.create(model=name, input=question, stream=True))
        streamed = "".join(e.delta for e in events if e.type == "response.output_text.delta")
        assert [o.type for o in raw.parse().output] == ["function_call", "function_call_output", "message"]
    else:
        raw = client.chat.completions.with_raw_response.create(model=name, messages=question)
        answer = raw.parse()
        chunks = list(client.chat.completions.create(model=name, messages=question, stream=True))
        if fmt == "completions":
            whole = answer.choices[0].message.content
            streamed = "".join(c.choices[0].delta.content or "" for c in chunks)
        else:
            whole = answer.model_extra["messages"][-1]["content"]
            streamed = "".join(c.model_extra["delta"]["content"] for c in chunks
                               if c.model_extra["delta"]["role"] == "assistant")
        assert len(chunks) > 10  # word by word
    assert whole == streamed == expected
    assert raw.headers["served-model-name"] == f"{CHAT_FORMATS[fmt][0].split('.')[-1]}-1"


def test_the_openai_package_gets_clear_errors(chat_servers: ChatServers) -> None:
    import openai

    chat_agent = _openai(chat_servers, "chat_agent")
    question = [{"role": "user", "content": "hello"}]
    with pytest.raises(openai.NotFoundError) as missing:
        chat_agent.chat.completions.create(model="no-such-endpoint", messages=question)
    assert (missing.value.status_code, missing.value.code, missing.value.param) == (404, "model_not_found", "model")
    assert "'no-such-endpoint' does not exist" in missing.value.message
    assert "serves endpoint 'chat-agent'" in missing.value.message
    with pytest.raises(openai.BadRequestError, match="serves a ChatAgent: use /serving-endpoints/chat/completions"):
        chat_agent.responses.create(model="chat-agent", input=question)
    with pytest.raises(openai.BadRequestError, match="serves a ResponsesAgent: use /serving-endpoints/responses"):
        _openai(chat_servers, "responses").chat.completions.create(model="assistant", messages=question)
    with pytest.raises(openai.APIError, match="could not convert string to float"):  # the model's error, mid-stream
        list(_openai(chat_servers, "completions").chat.completions.create(
            model="chat-model", messages=question, stream=True, extra_body={"custom_inputs": {"pace_ms": "soon"}}))


# --- an agent deployed as a Databricks App (``apps/<name>``) ----------------------------------------------------


def test_an_agent_deployed_as_a_databricks_app_is_talked_to_like_an_endpoint(
    workspace, agent_server: str, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    """As databricks-openai routes ``model="apps/<name>"``: the App's URL from ``GET /api/2.0/apps/{name}``,
    then the Responses API at ``{url}/responses`` with the workspace's OAuth token; here the stand-in
    plays the workspace and the App's front, MLflow's agent server the agent inside the App."""
    from client import ConfigurationError, NotFoundError

    ws = workspace(token_lifetime=3600)
    ws.add_app("support-agent", agent_server)
    monkeypatch.setenv("DATABRICKS_HOST", ws.url)
    monkeypatch.setenv("DATABRICKS_CLIENT_ID", ws.client_id)
    monkeypatch.setenv("DATABRICKS_CLIENT_SECRET", ws.client_secret)
    monkeypatch.delenv("DATABRICKS_TOKEN", raising=False)
    with Predictor.from_app("apps/support-agent") as p:
        assert (p.kind, p.url) == ("chat", f"{ws.url}/app/support-agent/responses")
        stream = p.stream(QUESTION)
        text = "".join(d.text for d in stream)
        streamed = stream.get_final_result()
        reply = p.chat(QUESTION)
    assert text == streamed.text == reply.text and reply.text.endswith("is an Iris virginica.")
    assert [c.name for c in reply.tool_calls] == ["classify_iris"]
    assert streamed.trace_id and reply.trace_id and reply.trace_id.startswith("tr-")
    assert ws.requests.count(("GET", "/api/2.0/apps/support-agent")) == 1  # the URL is looked up once

    from frontends.core.session import AppConfig, build_predictor

    config = AppConfig.from_env({"PREDICTOR_AGENT_APP": "support-agent"})  # the chat pages' setting
    with build_predictor(config) as app_predictor:
        assert (config.source, app_predictor.url, app_predictor.kind) == ("agent app support-agent", p.url, "chat")
    assert ws.requests.count(("POST", "/app/support-agent/responses")) == 2 and ws.rejected == 0

    with pytest.raises(NotFoundError, match="no-such-app"):
        Predictor.from_app("no-such-app")
    with pytest.raises(ConfigurationError, match="not a Databricks App name"):
        Predictor.from_app("../serving-endpoints/x")
    ws.add_pat("pat-123")  # Apps take no personal access tokens: refused before the App is asked anything
    monkeypatch.setenv("DATABRICKS_TOKEN", "pat-123")
    for var in ("DATABRICKS_CLIENT_ID", "DATABRICKS_CLIENT_SECRET"):
        monkeypatch.delenv(var)
    sent = len(ws.requests)
    with pytest.raises(ConfigurationError, match="OAuth tokens only"):
        Predictor.from_app("support-agent")
    assert [path for _, path in ws.requests[sent:] if "/apps/" in path or path.startswith("/app/")] == []
