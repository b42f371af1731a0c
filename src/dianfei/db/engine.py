"""Engine creation and schema bootstrapping.

Every command calls :func:`open_database`. On an EMPTY database it creates the schema (a
newcomer's `make demo` needs no migration step). On a database at an older revision it refuses
with "run `dianfei migrate`": an upgrade is a deliberate step (after a backup, by the schema's
owner, once) — never a side effect of whichever command or server worker happens to start first
after the code was updated. A database at a revision this code does not know (migrated by a
newer dianfei) is refused too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event, make_url

from dianfei.core.errors import ValidationError
from dianfei.core.settings import Settings, load_settings

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from dianfei.core.crypto import PiiCipher

_MIGRATIONS = Path(__file__).with_name("migrations")


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def make_engine(url: str) -> Engine:
    kwargs: dict[str, Any] = {"future": True}
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        if make_url(url).database not in (None, "", ":memory:"):  # a file: a pool of connections
            # the connection returned last is the one handed out next: SQLite drops a
            # connection's whole page cache when it sees that another connection wrote since it
            # last read, so connections taken in turn (the pool's default, first in first out)
            # would each read the database cold after every other's commit
            kwargs["pool_use_lifo"] = True
        kwargs["connect_args"] = {"timeout": 60}
    engine = create_engine(url, **kwargs)
    if engine.dialect.name != "sqlite":
        _ping_when_idle(engine)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            # WAL lets readers work during a bill run; NORMAL is durable at each commit in WAL.
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=60000")
            # 256 MB of page cache: index maintenance during a bill run stays in memory
            cur.execute("PRAGMA cache_size=-262144")
            cur.execute("PRAGMA temp_store=MEMORY")
            # reads through memory-mapped pages (up to SQLite's own limit, 2 GB here): SQLite
            # drops a connection's page cache whenever another connection has written, so the
            # day's reads after a commit of the other thread's connection — and every read of a
            # fresh `collect run` process — read each page into its own cache again; mapped pages
            # come straight from the operating system's cache
            cur.execute(f"PRAGMA mmap_size={SQLITE_MMAP_BYTES}")
            # checkpoint the WAL every 256 MB instead of every 4 MB: a page rewritten by several
            # commits in between (index pages of the daily reads and payments) reaches the
            # database file once, and the checkpoint's fsyncs are paid once per several commits
            cur.execute("PRAGMA wal_autocheckpoint=65536")
            cur.close()

    return engine


#: the memory map asked of SQLite (it caps it at its compile-time maximum: 2 GB in Debian's)
SQLITE_MMAP_BYTES = 8 << 30

#: a pooled connection idle longer than this is pinged before it is handed out
IDLE_PING_SECONDS = 5.0


def _ping_when_idle(engine: Engine) -> None:
    """Check a server connection before use only if it sat idle in the pool for a while.

    SQLAlchemy's ``pool_pre_ping`` pings on every checkout: a portal bill page takes a
    connection six times, so that was six extra round trips (and six server wake-ups) a page.
    A connection returned moments ago was working moments ago; one idle for longer (a database
    restart, a firewall's idle timeout) is pinged, and a dead one is replaced before use —
    ``DisconnectionError`` makes the pool retry with a fresh connection. A server that dies
    within the window fails the statement running then; SQLAlchemy then drops the whole pool,
    so the next request connects afresh."""
    import time

    from sqlalchemy.exc import DisconnectionError

    dbapi_error = engine.dialect.loaded_dbapi.Error

    @event.listens_for(engine, "checkin")
    def _returned(_dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since < IDLE_PING_SECONDS:
            return  # new (just connected) or returned moments ago
        try:
            engine.dialect.do_ping(dbapi_conn)
        except dbapi_error as exc:
            raise DisconnectionError(f"a pooled connection is dead ({exc}); reconnecting") from exc


def head_revisions() -> frozenset[str]:
    """The newest migration revisions, read from the version files' ``revision`` and
    ``down_revision`` lines (a millisecond) instead of loading Alembic's script directory."""
    import re

    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (_MIGRATIONS / "versions").glob("*.py"):
        body = path.read_text(encoding="utf-8")
        rev = re.search(r"^revision\b[^=\n]*=\s*[\"']([^\"']+)[\"']", body, re.M)
        down = re.search(r"^down_revision\b[^=\n]*=(.*)$", body, re.M)
        if rev is None or down is None:
            return frozenset()  # a file this reader does not understand: let Alembic decide
        revisions.add(rev.group(1))
        parents.update(re.findall(r"[\"']([^\"']+)[\"']", down.group(1)))
    return frozenset(revisions - parents)


def schema_is_current(engine: Engine) -> bool:
    """Whether the database is at the newest revision already, so that a command can skip
    Alembic (whose import and script loading cost ~0.3 s of every command's start)."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    heads = head_revisions()
    if not heads:
        return False
    try:
        with engine.connect() as conn:
            stored = {str(r[0]) for r in conn.execute(text("SELECT version_num FROM alembic_version"))}
    except DBAPIError:
        return False  # an empty database: no version table yet
    return stored == heads


def _alembic_config() -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    return cfg


def schema_revisions(engine: Engine) -> tuple[str | None, str]:
    """(the database's revision or None when it has no schema, the newest this code knows)."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None
    with engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    return current, head


def pending_migrations(current: str | None) -> list[tuple[str, str]]:
    """(revision, title) of each migration from ``current`` (None: an empty database) to the
    newest, oldest first — what ``dianfei migrate --dry-run`` lists."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(_alembic_config())
    steps = list(script.iterate_revisions("heads", current or "base"))
    return [(s.revision, (s.doc or "").strip().splitlines()[0] if s.doc else "")
            for s in reversed(steps)]


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (creates it on an empty database). Nothing is
    done — not even a transaction that could take a lock — when it is at the newest already, so
    a runtime role without DDL rights starts normally (db/roles.py)."""
    from alembic import command
    from sqlalchemy.exc import ProgrammingError

    if schema_is_current(engine):  # the cheap check (no Alembic import)
        return
    current, head = schema_revisions(engine)
    if current == head:
        return
    cfg = _alembic_config()
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    except ProgrammingError as exc:
        if "permission denied" not in str(exc.orig).lower() and "must be owner" not in str(exc.orig):
            raise
        raise ValidationError(
            f"the database schema is at revision {current or 'none'} and this version needs {head}, "
            "but this database role may not change the schema: run `dianfei migrate` with the "
            "owner's URL (DIANFEI_MIGRATE_DATABASE_URL)") from None


class SchemaMismatch(ValidationError):
    """The database's schema is not the one this code needs (older, or from a newer dianfei)."""

    code = "schema_mismatch"
    http_status = 503


def stored_revisions(engine: Engine) -> frozenset[str] | None:
    """The database's Alembic revision(s); None when it has no schema (no version table, or
    an empty one)."""
    from sqlalchemy import inspect, text

    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        found = frozenset(str(r[0]) for r in conn.execute(text("SELECT version_num FROM alembic_version")))
    return found or None


def _known_revisions() -> frozenset[str]:
    import re

    return frozenset(
        m.group(1) for path in (_MIGRATIONS / "versions").glob("*.py")
        if (m := re.search(r"^revision\b[^=\n]*=\s*[\"']([^\"']+)[\"']",
                           path.read_text(encoding="utf-8"), re.M)))


def ensure_schema(engine: Engine) -> None:
    """Create the schema on an empty database; refuse an older or a newer one by name."""
    stored = stored_revisions(engine)
    if stored is None:
        migrate(engine)  # an empty database: create the schema (nothing to lose, nothing to order)
        return
    heads = head_revisions()
    if stored == heads:
        return
    unknown = stored - _known_revisions()
    if unknown:
        raise SchemaMismatch(
            f"the database schema is at revision {', '.join(sorted(unknown))}, which this "
            f"version of dianfei does not know (its newest is {', '.join(sorted(heads))}): it "
            "was migrated by a newer dianfei — run that version, or restore a backup made "
            "before the upgrade")
    raise SchemaMismatch(
        f"the database schema is at revision {', '.join(sorted(stored))} and this version of "
        f"dianfei needs {', '.join(sorted(heads))}: back the database up, then run "
        "`dianfei migrate` (`dianfei migrate --dry-run` lists the steps)")


def refresh_statistics(engine: Engine) -> None:
    """Refresh the query planner's table statistics after a change of the data's shape (a bill
    run adds a month of bills, clearings and open items).

    SQLite keeps no statistics unless asked (``ANALYZE``): without them its planner guesses, and
    it guessed wrong on the daily collections queries — it scanned every clearing ever made
    through the bill index to find today's (0.26 s a day after a year of a 20,000-customer
    county, 1 ms with statistics). ``analysis_limit`` samples each index, so the refresh costs
    well under a second however large the tables grow. PostgreSQL's autovacuum analyses on its
    own, so nothing is done there."""
    if engine.dialect.name != "sqlite":
        return
    with engine.begin() as conn:
        conn.exec_driver_sql("PRAGMA analysis_limit=1000")
        conn.exec_driver_sql("ANALYZE")


class Database:
    """The configured database: an engine plus a session factory."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine
        self._closers: list[Callable[[], None]] = []

    def on_close(self, stop: Callable[[], None]) -> None:
        """Have :meth:`close` call ``stop`` first: a writer thread started for this database
        (the callback writer, the refusal log) must not outlive it — one left running went on
        retrying against a dropped database and logging tracebacks from its thread."""
        self._closers.append(stop)

    def close(self) -> None:
        """Stop what was started for this database (newest first), then close its connections.
        Every stopper runs even if one fails; the first failure is raised afterwards."""
        failure: BaseException | None = None
        while self._closers:
            stop = self._closers.pop()
            try:
                stop()
            except Exception as exc:  # the rest must still stop; raised below
                failure = failure or exc
        self.engine.dispose()
        if failure is not None:
            raise failure

    #: how long a server process keeps using the keyring it read before reading it again
    PII_KEYRING_SECONDS = 60.0

    @property
    def pii_cipher(self) -> PiiCipher:
        """The personal-data keyring (db/pii.py ``cipher_for``), read again at most once a
        minute: the callbacks seal every notification with it, and a key rotated by `dianfei keys
        rotate` while the server runs must become the one it seals with."""
        import time

        from dianfei.db.pii import cipher_for

        held = self.__dict__.get("_pii_cipher")
        now = time.monotonic()
        if held is None or now - held[1] > self.PII_KEYRING_SECONDS:
            held = (cipher_for(self), now)
            self.__dict__["_pii_cipher"] = held
        cipher: PiiCipher = held[0]
        return cipher

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        """The session factory, made on first use: commands that only read through Core never
        import the ORM (a tenth of a second of start-up)."""
        from sqlalchemy.orm import sessionmaker

        return sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: commits on success, rolls back on error (services never commit)."""
        with self.sessions() as s, s.begin():
            yield s


def open_database(settings: Settings | None = None, *, migrate_schema: bool = True) -> Database:
    settings = settings or load_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.database_url)
    _carry_allocation_order(engine, settings)
    if migrate_schema:  # i.e. "make sure the schema is usable": create when empty, else check
        if not schema_is_current(engine):
            try:
                ensure_schema(engine)
            except BaseException:
                engine.dispose()
                raise
        if engine.dialect.name == "sqlite":
            with engine.connect() as conn:
                analysed = conn.exec_driver_sql(
                    "SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'").first()
            if analysed is None:  # a database that was never analysed (cheap: sampled)
                refresh_statistics(engine)
    return Database(settings, engine)


def _carry_allocation_order(engine: Engine, settings: Settings) -> None:
    """Every connection of this database carries the configured allocation rule (``[payments]
    allocation``) in its ``info``, so the posting core applies it on every path — callbacks,
    counter, statements, bank files, the bill run, reversals — without each caller passing it
    (a rule only some paths apply is not applied). The money core validates the value."""
    order = str(settings.raw.get("payments", {}).get("allocation", "oldest_first"))

    @event.listens_for(engine, "connect")
    def _order(_dbapi_conn: Any, record: Any) -> None:
        record.info["allocation_order"] = order
