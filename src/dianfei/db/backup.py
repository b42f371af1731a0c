"""Backup and restore (备份与恢复): the database, the interval store and the documents, in one file.

``backup(settings, out)`` writes a tar archive (gzip-compressed) holding:

- ``database.sqlite`` — an SQLite database copied through SQLite's online backup API, page by
  page, while the system keeps running (readers and writers are not stopped; the copy is one
  consistent state), or ``database.pgdump`` — ``pg_dump --format=custom`` of the PostgreSQL
  database (one consistent snapshot, the tool PostgreSQL itself vouches for);
- ``data/…`` — the files under the data directory: the Parquet interval store, rendered bills,
  letters, trained risk models and score files, rejected-message spools;
- ``manifest.json`` (last) — format, dianfei version, backend, schema revision, the audit chain's
  head at the time of the copy, and the size and SHA-256 of every member.

What is left out on purpose: the keyring (``keys/``, ``secret.key``) and the demo's admin
password. A backup is a copy of personal data sealed with those keys; keeping the keys beside it
would unseal it for whoever holds the file. Restore on a machine that has the same keyring
(``DIANFEI_SECRET_KEYS`` or a copy of ``DATA_DIR/keys`` kept apart from backups).

``restore(settings, archive)`` refuses, with a message naming the file or the rule, and without
changing anything: a damaged or truncated archive, a member whose checksum does not match the
manifest, an archive from a newer dianfei (a schema revision this code does not know), and a
target that is not empty (a database with rows in any table, or data files already present).
Every member is verified before the first byte is written. The database is restored first into
a temporary place (a new SQLite file checked with ``PRAGMA integrity_check``; PostgreSQL in one
transaction by ``pg_restore --single-transaction``), then the files.

Interval files are written once and never changed in place, so a file copied a moment after the
database snapshot is at worst a batch the database does not list yet (the store ignores it until
an import names it) — never a half-written one: the store writes to a temporary name and renames.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import make_url

from dianfei import __version__
from dianfei.core.errors import ValidationError
from dianfei.core.settings import Settings

FORMAT = "dianfei-backup/1"
#: files under the data directory that never go into a backup (see the module doc)
SECRETS = ("keys", "secret.key", "demo-admin.password")
_CHUNK = 1 << 20
_VERSIONS = Path(__file__).with_name("migrations") / "versions"


class BackupError(ValidationError):
    code = "backup_invalid"


def known_revisions() -> set[str]:
    """Every schema revision this code's migrations know (from the version files)."""
    found = set()
    for path in _VERSIONS.glob("*.py"):
        m = re.search(r"^revision\b[^=\n]*=\s*[\"']([^\"']+)[\"']", path.read_text("utf-8"), re.M)
        if m:
            found.add(m.group(1))
    return found


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _backend(url: str) -> str:
    name = make_url(url).get_backend_name()
    if name not in ("sqlite", "postgresql"):
        raise BackupError(f"backups support SQLite and PostgreSQL, not {name!r} ({url})")
    return name


def _sqlite_path(url: str) -> Path:
    db = make_url(url).database
    if not db or db == ":memory:":
        raise BackupError(f"an in-memory SQLite database cannot be backed up or restored ({url})")
    return Path(db)


def _libpq(url: str) -> str:
    """The SQLAlchemy URL as pg_dump / pg_restore take it (no ``+driver``)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _pg_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BackupError(f"{name} is not installed: PostgreSQL backups use PostgreSQL's own tools "
                          f"(apt-get install postgresql-client)")
    return path


def _run(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BackupError(f"{what} failed (exit {proc.returncode}): "
                          f"{(proc.stderr or proc.stdout).strip()[:2000]}")


def _data_files(data_dir: Path, skip: set[Path]) -> list[Path]:
    if not data_dir.exists():
        return []
    out = []
    for path in sorted(p for p in data_dir.rglob("*") if p.is_file()):
        rel = path.relative_to(data_dir)
        if rel.parts[0] in SECRETS or path.resolve() in skip or path.name.endswith(".tmp"):
            continue
        out.append(path)
    return out


def _sqlite_skip(url: str) -> set[Path]:
    """The database file itself (and its journal) when it lives under the data directory: it is
    copied through the backup API, never as a file that may be mid-write."""
    if _backend(url) != "sqlite":
        return set()
    db = _sqlite_path(url).resolve()
    return {db, *(db.with_name(db.name + s) for s in ("-wal", "-shm", "-journal"))}


def _schema_facts(url: str) -> tuple[str | None, dict[str, Any] | None]:
    """(schema revision, audit chain head) of the live database, read-only."""
    from sqlalchemy import inspect, text

    from dianfei.db.engine import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            tables = set(inspect(conn).get_table_names())
            if "alembic_version" not in tables:
                return None, None
            rev = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
            head = None
            if "audit_records" in tables:
                head = conn.execute(text(
                    "SELECT seq, hash FROM audit_records ORDER BY seq DESC LIMIT 1")).first()
    finally:
        engine.dispose()
    return (str(rev) if rev else None,
            {"seq": int(head[0]), "hash": str(head[1])} if head else None)


def backup(settings: Settings, out: Path, *, now: datetime | None = None) -> dict[str, Any]:
    """Write the backup archive ``out`` (see the module doc); returns its manifest."""
    url = settings.database_url
    backend = _backend(url)
    revision, audit_head = _schema_facts(url)
    if revision is None:
        raise BackupError(f"the database has no dianfei schema: nothing to back up ({url})")
    out = Path(out)
    if out.exists():
        raise BackupError(f"{out} exists already: a backup never overwrites a file")
    out.parent.mkdir(parents=True, exist_ok=True)
    members: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="dianfei-backup-") as tmp:
        if backend == "sqlite":
            copy = Path(tmp) / "database.sqlite"
            src = sqlite3.connect(_sqlite_path(url), timeout=30)
            dst = sqlite3.connect(copy)
            try:
                src.backup(dst, pages=4096)  # steps, so writers are not held up for long
            finally:
                dst.close()
                src.close()
        else:
            copy = Path(tmp) / "database.pgdump"
            _run([_pg_tool("pg_dump"), "--format=custom", "--no-owner", "--no-privileges",
                  "--file", str(copy), "--dbname", _libpq(url)], "pg_dump")
        partial = out.with_name(out.name + ".tmp")
        try:
            with tarfile.open(partial, "w:gz") as tar:
                tar.add(copy, arcname=copy.name)
                members.append({"path": copy.name, "bytes": copy.stat().st_size,
                                "sha256": _sha256(copy)})
                for path in _data_files(settings.data_dir, _sqlite_skip(url)):
                    arc = "data/" + path.relative_to(settings.data_dir).as_posix()
                    digest, size = _sha256(path), path.stat().st_size
                    tar.add(path, arcname=arc)
                    members.append({"path": arc, "bytes": size, "sha256": digest})
                manifest = {
                    "format": FORMAT, "dianfei_version": __version__, "backend": backend,
                    "schema_revision": revision, "audit_head": audit_head,
                    "created_at": (now or datetime.now(UTC)).isoformat(timespec="seconds"),
                    "database": copy.name, "members": members,
                    "left_out": list(SECRETS)}
                body = json.dumps(manifest, indent=1, ensure_ascii=False).encode()
                info = tarfile.TarInfo("manifest.json")
                info.size = len(body)
                tar.addfile(info, io.BytesIO(body))
            partial.replace(out)  # a backup file exists only once it is whole
        finally:
            partial.unlink(missing_ok=True)
    return manifest


# -- restore ---------------------------------------------------------------------------------


def read_manifest(archive: Path) -> dict[str, Any]:
    """The archive's manifest, after checking that every member listed is present with its
    size and checksum (the whole archive is read once: a truncated file fails here)."""
    archive = Path(archive)
    if not archive.is_file():
        raise BackupError(f"{archive}: no such backup file")
    try:
        with tarfile.open(archive, "r:*") as tar:
            try:
                raw = tar.extractfile("manifest.json")
            except KeyError:
                raise BackupError(f"{archive}: not a dianfei backup (no manifest.json; a backup "
                                  "cut short loses its manifest, which is written last)") from None
            assert raw is not None
            try:
                manifest: dict[str, Any] = json.loads(raw.read())
            except ValueError as exc:
                raise BackupError(f"{archive}: manifest.json is not JSON ({exc})") from None
            if manifest.get("format") != FORMAT:
                raise BackupError(f"{archive}: unknown backup format {manifest.get('format')!r} "
                                  f"(this dianfei reads {FORMAT})")
            for m in manifest.get("members", []):
                try:
                    f = tar.extractfile(m["path"])
                except KeyError:
                    raise BackupError(f"{archive}: member {m['path']} listed in the manifest is "
                                      "missing") from None
                if f is None:
                    raise BackupError(f"{archive}: member {m['path']} is not a file")
                h, size = hashlib.sha256(), 0
                while chunk := f.read(_CHUNK):
                    h.update(chunk)
                    size += len(chunk)
                if size != m["bytes"] or h.hexdigest() != m["sha256"]:
                    raise BackupError(f"{archive}: member {m['path']} does not match its checksum "
                                      "in the manifest (damaged or altered)")
    except (tarfile.TarError, EOFError, OSError, UnicodeDecodeError) as exc:
        raise BackupError(f"{archive}: damaged or truncated backup ({exc})") from None
    _check_member_paths(archive, manifest)
    return manifest


def _check_member_paths(archive: Path, manifest: dict[str, Any]) -> None:
    for m in manifest.get("members", []):
        p = m["path"]
        parts = Path(p).parts
        if p.startswith("/") or ".." in parts or not (p == manifest.get("database")
                                                      or parts[0] == "data"):
            raise BackupError(f"{archive}: member path {p!r} is outside the backup's layout")
        if parts[0] == "data" and len(parts) > 1 and parts[1] in SECRETS:
            raise BackupError(f"{archive}: member {p!r} is a secret a backup never holds")


def _target_rows(url: str) -> tuple[bool, int]:
    """(has any table, rows in all tables) of the target database."""
    from sqlalchemy import inspect, text

    from dianfei.db.engine import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            tables = [t for t in inspect(conn).get_table_names() if t != "alembic_version"]
            rows = 0
            for t in tables:
                rows += int(conn.execute(text(f'SELECT COUNT(*) FROM "{t}"')).scalar_one())
                if rows:
                    break
    finally:
        engine.dispose()
    return bool(tables), rows


def restore(settings: Settings, archive: Path) -> dict[str, Any]:
    """Restore ``archive`` into the configured, empty database and data directory; returns the
    manifest and what was restored (see the module doc for what is refused)."""
    archive = Path(archive)
    manifest = read_manifest(archive)
    url = settings.database_url
    backend = _backend(url)
    if manifest["backend"] != backend:
        raise BackupError(f"{archive}: a {manifest['backend']} backup cannot be restored into "
                          f"{backend} ({url}); configure a {manifest['backend']} database")
    revision = manifest["schema_revision"]
    if revision not in known_revisions():
        raise BackupError(f"{archive}: made by a newer dianfei ({manifest['dianfei_version']}, "
                          f"schema {revision}); install that version or newer to restore it")
    has_tables, rows = (False, 0)
    if backend == "postgresql" or _sqlite_path(url).exists():
        has_tables, rows = _target_rows(url)
    if rows:
        raise BackupError(f"the database {make_url(url).render_as_string()} is not empty: a "
                          "restore goes into an empty database only (nothing was changed)")
    data_dir = settings.data_dir
    present = _data_files(data_dir, _sqlite_skip(url))
    if present:
        raise BackupError(f"the data directory {data_dir} already holds files (e.g. "
                          f"{present[0].relative_to(data_dir)}): a restore goes into an empty one "
                          "(nothing was changed)")
    with tarfile.open(archive, "r:*") as tar, tempfile.TemporaryDirectory(
            prefix="dianfei-restore-") as tmp:
        db_member = manifest["database"]
        tar.extract(db_member, tmp, filter="data")
        copy = Path(tmp) / db_member
        if backend == "sqlite":
            _restore_sqlite(copy, _sqlite_path(url))
        else:
            if has_tables:
                raise BackupError("the PostgreSQL database has dianfei tables (empty ones): "
                                  "restore into a database with no tables (createdb a new one)")
            _run([_pg_tool("pg_restore"), "--exit-on-error", "--single-transaction",
                  "--no-owner", "--no-privileges", "--dbname", _libpq(url), str(copy)],
                 "pg_restore")
        restored = 0
        for m in manifest["members"]:
            if m["path"] == db_member:
                continue
            target = data_dir / Path(m["path"]).relative_to("data")
            target.parent.mkdir(parents=True, exist_ok=True)
            src = tar.extractfile(m["path"])
            assert src is not None
            with target.open("wb") as f:
                shutil.copyfileobj(src, f, _CHUNK)
            restored += 1
    return {"restored_from": str(archive), "backend": backend, "schema_revision": revision,
            "created_at": manifest["created_at"], "audit_head": manifest["audit_head"],
            "files": restored, "migrate_needed": revision not in _heads()}


def _heads() -> set[str]:
    from dianfei.db.engine import head_revisions

    return set(head_revisions())


def _restore_sqlite(copy: Path, target: Path) -> None:
    check = sqlite3.connect(copy)
    try:
        ok = check.execute("PRAGMA integrity_check").fetchone()
    finally:
        check.close()
    if not ok or ok[0] != "ok":
        raise BackupError(f"the database in the backup fails SQLite's integrity check: {ok}")
    target.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("-wal", "-shm", "-journal"):
        stale = target.with_name(target.name + suffix)
        if stale.exists() and target.exists():
            stale.unlink()
    staged = target.with_name(target.name + ".restoring")
    shutil.copyfile(copy, staged)
    os.replace(staged, target)
