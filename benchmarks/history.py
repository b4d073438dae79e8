"""The conversation store: opening a conversation of 200 messages and listing 1,000 conversations,
on SQLite and on PostgreSQL, ``HistoryStore`` against the same query written by hand with the raw
driver (``sqlite3``; ``psycopg``), side by side in one run.

The Postgres server is a throwaway cluster of Debian's ``postgresql`` (``tests/_postgres.py``,
``make postgres``), on loopback with a password, as the tests use it. One user has 1,000
conversations (10 messages each, with votes on half the answers) and one more of 200 messages;
another user as many, so every query has rows to skip. Per operation: the median of
``--repeat`` runs after a warm-up, and the store/raw ratio. "Interactive" here: well under the
100 ms a click may take before a page feels slow.

    .venv/bin/python benchmarks/history.py [--repeat 30]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from frontends.core.history import Answer, HistoryStore  # noqa: E402

USERS = ("ann@example.com", "bob@example.com")
CONVERSATIONS = 1_000


def fill(store: HistoryStore) -> str:
    """Both users' conversations; the id of ann's 200-message one."""
    for user in USERS:
        for i in range(CONVERSATIONS):
            conv = None
            for j in range(5):
                conv, answer = store.add_turn(user, conv, f"question {i}.{j} " + "x" * 200,
                                              Answer("answer " + "y" * 400, trace_id=f"tr-{user}-{i}-{j}"))
                if j % 2 == 0:
                    store.vote(user, answer, thumbs_up=j % 4 == 0, comment="ok")
    long = None
    for j in range(100):
        long, _ = store.add_turn(USERS[0], long, f"long {j} " + "x" * 200, Answer("z" * 400, trace_id=f"long-{j}"))
    assert long is not None
    return long


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


OPEN_SQL = ("SELECT m.id, m.role, m.content, m.status, m.trace_id, m.served_version, m.created_at, v.thumbs_up, "
            "v.comment FROM {s}messages m JOIN {s}conversations c ON c.id = m.conversation_id "
            "LEFT JOIN {s}votes v ON v.message_id = m.id AND v.user_id = {p} "
            "WHERE m.conversation_id = {p} AND c.user_id = {p} ORDER BY m.id")
LIST_SQL = ("SELECT id, title, created_at, updated_at FROM {s}conversations WHERE user_id = {p} "
            "ORDER BY updated_at DESC, id DESC LIMIT 21 OFFSET {offset}")


def run(name: str, store: HistoryStore, raw: Callable[[str, tuple], list], schema: str, param: str,
        repeat: int) -> list[tuple[str, float, float]]:
    long = fill(store)
    s = f"{schema}." if schema else ""
    user = USERS[0]
    rows = []
    assert len(store.messages(user, long)) == 200
    assert len(raw(OPEN_SQL.format(s=s, p=param), (user, long, user))) == 200
    rows.append((f"{name}: open a conversation of 200 messages",
                 median_ms(lambda: store.messages(user, long), repeat),
                 median_ms(lambda: raw(OPEN_SQL.format(s=s, p=param), (user, long, user)), repeat)))
    for page in (0, 49):  # the first page, and the last of 1,001 conversations at 20 a page
        rows.append((f"{name}: list 20 of 1,001 conversations, page {page + 1}",
                     median_ms(lambda page=page: store.conversations(user, page, 20), repeat),
                     median_ms(lambda page=page: raw(LIST_SQL.format(s=s, p=param, offset=page * 20), (user,)),
                               repeat)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        import sqlite3

        path = Path(tmp) / "history.db"
        store = HistoryStore.connect(f"sqlite:///{path}")
        conn = sqlite3.connect(path)
        results += run("SQLite", store, lambda sql, params: conn.execute(sql, params).fetchall(), "", "?",
                       args.repeat)
        store.close()
        conn.close()

    import psycopg
    from _postgres import PostgresCluster

    with PostgresCluster.start() as pg:
        pg.sql("CREATE ROLE bench LOGIN PASSWORD 'bench-token'")
        pg.sql("CREATE DATABASE bench OWNER bench")
        store = HistoryStore.connect(pg.url("bench", "bench"), password=lambda: "bench-token")
        with psycopg.connect(host="127.0.0.1", port=pg.port, user="bench", password="bench-token",
                             dbname="bench") as conn:
            results += run("PostgreSQL", store, lambda sql, params: conn.execute(sql, params).fetchall(),
                           "predictor_chat", "%s", args.repeat)
        store.close()

    print(f"# history store, {platform.python_version()}, {platform.machine()}, median of {args.repeat}")
    print("| operation | HistoryStore ms | raw driver ms | store/raw |")
    print("|---|---|---|---|")
    for what, ours, raw_ms in results:
        print(f"| {what} | {ours:.2f} | {raw_ms:.2f} | {ours / raw_ms:.2f} × |")


if __name__ == "__main__":
    main()
