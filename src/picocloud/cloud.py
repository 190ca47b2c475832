"""The running cloud: settings, database, policy and the token authority, shared by services."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState, Session

from picocloud import db as database
from picocloud.errors import Conflict
from picocloud.policy import Enforcer
from picocloud.settings import Settings

if TYPE_CHECKING:
    from picocloud.compute.agent import HostAgent
    from picocloud.compute.models import Server
    from picocloud.compute.virt.base import Hypervisor

IDENTITY_PREFIX = "identity_"
T = TypeVar("T")


def _touches_identity(objs: Any) -> bool:
    return any(getattr(o, "__tablename__", "").startswith(IDENTITY_PREFIX) for o in objs)


class Cloud:
    """One picocloud control plane process; created once by `picocloud up` or a test."""

    def __init__(self, settings: Settings, migrate: str = "inline") -> None:
        """`migrate`: "inline", "subprocess" (keeps Alembic out of a long-lived server) or
        "no"."""
        from picocloud.compute.policies import DEFAULT_RULES as COMPUTE_RULES
        from picocloud.identity.authn import Authenticator
        from picocloud.identity.policies import DEFAULT_RULES as IDENTITY_RULES
        from picocloud.image.policies import DEFAULT_RULES as IMAGE_RULES
        from picocloud.image.stores import ImageStores

        self.settings = settings
        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.engine = database.make_engine(settings.db_url)
        if migrate == "inline":
            database.upgrade(self.engine)
        elif migrate == "subprocess" and not database.is_current(self.engine):
            database.upgrade_in_subprocess(settings.db_url)
        self.sessions = database.make_sessionmaker(self.engine)
        self._install_write_tracking()
        self.policy = Enforcer(IDENTITY_RULES | IMAGE_RULES | COMPUTE_RULES, settings.policy_file)
        self.images = ImageStores.from_settings(settings)
        # Identity data cached by this process is valid while `generation` is unchanged.
        self.generation = 0
        self._db_generation = -1
        self._generation_checked = 0.0
        self._generation_lock = threading.Lock()
        self.tokens = Authenticator(self)
        self.agents: list[HostAgent] = []

    # -- host agents -----------------------------------------------------------------------
    def start_agent(self, driver: Hypervisor | None = None) -> HostAgent:
        """Run this host's agent in-process (all-in-one) with the configured driver."""
        from picocloud.compute.agent import HostAgent
        from picocloud.compute.virt.base import DRIVERS

        if driver is None:
            import picocloud.compute.virt.drivers  # noqa: F401  (registers the drivers)

            compute_dir = self.settings.data_dir / "compute"
            driver = DRIVERS[self.settings.compute_driver](
                state_dir=compute_dir / "guests", image_cache_dir=compute_dir / "base"
            )
        agent = HostAgent(self, driver)
        agent.start()
        self.agents.append(agent)
        return agent

    def wake_agents(self) -> None:
        for agent in self.agents:
            agent.wake.set()

    def console_log(self, server: Server, length: int | None) -> str:
        for agent in self.agents:
            if agent.host == server.host:
                return agent.console_log(server.id, length)
        raise Conflict(f"The console of server {server.id} is on host {server.host}, which "
                       "this controller does not run.")

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self.sessions() as s:
            yield s

    def transaction(self, fn: Callable[[Session], T]) -> T:
        """`fn(db)` in its own session, committed (rolled back if it raises)."""
        with self.session() as db:
            try:
                result = fn(db)
                db.commit()
            except BaseException:
                db.rollback()
                raise
        self.after_commit(db)
        return result

    def _install_write_tracking(self) -> None:
        """Mark sessions that write identity rows; they bump the shared generation on commit."""

        def before_flush(session: Session, *_: Any) -> None:
            if _touches_identity([*session.new, *session.dirty, *session.deleted]):
                session.info["identity_write"] = True

        def on_execute(state: ORMExecuteState) -> None:
            if (state.is_delete or state.is_update) and any(
                m.class_.__tablename__.startswith(IDENTITY_PREFIX)
                for m in state.all_mappers
                if m.class_.__tablename__ != "identity_generation"
            ):
                state.session.info["identity_write"] = True

        def before_commit(session: Session) -> None:
            if session.info.get("identity_write") and not session.info.get("bumping"):
                from picocloud.identity.store import IdentityStore

                session.info["bumping"] = True
                try:
                    IdentityStore(session).bump_generation()
                    session.flush()
                finally:
                    session.info["bumping"] = False

        event.listen(self.sessions, "before_flush", before_flush)
        event.listen(self.sessions, "do_orm_execute", on_execute)
        event.listen(self.sessions, "before_commit", before_commit)

    def after_commit(self, session: Session) -> None:
        if session.info.pop("identity_write", False):
            with self._generation_lock:
                self.generation += 1
                self._db_generation = -1

    def current_generation(self, session: Session) -> int:
        """The local cache generation, advanced when another controller wrote identity data."""
        now = time.monotonic()
        if now - self._generation_checked >= self.settings.token_cache_seconds:
            from picocloud.identity.store import IdentityStore

            seen = IdentityStore(session).generation()
            with self._generation_lock:
                if seen != self._db_generation:
                    self._db_generation = seen
                    self.generation += 1
                self._generation_checked = now
        return self.generation

    def close(self) -> None:
        for agent in self.agents:
            agent.stop()
        self.agents.clear()
        self.engine.dispose()
