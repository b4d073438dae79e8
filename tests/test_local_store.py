"""The schema snapshot a fresh local store is created from is exactly what MLflow's migrations make."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

from client._mlflow.store import SCHEMA_FILE, dump_fresh_store, seed_sqlite_store


def _items(sql: str | None) -> tuple[str, ...]:
    """A statement's comma-separated parts, in order-insensitive form: MLflow's migrations write a
    rebuilt table's columns and constraints in an order that depends on Python's hash seed."""
    return tuple(sorted(part.strip() for part in re.split(r"[,\n]", sql or "") if part.strip()))


def _schema(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        rows = sorted((t, n, tbl, _items(sql)) for t, n, tbl, sql in
                      conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master").fetchall())
        data = sorted(conn.execute("SELECT * FROM alembic_version").fetchall())
    conn.close()
    return rows + data


def test_the_snapshot_is_what_the_installed_mlflow_migrations_make():
    # the same statements; MLflow's migrations create some indexes (and order some tables' parts)
    # in no fixed order
    ours, theirs = SCHEMA_FILE.read_text().splitlines(), dump_fresh_store().splitlines()
    assert ours[0] == theirs[0]  # the alembic head
    assert _items("\n".join(ours)) == _items("\n".join(theirs)), "regenerate: python -m client._mlflow.store"


def test_a_new_store_is_seeded_and_mlflow_uses_it_without_migrating(tmp_path, caplog):
    from mlflow import MlflowClient

    db = tmp_path / "sub" / "mlflow.db"
    assert seed_sqlite_store(db)
    assert not seed_sqlite_store(db)  # an existing store is never touched
    migrated = tmp_path / "migrated.db"
    import sqlalchemy
    from mlflow.store.db.utils import _initialize_tables

    engine = sqlalchemy.create_engine(f"sqlite:///{migrated}")
    _initialize_tables(engine)
    engine.dispose()
    assert _schema(db) == _schema(migrated)

    uri = f"sqlite:///{db}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    caplog.clear()  # the reference store above was migrated, of course
    with caplog.at_level("INFO", logger="mlflow.store.db.utils"):
        exp = client.create_experiment("seeded")
        client.create_registered_model("main.default.seeded")
    assert "Updating database tables" not in caplog.text and "Creating initial" not in caplog.text
    assert client.get_experiment(exp).name == "seeded"
    assert client.get_registered_model("main.default.seeded").name == "main.default.seeded"
