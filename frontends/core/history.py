"""Conversations that last: each signed-in user's chats, their answers and votes, in a database.

Framework-neutral (both chat pages use it), one schema and one code path for SQLite and Postgres
(SQLAlchemy Core; ``psycopg`` 3 for Postgres). Every query takes the user and filters on them:
an id belonging to someone else is "not found", exactly like an id that never existed.

Where the history lives (:func:`store_from_env`, first match wins):

* ``PREDICTOR_HISTORY=off``: nowhere (the pages say "history off");
* ``PREDICTOR_HISTORY=<SQLAlchemy URL>``: there (``sqlite:///...``, ``postgresql+psycopg://...``);
* ``PGHOST`` set (a Databricks App with a Lakebase database resource): Postgres from ``PGHOST``,
  ``PGPORT``, ``PGDATABASE``, ``PGUSER``, ``PGSSLMODE``, ``PGAPPNAME``; there is no password: each
  new connection gets a fresh OAuth token of the app's identity (databricks-sdk), and pooled
  connections are replaced before a token could expire (``TOKEN_RECYCLE_S``);
* inside a Databricks App without a database: nowhere (its disk does not outlive a restart);
* otherwise (a laptop, ``make demo``): SQLite in ``$PREDICTOR_HOME/history.db``.

Limits (decided, documented here): a message up to ``MAX_CONTENT_CHARS`` (2,000,000 characters,
so a 1 MB message is kept whole) is stored; a longer one raises :class:`MessageTooLarge` and
nothing of that turn is written. A title is plain text (the pages show it as text, never as
Markdown or HTML), at most ``MAX_TITLE_CHARS``. A database that is down or refuses the app raises
:class:`HistoryUnavailable` (the pages keep answering and say history is not being saved); a
turn is written in one transaction, so nothing is ever half-written.

A database that failed to connect is not tried again for ``COOL_DOWN_S`` (a circuit breaker,
:class:`Breaker`, one per database URL for the stores :func:`store_from_env` opens): until then
every call raises :class:`HistoryUnavailable` at once, so a page rerun does not wait up to
``CONNECT_TIMEOUT_S`` for a database that is still down; then one call tries again.

Example::

    store = HistoryStore.connect("sqlite:///history.db")
    conv, answer_id = store.add_turn("ann@example.com", None, "Hi", Answer("Hello!", trace_id="tr-1"))
    [page] = [store.conversations("ann@example.com")]
    store.vote("ann@example.com", answer_id, thumbs_up=True, comment="nice")
    store.messages("bob@example.com", conv)   # ConversationNotFound: not bob's
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa

__all__ = [
    "HISTORY_ENV",
    "HISTORY_OFF",
    "MAX_CONTENT_CHARS",
    "MAX_TITLE_CHARS",
    "NOT_SAVED",
    "SCHEMA_ENV",
    "SCHEMA_VERSION",
    "COOL_DOWN_S",
    "Answer",
    "Breaker",
    "Conversation",
    "ConversationNotFound",
    "ConversationPage",
    "HistoryError",
    "HistoryStore",
    "HistoryUnavailable",
    "MessageTooLarge",
    "StoredMessage",
    "breaker_for",
    "lakebase_url",
    "store_from_env",
    "title_from",
]

log = logging.getLogger(__name__)

HISTORY_ENV = "PREDICTOR_HISTORY"
#: What a page says when there is no history store at all.
HISTORY_OFF = "History off: conversations are not kept after this page is closed."
#: What a page says when the store failed this time: the answer is shown, not kept.
NOT_SAVED = "History is not being saved right now (the history database is unavailable)."

SCHEMA_VERSION = 1
MAX_CONTENT_CHARS = 2_000_000
MAX_TITLE_CHARS = 200
_TITLE_FROM_MESSAGE = 80
#: Postgres only: the tables live in a schema of their own (the app's role may create it);
#: ``PREDICTOR_HISTORY_SCHEMA`` names another (two apps sharing a database each need their own).
PG_SCHEMA = "predictor_chat"
SCHEMA_ENV = "PREDICTOR_HISTORY_SCHEMA"
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
#: Lakebase tokens last an hour at most; a pooled connection is replaced well before.
TOKEN_RECYCLE_S = 900
CONNECT_TIMEOUT_S = 5
#: After the history database failed to connect, how long no connection is tried (seconds).
COOL_DOWN_S = 30.0
STATUSES = ("ok", "failed", "stopped")


class HistoryError(Exception):
    """Base of the history store's errors (``HistoryUnavailable``, ``ConversationNotFound``, ``MessageTooLarge``)."""


class HistoryUnavailable(HistoryError):
    """The database could not be reached or refused the app; nothing was written."""


class ConversationNotFound(HistoryError, LookupError):
    """No such conversation (or message) for this user: deleted, never existed, or someone else's."""


class MessageTooLarge(HistoryError, ValueError):
    """A message longer than ``MAX_CONTENT_CHARS``: not stored (nothing of its turn is)."""


class Breaker:
    """A circuit breaker for one database. Closed: every call may connect. After a failure to
    connect (:meth:`failed`), open for ``cool_down_s``: :meth:`allow` says no, nothing is tried.
    Then half-open: one caller is allowed through; its success (:meth:`succeeded`) closes the
    breaker, its failure opens it for another ``cool_down_s``. Thread-safe; pure (``clock``
    is the time source, in seconds).

    Example::

        >>> now = [0.0]
        >>> breaker = Breaker(cool_down_s=30, clock=lambda: now[0])
        >>> breaker.failed(); breaker.allow()
        False
        >>> now[0] = 30.0; breaker.allow(), breaker.allow()   # one trial at a time
        (True, False)
        >>> breaker.succeeded(); breaker.allow()
        True
    """

    def __init__(self, cool_down_s: float = COOL_DOWN_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.cool_down_s, self._clock = cool_down_s, clock
        self._opened_at: float | None = None
        self._trial = False
        self._lock = threading.Lock()

    @property
    def state(self) -> str:
        """``"closed"``, ``"open"`` or ``"half-open"`` (a trial may go, or is under way)."""
        with self._lock:
            if self._opened_at is None:
                return "closed"
            return "half-open" if self._trial or self._clock() - self._opened_at >= self.cool_down_s else "open"

    def retry_in(self) -> float:
        """Seconds until a call may try the database again (0: now)."""
        with self._lock:
            if self._opened_at is None:
                return 0.0
            return max(0.0, self.cool_down_s - (self._clock() - self._opened_at))

    def allow(self) -> bool:
        """Whether this call may connect: closed, or the one trial once the cool-down is over."""
        with self._lock:
            if self._opened_at is None:
                return True
            if self._trial or self._clock() - self._opened_at < self.cool_down_s:
                return False
            self._trial = True
            return True

    def failed(self) -> None:
        """A connection failed: open for ``cool_down_s`` from now."""
        with self._lock:
            self._opened_at, self._trial = self._clock(), False

    def succeeded(self) -> None:
        """The database answered: closed."""
        with self._lock:
            self._opened_at, self._trial = None, False


_breakers: dict[str, Breaker] = {}
_breakers_lock = threading.Lock()


def breaker_for(url: str) -> Breaker:
    """The process's one breaker for the database at ``url`` (without its password): every store
    :func:`store_from_env` opens on it shares it, so a store opened again after a failed open (the
    next page run) does not try a database that is still cooling down."""
    key = sa.make_url(url).render_as_string(hide_password=True)
    with _breakers_lock:
        return _breakers.setdefault(key, Breaker())


meta = sa.MetaData()
_schema_table = sa.Table("history_schema", meta, sa.Column("version", sa.Integer, primary_key=True))
conversations = sa.Table(
    "conversations", meta,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("user_id", sa.String(320), nullable=False),
    sa.Column("title", sa.String(MAX_TITLE_CHARS), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_conversations_user_updated", "user_id", "updated_at"),
)
messages = sa.Table(
    "messages", meta,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("conversation_id", sa.String(32), sa.ForeignKey("conversations.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("content", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False, server_default="ok"),
    sa.Column("trace_id", sa.String(128)),
    sa.Column("served_version", sa.String(128)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_messages_conversation", "conversation_id", "id"),
)
votes = sa.Table(
    "votes", meta,
    sa.Column("message_id", sa.BigInteger().with_variant(sa.Integer, "sqlite"),
              sa.ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("user_id", sa.String(320), nullable=False),
    sa.Column("thumbs_up", sa.Boolean, nullable=False),
    sa.Column("comment", sa.Text),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)


@dataclass(frozen=True)
class Answer:
    """The model's side of a turn: its text (what arrived, for a failed or stopped one) and state."""

    text: str
    status: str = "ok"
    trace_id: str | None = None
    served_version: str | None = None


@dataclass(frozen=True)
class Conversation:
    id: str
    title: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class ConversationPage:
    items: list[Conversation]
    page: int
    has_more: bool


@dataclass(frozen=True)
class StoredMessage:
    id: int
    role: str
    content: str
    status: str
    trace_id: str | None
    served_version: str | None
    created_at: datetime
    #: The user's vote on this answer: ``True`` up, ``False`` down, ``None`` none (yet).
    thumbs_up: bool | None = None
    comment: str | None = None


def title_from(text: str) -> str:
    """A conversation's title from its first message: one line, at most 80 characters (pure).

    >>> title_from("  What is\\n an   iris? ")
    'What is an iris?'
    """
    line = " ".join(text.split())
    if len(line) > _TITLE_FROM_MESSAGE:
        line = line[:_TITLE_FROM_MESSAGE - 1].rstrip() + "…"
    return line or "(empty message)"


def _now() -> datetime:
    return datetime.now(UTC)


def _check_size(text: str, what: str) -> None:
    if len(text) > MAX_CONTENT_CHARS:
        raise MessageTooLarge(f"{what} of {len(text):,} characters is longer than the {MAX_CONTENT_CHARS:,} "
                              "the history keeps; not saved")


class HistoryStore:
    """Per-user conversations on one SQLAlchemy engine (see the module docstring).

    Blocking calls: an event loop runs them in a thread (``asyncio.to_thread``).
    """

    def __init__(self, engine: sa.Engine, schema: str = PG_SCHEMA, breaker: Breaker | None = None) -> None:
        self.engine = engine
        #: Whether a call may try the database now (see :class:`Breaker`); one of its own by default.
        self.breaker = breaker if breaker is not None else Breaker()
        self.schema = schema if engine.dialect.name == "postgresql" else None
        if self.schema:
            if not _IDENTIFIER.fullmatch(self.schema):
                raise HistoryError(f"{SCHEMA_ENV}={schema!r}: letters, digits and _ only")
            self._engine = engine.execution_options(schema_translate_map={None: self.schema})
        else:
            self._engine = engine

    @classmethod
    def connect(cls, url: str, *, password: Callable[[], str] | None = None, recycle_s: float = TOKEN_RECYCLE_S,
                migrate: bool = True, schema: str = PG_SCHEMA, breaker: Breaker | None = None) -> HistoryStore:
        """A store on ``url``; ``password``: called for each new connection (an OAuth token);
        ``schema``: the Postgres schema of the tables (one per app when apps share a database);
        ``breaker``: shared with other stores on the same database (:func:`breaker_for`), else its own."""
        parsed = sa.make_url(url)
        if parsed.get_backend_name() == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            engine = sa.create_engine(parsed, connect_args={"timeout": CONNECT_TIMEOUT_S})
        else:
            engine = sa.create_engine(parsed, pool_pre_ping=True, pool_recycle=int(recycle_s),
                                      pool_size=5, max_overflow=10, pool_timeout=CONNECT_TIMEOUT_S,
                                      connect_args={"connect_timeout": CONNECT_TIMEOUT_S})
        if password is not None:
            mint = password

            @sa.event.listens_for(engine, "do_connect")
            def _fresh_password(dialect: Any, record: Any, cargs: Any, cparams: dict[str, Any]) -> None:
                try:  # per new connection: a token renewed before expiry by its provider
                    cparams["password"] = mint()
                except Exception as err:
                    raise HistoryUnavailable(f"no database token could be minted ({type(err).__name__})") from None

        store = cls(engine, schema, breaker)
        if migrate:
            store.migrate()
        return store

    def close(self) -> None:
        self.engine.dispose()

    def __repr__(self) -> str:  # the URL without any password
        return f"HistoryStore({self.engine.url.render_as_string(hide_password=True)!r})"

    @contextmanager
    def _tx(self) -> Iterator[sa.Connection]:
        """One transaction; a database that is down or refuses us is :class:`HistoryUnavailable`,
        and so is every call while the breaker cools down after that (no connection is tried)."""
        if not self.breaker.allow():
            raise HistoryUnavailable(f"the history database is unavailable (failed; tried again in "
                                     f"{self.breaker.retry_in():.0f} s)")
        failed = False
        try:
            with self._engine.begin() as conn:
                yield conn
        except HistoryUnavailable:  # no token could be minted for the connection
            failed = True
            raise
        except HistoryError:
            raise
        except (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError,
                sa.exc.DisconnectionError) as err:
            failed = True
            first = str(getattr(err, "orig", err)).strip().splitlines()[:1]
            log.warning("history database unavailable (not tried again for %g s): %s: %s", self.breaker.cool_down_s,
                        type(err).__name__, first[0] if first else "")
            raise HistoryUnavailable(f"the history database is unavailable ({type(err).__name__})") from None
        finally:  # any other outcome: the database answered (a half-open breaker closes)
            if failed:
                self.breaker.failed()
            else:
                self.breaker.succeeded()

    # -- schema ------------------------------------------------------------------------------

    def migrate(self) -> None:
        """Create the tables, or bring them to ``SCHEMA_VERSION`` (a versioned schema table)."""
        with self._tx() as conn:
            if self.schema:
                # two app instances starting together: one creates, the other waits for it
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": self.schema + ".migrate"})
                conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"'))
            meta.create_all(conn, checkfirst=True)
            found = conn.execute(sa.select(sa.func.max(_schema_table.c.version))).scalar()
            if found is None:
                conn.execute(_schema_table.insert().values(version=SCHEMA_VERSION))
            elif found > SCHEMA_VERSION:
                raise HistoryError(f"the history database has schema version {found}, newer than this app's "
                                   f"{SCHEMA_VERSION}: upgrade the app")
            # found < SCHEMA_VERSION: the migrations from `found` go here (none yet: version 1 is the first)

    # -- conversations -----------------------------------------------------------------------

    def conversations(self, user: str, page: int = 0, size: int = 20) -> ConversationPage:
        """The user's conversations, the latest changed first, ``size`` per page."""
        c = conversations.c
        with self._tx() as conn:
            rows = conn.execute(sa.select(c.id, c.title, c.created_at, c.updated_at)
                                .where(c.user_id == user)
                                .order_by(c.updated_at.desc(), c.id.desc())
                                .limit(size + 1).offset(max(page, 0) * size)).all()
        items = [Conversation(r.id, r.title, r.created_at, r.updated_at) for r in rows[:size]]
        return ConversationPage(items, max(page, 0), len(rows) > size)

    def _owned(self, conn: sa.Connection, user: str, conversation_id: str) -> None:
        c = conversations.c
        found = conn.execute(sa.select(c.id).where(c.id == conversation_id, c.user_id == user)).first()
        if found is None:
            raise ConversationNotFound("no such conversation (it may have been deleted)")

    def title(self, user: str, conversation_id: str) -> str:
        c = conversations.c
        with self._tx() as conn:
            found = conn.execute(sa.select(c.title).where(c.id == conversation_id, c.user_id == user)).scalar()
        if found is None:
            raise ConversationNotFound("no such conversation (it may have been deleted)")
        return str(found)

    def messages(self, user: str, conversation_id: str) -> list[StoredMessage]:
        """A conversation's messages in order, each answer with the user's vote on it."""
        m, v = messages.c, votes.c
        with self._tx() as conn:
            self._owned(conn, user, conversation_id)
            rows = conn.execute(
                sa.select(m.id, m.role, m.content, m.status, m.trace_id, m.served_version, m.created_at,
                          v.thumbs_up, v.comment)
                .select_from(messages.outerjoin(votes, sa.and_(v.message_id == m.id, v.user_id == user)))
                .where(m.conversation_id == conversation_id).order_by(m.id)).all()
        return [StoredMessage(r.id, r.role, r.content, r.status, r.trace_id, r.served_version, r.created_at,
                              r.thumbs_up, r.comment) for r in rows]

    def add_turn(self, user: str, conversation_id: str | None, prompt: str, answer: Answer) -> tuple[str, int]:
        """The user's message and the model's answer (ok, failed or stopped), in one transaction;
        a new conversation (titled from ``prompt``) when ``conversation_id`` is ``None``.
        Returns (conversation id, the answer's message id)."""
        _check_size(prompt, "a message")
        _check_size(answer.text, "an answer")
        if answer.status not in STATUSES:
            raise ValueError(f"answer status {answer.status!r}: one of {', '.join(STATUSES)}")
        now = _now()
        with self._tx() as conn:
            if conversation_id is None:
                conversation_id = uuid.uuid4().hex
                conn.execute(conversations.insert().values(id=conversation_id, user_id=user,
                                                           title=title_from(prompt), created_at=now,
                                                           updated_at=now))
            else:
                self._owned(conn, user, conversation_id)
                conn.execute(conversations.update().where(conversations.c.id == conversation_id)
                             .values(updated_at=now))
            conn.execute(messages.insert().values(conversation_id=conversation_id, role="user", content=prompt,
                                                  status="ok", created_at=now))
            answer_id = conn.execute(messages.insert().values(
                conversation_id=conversation_id, role="assistant", content=answer.text, status=answer.status,
                trace_id=answer.trace_id, served_version=answer.served_version, created_at=now)
            ).inserted_primary_key[0]
        return conversation_id, int(answer_id)

    def rename(self, user: str, conversation_id: str, title: str) -> str:
        """A new title (plain text, one line, at most ``MAX_TITLE_CHARS``); the title stored."""
        title = " ".join(title.split())[:MAX_TITLE_CHARS]
        if not title:
            raise ValueError("a conversation's title cannot be empty")
        c = conversations.c
        with self._tx() as conn:
            done = conn.execute(conversations.update().where(c.id == conversation_id, c.user_id == user)
                                .values(title=title))
            if done.rowcount != 1:
                raise ConversationNotFound("no such conversation (it may have been deleted)")
        return title

    def delete(self, user: str, conversation_id: str) -> None:
        """The conversation, its messages and their votes, together (SQLite does not cascade by default)."""
        m = messages.c
        with self._tx() as conn:
            self._owned(conn, user, conversation_id)
            ids = sa.select(m.id).where(m.conversation_id == conversation_id).scalar_subquery()
            conn.execute(votes.delete().where(votes.c.message_id.in_(ids)))
            conn.execute(messages.delete().where(m.conversation_id == conversation_id))
            conn.execute(conversations.delete().where(conversations.c.id == conversation_id,
                                                      conversations.c.user_id == user))

    def vote(self, user: str, message_id: int, *, thumbs_up: bool, comment: str | None = None) -> StoredMessage:
        """Remember the user's vote on one of their answers (a second vote replaces the first)."""
        _check_size(comment or "", "a comment")
        m, c = messages.c, conversations.c
        with self._tx() as conn:
            row = conn.execute(
                sa.select(m.id, m.role, m.content, m.status, m.trace_id, m.served_version, m.created_at)
                .select_from(messages.join(conversations, c.id == m.conversation_id))
                .where(m.id == message_id, c.user_id == user, m.role == "assistant")).first()
            if row is None:
                raise ConversationNotFound("no such answer (its conversation may have been deleted)")
            conn.execute(votes.delete().where(votes.c.message_id == message_id))
            conn.execute(votes.insert().values(message_id=message_id, user_id=user, thumbs_up=thumbs_up,
                                               comment=comment or None, updated_at=_now()))
        return StoredMessage(row.id, row.role, row.content, row.status, row.trace_id, row.served_version,
                             row.created_at, thumbs_up, comment or None)


    def vote_on_trace(self, user: str, trace_id: str, *, thumbs_up: bool, comment: str | None = None
                      ) -> StoredMessage | None:
        """:meth:`vote` on the user's answer with that trace id (a page that knows an answer by its
        trace); ``None`` when the user has no such answer (a form prediction, another user's trace)."""
        m, c = messages.c, conversations.c
        with self._tx() as conn:
            found = conn.execute(sa.select(sa.func.max(m.id))
                                 .select_from(messages.join(conversations, c.id == m.conversation_id))
                                 .where(m.trace_id == trace_id, c.user_id == user, m.role == "assistant")).scalar()
        return None if found is None else self.vote(user, int(found), thumbs_up=thumbs_up, comment=comment)


def lakebase_url(env: Mapping[str, str]) -> str:
    """The SQLAlchemy URL of the Lakebase database an App's resource describes (``PG*``), no password."""
    user = quote(env.get("PGUSER", ""), safe="")
    host, port = env["PGHOST"], env.get("PGPORT") or "5432"
    query = {"sslmode": env.get("PGSSLMODE") or "require", "application_name": env.get("PGAPPNAME") or ""}
    params = "&".join(f"{k}={quote(v, safe='')}" for k, v in query.items() if v)
    return f"postgresql+psycopg://{user}@{host}:{port}/{quote(env.get('PGDATABASE') or 'databricks_postgres')}?{params}"


def _app_token() -> Callable[[], str]:
    """The app's identity's OAuth token, renewed by databricks-sdk as it nears expiry."""
    from databricks.sdk import WorkspaceClient

    config = WorkspaceClient().config
    return lambda: config.oauth_token().access_token


def store_from_env(env: Mapping[str, str] | None = None,
                   token: Callable[[], Callable[[], str]] = _app_token) -> HistoryStore | None:
    """The app's history store as the environment says (module docstring), or ``None`` (history off).

    Raises :class:`HistoryError` when one is configured but cannot be opened (a page shows it).
    """
    env = os.environ if env is None else env
    wanted = (env.get(HISTORY_ENV) or "").strip()
    if wanted.lower() in ("off", "0", "false", "none"):
        return None
    schema = (env.get(SCHEMA_ENV) or "").strip() or PG_SCHEMA
    if wanted:
        return HistoryStore.connect(wanted, schema=schema, breaker=breaker_for(wanted))
    if env.get("PGHOST"):
        url = lakebase_url(env)
        if env.get("PGPASSWORD"):  # a plain Postgres with a password: libpq reads it itself
            return HistoryStore.connect(url, schema=schema, breaker=breaker_for(url))
        return HistoryStore.connect(url, password=token(), schema=schema, breaker=breaker_for(url))
    if env.get("DATABRICKS_APP_PORT") or env.get("DATABRICKS_APP_NAME"):
        return None  # an App's disk is gone after a restart: no database resource, no history
    home = Path(env.get("PREDICTOR_HOME") or ".predictor").resolve()
    url = f"sqlite:///{home / 'history.db'}"
    return HistoryStore.connect(url, breaker=breaker_for(url))
