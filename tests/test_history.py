"""The conversation store (``frontends/core/history.py``): the same test bodies on SQLite and on a
real PostgreSQL server (a throwaway cluster, ``tests/_postgres.py``), where the app's role is an
ordinary one that logs in with a password over TCP, as on Lakebase; then the token-as-password
path with a token that rotates, and the configuration from the environment.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa

from frontends.core.history import (
    CONNECT_TIMEOUT_S,
    COOL_DOWN_S,
    MAX_CONTENT_CHARS,
    SCHEMA_VERSION,
    Answer,
    Breaker,
    ConversationNotFound,
    HistoryError,
    HistoryStore,
    HistoryUnavailable,
    MessageTooLarge,
    breaker_for,
    store_from_env,
    title_from,
)

BACKENDS = ["sqlite", "postgres"]


def _app_role(postgres, name: str, password: str) -> None:
    """An ordinary role with what a Lakebase ``CAN_CONNECT_AND_CREATE`` gives: connect, create a schema."""
    postgres.sql(f"CREATE ROLE {name} LOGIN PASSWORD '{password}'")
    postgres.sql(f"CREATE DATABASE {name}_db")
    postgres.sql(f"REVOKE ALL ON DATABASE {name}_db FROM PUBLIC")
    postgres.sql(f"GRANT CONNECT, CREATE ON DATABASE {name}_db TO {name}")


@pytest.fixture(scope="module", params=BACKENDS)
def store(request, tmp_path_factory) -> Iterator[HistoryStore]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('history') / 'history.db'}"
        made = HistoryStore.connect(url)
    else:
        postgres = request.getfixturevalue("postgres")
        _app_role(postgres, "chat_app", "pw-1")
        made = HistoryStore.connect(postgres.url("chat_app", "chat_app_db"), password=lambda: "pw-1")
    yield made
    made.close()


def _user() -> str:
    return f"{uuid.uuid4().hex[:8]}@example.com"


def test_a_user_reaches_only_their_own_conversations_even_by_crafted_ids(store: HistoryStore) -> None:
    alice, bob = _user(), _user()
    conv, answer = store.add_turn(alice, None, "Which iris?", Answer("setosa", trace_id="tr-a"))
    bobs, _ = store.add_turn(bob, None, "Hello", Answer("Hi"))
    assert [c.id for c in store.conversations(alice).items] == [conv]
    assert [c.id for c in store.conversations(bob).items] == [bobs]
    # bob with alice's ids (as a crafted request would carry them): not found, and nothing changes
    for attempt in (lambda: store.messages(bob, conv), lambda: store.title(bob, conv),
                    lambda: store.rename(bob, conv, "mine now"), lambda: store.delete(bob, conv),
                    lambda: store.vote(bob, answer, thumbs_up=False),
                    lambda: store.add_turn(bob, conv, "sneak", Answer("in"))):
        with pytest.raises(ConversationNotFound):
            attempt()
    [question, reply] = store.messages(alice, conv)
    assert (question.content, reply.content, reply.thumbs_up) == ("Which iris?", "setosa", None)
    assert store.title(alice, conv) == "Which iris?"
    with pytest.raises(ConversationNotFound):  # a user message cannot be voted on, nor an unknown id
        store.vote(alice, question.id, thumbs_up=True)
    with pytest.raises(ConversationNotFound):
        store.vote(alice, 10**12, thumbs_up=True)


def test_turns_states_votes_titles_and_pages(store: HistoryStore) -> None:
    user = _user()
    conv, first = store.add_turn(user, None, "  What is\n an   iris? ", Answer("A flower.", trace_id="t1",
                                                                               served_version="3"))
    _, stopped = store.add_turn(user, conv, "Longer please", Answer("It is a", status="stopped"))
    _, failed = store.add_turn(user, conv, "And?", Answer("**The chat failed:** busy", status="failed"))
    store.vote(user, first, thumbs_up=False, comment="too short")
    store.vote(user, first, thumbs_up=True, comment="fine")  # a second vote replaces the first
    got = store.messages(user, conv)
    assert [(m.role, m.content, m.status) for m in got] == [
        ("user", "  What is\n an   iris? ", "ok"), ("assistant", "A flower.", "ok"),
        ("user", "Longer please", "ok"), ("assistant", "It is a", "stopped"),
        ("user", "And?", "ok"), ("assistant", "**The chat failed:** busy", "failed")]
    assert (got[1].trace_id, got[1].served_version, got[1].thumbs_up, got[1].comment) == ("t1", "3", True, "fine")
    assert [m.id for m in got if m.role == "assistant"] == [first, stopped, failed]
    assert store.title(user, conv) == "What is an iris?"

    # newest first (by last change), 2 per page
    later = [store.add_turn(user, None, f"question {i}", Answer(f"answer {i}"))[0] for i in range(3)]
    store.add_turn(user, conv, "one more", Answer("ok"))  # continuing it moves it to the top
    page0, page1, page2 = (store.conversations(user, page=i, size=2) for i in range(3))
    assert [c.id for c in page0.items + page1.items] == [conv, later[2], later[1], later[0]]
    assert (page0.has_more, page1.has_more, page2.items, page2.has_more) == (True, False, [], False)

    assert store.rename(user, conv, "  <b>My</b>\n**iris**  ") == "<b>My</b> **iris**"  # text, kept as typed
    assert store.conversations(user).items[0].title == "<b>My</b> **iris**"
    with pytest.raises(ValueError, match="empty"):
        store.rename(user, conv, "   ")

    store.delete(user, conv)  # with its messages and votes
    for stale in (lambda: store.messages(user, conv), lambda: store.vote(user, first, thumbs_up=True),
                  lambda: store.add_turn(user, conv, "from a stale page", Answer("x")),
                  lambda: store.delete(user, conv)):
        with pytest.raises(ConversationNotFound, match="deleted"):
            stale()
    assert conv not in [c.id for c in store.conversations(user, size=50).items]


def test_a_one_megabyte_message_is_kept_whole_and_a_larger_one_is_refused_whole(store: HistoryStore) -> None:
    user = _user()
    big = ("ab\u00e9<x>" * 200_000)[: 1024 * 1024]
    conv, _ = store.add_turn(user, None, big, Answer("ok"))
    assert store.messages(user, conv)[0].content == big
    assert store.title(user, conv) == title_from(big) and len(title_from(big)) == 80
    with pytest.raises(MessageTooLarge, match="2,000,000"):
        store.add_turn(user, conv, "x" * (MAX_CONTENT_CHARS + 1), Answer("never stored"))
    with pytest.raises(MessageTooLarge):
        store.add_turn(user, None, "small", Answer("y" * (MAX_CONTENT_CHARS + 1)))
    assert len(store.messages(user, conv)) == 2 and len(store.conversations(user).items) == 1  # nothing half-written


def test_a_restarted_app_finds_everything_and_a_newer_schema_is_refused(store: HistoryStore) -> None:
    user = _user()
    conv, answer = store.add_turn(user, None, "before the restart", Answer("kept", trace_id="tr"))
    store.vote(user, answer, thumbs_up=False, comment="meh")
    again = HistoryStore(store.engine)  # a new process on the same database: migrating again is harmless
    again.migrate()
    [_, reply] = again.messages(user, conv)
    assert (reply.content, reply.thumbs_up, reply.comment) == ("kept", False, "meh")

    schema_table = f"{store.schema}.history_schema" if store.schema else "history_schema"
    with store.engine.connect() as conn:  # the versioned schema table says where it stands
        assert conn.execute(sa.text(f"SELECT version FROM {schema_table}")).scalars().all() == [SCHEMA_VERSION]
        conn.execute(sa.text(f"INSERT INTO {schema_table} VALUES (99)"))
        conn.commit()
    try:
        with pytest.raises(HistoryError, match="version 99, newer"):
            again.migrate()
    finally:
        with store.engine.connect() as conn:
            conn.execute(sa.text(f"DELETE FROM {schema_table} WHERE version = 99"))
            conn.commit()


@contextmanager
def _connects(engine: sa.Engine | type[sa.Engine]) -> Iterator[list[int]]:
    """One item per connection ``engine`` (or any engine) tries to open, while in the block."""
    attempts: list[int] = []

    def attempt(*_: object) -> None:
        attempts.append(1)

    sa.event.listen(engine, "do_connect", attempt)
    try:
        yield attempts
    finally:
        sa.event.remove(engine, "do_connect", attempt)


def test_a_database_that_is_down_is_history_unavailable_quickly(tmp_path: Path, postgres) -> None:
    """Then, for ``COOL_DOWN_S``, unavailable at once, no connection tried (a page rerun does not wait
    up to CONNECT_TIMEOUT_S again); then one call tries again. The clock is the breaker's, patched."""
    closed = postgres.url("nobody").replace(f":{postgres.port}/", ":1/")  # nothing listens on port 1
    for url in (closed, f"sqlite:///{tmp_path}"):  # a directory is no database file
        now = [1000.0]
        store = HistoryStore.connect(url, migrate=False, breaker=Breaker(clock=lambda now=now: now[0]))
        with _connects(store.engine) as attempts:
            with pytest.raises(HistoryUnavailable, match="unavailable"):
                store.add_turn("ann", None, "hi", Answer("hello"))
            assert attempts and store.breaker.state == "open"
            tried = len(attempts)
            now[0] += COOL_DOWN_S - 1
            started = time.perf_counter()
            with pytest.raises(HistoryUnavailable, match=r"unavailable \(failed; tried again in 1 s\)"):
                store.conversations("ann")
            assert len(attempts) == tried and time.perf_counter() - started < CONNECT_TIMEOUT_S  # nothing tried
            now[0] += 1  # the cool-down over: one call tries (half-open); still down, open again
            with pytest.raises(HistoryUnavailable):
                store.conversations("ann")
            assert len(attempts) > tried and store.breaker.state == "open"


def test_the_breaker_opens_on_a_failure_lets_one_trial_through_after_the_cool_down_and_closes_on_success() -> None:
    now = [0.0]
    breaker = Breaker(cool_down_s=30, clock=lambda: now[0])
    assert breaker.state == "closed" and breaker.allow() and breaker.allow() and breaker.retry_in() == 0
    breaker.failed()
    now[0] = 29.5
    assert (breaker.state, breaker.allow(), breaker.retry_in()) == ("open", False, 0.5)
    now[0] = 30.0
    assert breaker.state == "half-open"
    assert breaker.allow() and not breaker.allow()  # one trial at a time, the others still refused
    breaker.failed()  # the trial failed: 30 s more from now
    now[0] = 59.9
    assert (breaker.state, breaker.allow()) == ("open", False)
    now[0] = 60.0
    assert breaker.allow()
    breaker.succeeded()
    assert breaker.state == "closed" and breaker.allow() and breaker.allow()
    assert COOL_DOWN_S == Breaker().cool_down_s == 30


def test_a_page_run_after_a_failed_open_does_not_try_the_database_until_the_cool_down_is_over(
        tmp_path: Path) -> None:
    """The pages open the store again on their next run when it could not be opened: the stores of one
    database share its breaker, so that run does not try a database that is cooling down."""
    dead = tmp_path / "history.db"
    dead.mkdir()  # no database file can be opened there
    env = {"PREDICTOR_HISTORY": f"sqlite:///{dead}"}
    with _connects(sa.engine.Engine) as attempts:
        with pytest.raises(HistoryUnavailable):
            store_from_env(env)  # a page's first run: tried, failed
        tried = len(attempts)
        assert tried
        with pytest.raises(HistoryUnavailable, match="tried again in"):
            store_from_env(env)  # the next run: nothing tried
        assert len(attempts) == tried
        dead.rmdir()  # the database is back
        breaker = breaker_for(env["PREDICTOR_HISTORY"])
        breaker.cool_down_s = 0  # the cool-down over (rather than waited for)
        store = store_from_env(env)
        assert store is not None and breaker.state == "closed" and len(attempts) > tried
    assert store.add_turn("ann", None, "back?", Answer("yes"))[0]
    store.close()


def test_the_password_is_a_token_minted_per_new_connection_and_rotation_fails_no_request(postgres) -> None:
    import psycopg

    _app_role(postgres, "lakebase_app", "token-1")
    current = {"token": "token-1"}
    minted: list[str] = []

    def token() -> str:
        minted.append(current["token"])
        return current["token"]

    store = HistoryStore.connect(postgres.url("lakebase_app", "lakebase_app_db"), password=token)
    try:
        user = _user()
        conv, _ = store.add_turn(user, None, "first", Answer("one"))
        assert minted and set(minted) == {"token-1"}
        # the identity's token rotates: the old one stops working on the server
        postgres.sql("ALTER ROLE lakebase_app PASSWORD 'token-2'")
        current["token"] = "token-2"
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(host="127.0.0.1", port=postgres.port, user="lakebase_app", password="token-1",
                            dbname="lakebase_app_db").close()
        # the pooled connection is busy elsewhere: the store opens a new one, with the new token
        with store.engine.connect():
            store.add_turn(user, conv, "second", Answer("two"))
        assert minted[-1] == "token-2"
        assert [m.content for m in store.messages(user, conv)] == ["first", "one", "second", "two"]

        # a token the server refuses, or none minted: unavailable, and the token is in no message or repr
        current["token"] = "token-wrong-secret"
        store.engine.dispose()
        with pytest.raises(HistoryUnavailable) as refused:
            store.conversations(user)
        assert "token-wrong-secret" not in str(refused.value) + repr(store)

        def broken() -> str:
            raise RuntimeError("token-endpoint said no: token-wrong-secret")

        failing = HistoryStore.connect(postgres.url("lakebase_app", "lakebase_app_db"), password=broken,
                                       migrate=False)
        with pytest.raises(HistoryUnavailable, match="no database token") as no_token:
            failing.conversations(user)
        assert "token-wrong-secret" not in str(no_token.value)
    finally:
        store.close()


def test_where_the_history_lives_from_the_environment(tmp_path: Path, postgres) -> None:
    assert store_from_env({"PREDICTOR_HISTORY": "off", "PGHOST": "x"}) is None
    assert store_from_env({"DATABRICKS_APP_PORT": "8000"}) is None  # an App without a database resource
    local = store_from_env({"PREDICTOR_HOME": str(tmp_path)})
    assert local is not None and local.engine.url.database == str(tmp_path / "history.db")
    local.close()

    # an App with a Lakebase resource: PG* variables, no password; the token from the identity
    _app_role(postgres, "app_sp", "sp-token")
    env = {"PGHOST": "127.0.0.1", "PGPORT": str(postgres.port), "PGDATABASE": "app_sp_db", "PGUSER": "app_sp",
           "PGSSLMODE": "disable", "PGAPPNAME": "predictor-chat-test", "DATABRICKS_APP_PORT": "8000",
           "PREDICTOR_HISTORY_SCHEMA": "chat_streamlit"}
    lakebase = store_from_env(env, token=lambda: (lambda: "sp-token"))
    assert lakebase is not None
    try:
        conv, _ = lakebase.add_turn("ann", None, "hi", Answer("hello"))
        with lakebase.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT current_setting('application_name')")).scalar() == \
                "predictor-chat-test"
        assert [c.id for c in lakebase.conversations("ann").items] == [conv]
        assert postgres.sql("SELECT table_schema FROM information_schema.tables WHERE table_name = 'conversations'",
                            "app_sp_db") == [("chat_streamlit",)]
    finally:
        lakebase.close()


def test_both_apps_declare_a_lakebase_database_they_may_connect_to_and_create_in() -> None:
    """databricks.yml: each app has a ``database`` resource (``CAN_CONNECT_AND_CREATE``) that
    databricks-sdk's own ``AppResource`` reads back unchanged, and its own Postgres schema."""
    import yaml
    from databricks.sdk.service.apps import AppResource, AppResourceDatabaseDatabasePermission

    bundle = yaml.safe_load((Path(__file__).resolve().parent.parent / "databricks.yml").read_text())
    schemas = []
    for app in bundle["resources"]["apps"].values():
        [resource] = [r for r in app["resources"] if "database" in r]
        parsed = AppResource.from_dict(resource)
        assert parsed.as_dict() == resource
        assert parsed.database is not None and parsed.database.permission is \
            AppResourceDatabaseDatabasePermission.CAN_CONNECT_AND_CREATE
        assert parsed.database.instance_name and parsed.database.database_name
        env = {e["name"]: e.get("value") for e in app["config"]["env"]}
        schemas.append(env["PREDICTOR_HISTORY_SCHEMA"])
    assert len(set(schemas)) == len(schemas) == 2  # two apps, two roles: a schema each


def test_a_reopened_conversation_is_sent_back_in_the_chat_format_and_a_dead_database_never_stops_the_chat(
        tmp_path: Path) -> None:
    from frontends.core.chat import conversation
    from frontends.core.conversations import GONE, UserHistory, chatbot_turns
    from frontends.core.history import HISTORY_OFF, NOT_SAVED
    from frontends.core.markup import safe_markdown

    store = HistoryStore.connect(f"sqlite:///{tmp_path / 'h.db'}")
    ann = UserHistory(store, "ann@example.com")
    answer = "See ![x](http://127.0.0.1:9/x.png) <b>this</b>"
    conv = ann.save(None, "hi", answer, trace_id="t1", served_version="2")
    assert ann.save(conv, "more", "It is *(stopped)*", status="stopped") == conv
    assert ann.save(conv, "again", "fine", trace_id="t3") == conv
    assert ann.vote("t1", thumbs_up=False, comment="no") and not ann.vote("t-unknown", thumbs_up=True)
    turns = ann.open(conv)
    assert turns is not None and ann.note is None
    # the model gets user and assistant turns in order, its own words, without the stopped note
    assert conversation(turns) == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": answer},
                                   {"role": "user", "content": "more"}, {"role": "user", "content": "again"},
                                   {"role": "assistant", "content": "fine"}]
    assert (turns[1]["thumbs_up"], turns[1]["comment"], turns[1]["caption"]) == (False, "no", "version 2")
    # Gradio: shown made safe, mapped back to the model's text; thumbs and traces per answer
    messages, originals, thumbs, traces = chatbot_turns(turns)
    assert messages[1]["content"] == safe_markdown(answer) != answer
    # as on the live page, Gradio's Chatbot keeps a stopped answer as a turn of the model's: sent back too
    sent = conversation(turns)
    assert conversation(messages, originals) == [*sent[:3], {"role": "assistant", "content": "It is *(stopped)*"},
                                                 *sent[3:]]
    assert (thumbs, traces) == (["Dislike", None, None], ["t1", None, "t3"])

    bob = UserHistory(store, "bob@example.com")
    assert bob.open(conv) is None and bob.note == GONE  # not his: as if it never existed
    assert not bob.delete(conv) and ann.open(conv) is not None

    store.close()
    (tmp_path / "h.db").unlink()
    (tmp_path / "h.db").mkdir()  # the database is gone: no file can be opened there
    down = UserHistory(HistoryStore.connect(f"sqlite:///{tmp_path / 'h.db'}", migrate=False), "ann@example.com")
    assert down.save(conv, "still answered?", "yes") == conv and down.note == NOT_SAVED
    assert down.page() is None and down.open(conv) is None and down.note == NOT_SAVED
    off = UserHistory(None, "ann@example.com")
    assert (off.save(None, "q", "a"), off.page(), off.note) == (None, None, HISTORY_OFF)
