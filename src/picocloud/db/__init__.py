"""Storage: one SQLAlchemy engine for SQLite (WAL) or PostgreSQL, and migrations at start."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.orm import DeclarativeBase, sessionmaker

MIGRATIONS = Path(__file__).parent / "migrations"


class Base(DeclarativeBase):
    """Base of every picocloud table; one schema for SQLite and PostgreSQL."""


def normalize_url(url: str) -> str:
    """Map the libpq-style postgresql:// URL onto the psycopg 3 driver."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def make_engine(url: str) -> Engine:
    url = normalize_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, pool_size=8
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return create_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)


def make_sessionmaker(engine: Engine) -> sessionmaker:  # type: ignore[type-arg]
    return sessionmaker(bind=engine, expire_on_commit=False)


def head_revision() -> str:
    """The newest migration, read from the numbered file names (0001_x.py, 0002_y.py...)."""
    names = [p.name.split("_", 1)[0] for p in (MIGRATIONS / "versions").glob("[0-9]*_*.py")]
    return max(names)


def is_current(engine: Engine) -> bool:
    """True when the database is at the newest migration (checked without loading Alembic)."""
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT version_num FROM alembic_version")).all()
    except OperationalError:
        return False
    except ProgrammingError:
        return False
    return [r[0] for r in rows] == [head_revision()]


def upgrade_in_subprocess(url: str) -> None:
    """Migrate from a child process, so the server never holds Alembic (~10 MB) in memory."""
    subprocess.run([sys.executable, "-m", "picocloud.db", url], check=True)


def upgrade(engine: Engine) -> None:
    """Apply every Alembic migration not yet applied (append-only, numbered)."""
    if is_current(engine):
        return
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
