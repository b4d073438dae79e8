"""A fresh local MLflow store in milliseconds: MLflow's own migrated schema, replayed.

A new sqlite store costs MLflow seconds of alembic migrations (the larger part of a fresh
``predictor demo`` after imports). ``schema.sql`` is what those migrations produce:
sqlite's dump of a store MLflow has just created, for the alembic head it names. A store file
that does not exist yet is created from it; MLflow then finds its tables at the head revision
and migrates nothing. If the installed MLflow's head differs (another MLflow version), nothing
is done here and MLflow migrates as usual.

Regenerate after an MLflow upgrade: ``python -m client._mlflow.store`` (tests/test_local_store.py
checks that the file matches what the installed MLflow's migrations make).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import tempfile
from pathlib import Path

logger = logging.getLogger(__name__)

__all__ = ["SCHEMA_FILE", "dump_fresh_store", "seed_sqlite_store"]

SCHEMA_FILE = Path(__file__).with_name("schema.sql")
_HEAD_PREFIX = "-- alembic head: "


def _schema_head(text: str) -> str | None:
    first = text.split("\n", 1)[0]
    return first.removeprefix(_HEAD_PREFIX).strip() if first.startswith(_HEAD_PREFIX) else None


def seed_sqlite_store(path: Path) -> bool:
    """Create the store file ``path`` from the schema snapshot, if it does not exist yet and the
    snapshot is for the installed MLflow's schema head. ``True`` if it did."""
    if path.exists():
        return False
    try:
        from mlflow.store.db.utils import _get_latest_schema_revision

        text = SCHEMA_FILE.read_text()
        if _schema_head(text) != _get_latest_schema_revision():
            logger.debug("schema snapshot is for another MLflow version; MLflow will migrate %s", path)
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".seed-", suffix=".db")
        os.close(fd)
        try:
            with sqlite3.connect(tmp) as conn:
                conn.executescript(text)
            conn.close()
            os.link(tmp, path)  # no-clobber: a store another process created meanwhile is kept
        finally:
            os.unlink(tmp)
    except FileExistsError:
        return False
    except Exception as err:  # any trouble: MLflow creates the store itself, as it would anyway
        logger.debug("could not seed %s (%s); MLflow will migrate it", path, type(err).__name__)
        return False
    return True


def dump_fresh_store() -> str:
    """The snapshot's text: a store freshly created by MLflow's migrations, dumped by sqlite."""
    import sqlalchemy
    from mlflow.store.db.utils import _get_latest_schema_revision, _initialize_tables

    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "fresh.db"
        engine = sqlalchemy.create_engine(f"sqlite:///{db}")
        _initialize_tables(engine)
        engine.dispose()
        with sqlite3.connect(db) as conn:
            lines = list(conn.iterdump())
        conn.close()
    return _HEAD_PREFIX + _get_latest_schema_revision() + "\n" + "\n".join(lines) + "\n"


if __name__ == "__main__":
    SCHEMA_FILE.write_text(dump_fresh_store())
    print(f"wrote {SCHEMA_FILE}")
