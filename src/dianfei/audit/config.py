"""Configuration changes on the audit chain (``config.changed``).

dianfei's behaviour is data: the settings file (``DIANFEI_CONFIG``), the packaged rule files
(tariffs, dunning ladders, late-fee rules, plan policy, notice templates, bank-file layouts, the
job calendar …) and any directory or file the settings point at (a utility's own tariff
directory, ladders, layouts, keys). A change to any of them changes what customers are billed
or how they are chased, so it belongs on the chain like a change to money.

Files are edited outside dianfei (an editor, a deployment), so dianfei cannot record the edit
as it happens. Instead every process that acts on the configuration — ``dianfei serve``, the
job worker before each job, ``dianfei config check`` and ``config record`` — takes a snapshot
(sha256 of every file), compares it with the snapshot of the last ``config.changed`` record and,
if anything differs, appends one record naming every file added, removed or changed, with a
unified diff of the text (secret values redacted, capped). The record's actor is whoever ran the
process; the chain proves *when* dianfei first acted on the new configuration and what it was.

Secrets never enter the chain: a key or certificate file is recorded by its hash only, and a
settings value whose name says password, secret, token or key is replaced by ``***``.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, text

from dianfei.audit.chain import append

ACTION = "config.changed"
PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # src/dianfei
#: the rule files shipped with dianfei (named ``dianfei:<path>`` so a new install place is no change)
PACKAGED = ("*.toml",)
#: text files whose diff is kept; other files (keys, certificates, binaries) by hash only
TEXT_SUFFIXES = (".toml", ".csv", ".txt", ".json", ".yaml", ".yml", ".j2", ".html")
SECRET_SUFFIXES = (".pem", ".key", ".crt", ".cer", ".p12", ".pfx")
_SECRET_NAME = re.compile(r"(password|passwd|secret|token|api_?key|private|(^|_)key$)", re.I)
_SECRET_LINE = re.compile(
    r"^(\s*[\w.\-]*(password|passwd|secret|token|api_?key|private)[\w.\-]*\s*=\s*).*$", re.I)
#: a record's diff text is capped (a replaced 5 MB tariff file is named, not copied)
MAX_DIFF_CHARS = 20_000


@dataclass(frozen=True)
class ConfigChange:
    added: list[str]
    removed: list[str]
    changed: list[str]
    digest: str


def _redact_text(content: str) -> str:
    return "\n".join(_SECRET_LINE.sub(r"\1***", line) for line in content.splitlines())


def _redact(value: Any, name: str = "") -> Any:
    if isinstance(value, Mapping):
        return {k: _redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v, name) for v in value]
    if _SECRET_NAME.search(name) and not name.endswith(("_file", "_dir")):
        return "***"
    return value


#: settings that name where dianfei WRITES (its data, letters to print): not configuration
_OUTPUTS = frozenset({"data_dir", "out_dir", "database_url"})


def _paths_in(raw: Mapping[str, Any]) -> Iterable[Path]:
    """Files and directories the settings name (``tariff_dir``, ``schedule``, ``*_file`` …)."""
    for key, value in raw.items():
        if key in _OUTPUTS:
            continue
        if isinstance(value, Mapping):
            yield from _paths_in(value)
        elif isinstance(value, str) and (key.endswith(("_dir", "_file", "path", "profile"))
                                         or key in ("schedule", "layouts")):
            yield Path(value)


def _files(settings_file: str | None, raw: Mapping[str, Any],
           extra: Iterable[Path]) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for pattern in PACKAGED:
        for p in sorted(PACKAGE_ROOT.rglob(pattern)):
            if "vendor" not in p.parts and "node_modules" not in p.parts:
                found[f"dianfei:{p.relative_to(PACKAGE_ROOT).as_posix()}"] = p
    for p in [*_paths_in(raw), *extra]:
        if p.is_file():
            found[str(p.resolve())] = p
        elif p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.is_file():
                    found[str(f.resolve())] = f
    if settings_file:
        found[str(Path(settings_file).resolve())] = Path(settings_file)
    return found


def snapshot(settings_file: str | None, raw: Mapping[str, Any],
             extra: Iterable[Path] = ()) -> dict[str, dict[str, str]]:
    """Every configuration file: ``name → {"sha256", "text"?}`` (text only for text files that
    are not secrets, redacted; the settings file as its redacted parsed values)."""
    snap: dict[str, dict[str, str]] = {}
    for name, path in _files(settings_file, raw, extra).items():
        data = path.read_bytes()
        entry = {"sha256": hashlib.sha256(data).hexdigest()}
        if settings_file and name == str(Path(settings_file).resolve()):
            entry["text"] = json.dumps(_redact(raw), ensure_ascii=False, indent=1,
                                       sort_keys=True, default=str)
        elif path.suffix.lower() in TEXT_SUFFIXES and path.suffix.lower() not in SECRET_SUFFIXES:
            entry["text"] = _redact_text(data.decode("utf-8", "replace"))
        snap[name] = entry
    return snap


def digest(snap: Mapping[str, Mapping[str, str]]) -> str:
    joined = "\n".join(f"{name}\t{entry['sha256']}" for name, entry in sorted(snap.items()))
    return hashlib.sha256(joined.encode()).hexdigest()


def last_recorded(conn: Connection | Engine) -> dict[str, Any] | None:
    """The detail of the newest ``config.changed`` record (None before the first)."""
    sql = text("SELECT body FROM audit_records WHERE action = :a ORDER BY seq DESC LIMIT 1")
    if isinstance(conn, Engine):
        with conn.connect() as c:
            body = c.execute(sql, {"a": ACTION}).scalar()
    else:
        body = conn.execute(sql, {"a": ACTION}).scalar()
    return json.loads(body)["detail"] if body else None


def _diff(name: str, old: str | None, new: str | None) -> str:
    return "".join(difflib.unified_diff(
        (old or "").splitlines(keepends=True), (new or "").splitlines(keepends=True),
        fromfile=f"a/{name}", tofile=f"b/{name}", n=1))


def record_if_changed(conn: Connection, snap: Mapping[str, Mapping[str, str]]
                      ) -> ConfigChange | None:
    """Append a ``config.changed`` record if ``snap`` differs from the last one recorded, in the
    caller's transaction; None when nothing changed."""
    new_digest = digest(snap)
    last = last_recorded(conn)
    if last is not None and last.get("digest") == new_digest:
        return None
    old_files: dict[str, str] = dict(last.get("files", {})) if last else {}
    old_text: dict[str, str] = dict(last.get("texts", {})) if last else {}
    files = {name: entry["sha256"] for name, entry in snap.items()}
    texts = {name: entry["text"] for name, entry in snap.items() if "text" in entry}
    added = sorted(set(files) - set(old_files))
    removed = sorted(set(old_files) - set(files))
    changed = sorted(n for n in set(files) & set(old_files) if files[n] != old_files[n])
    diff = "".join(_diff(n, old_text.get(n), texts.get(n))
                   for n in changed + removed + (added if last else []))
    detail = {"digest": new_digest, "first": last is None, "added": added, "removed": removed,
              "changed": changed, "files": files, "texts": texts,
              "diff": diff[:MAX_DIFF_CHARS], "diff_truncated": len(diff) > MAX_DIFF_CHARS}
    append(conn, ACTION, "config", detail)
    return ConfigChange(added, removed, changed, new_digest)


def history(engine: Engine, limit: int = 50) -> list[dict[str, Any]]:
    """The newest ``config.changed`` records: when, who, and what changed (not the texts)."""
    sql = text("SELECT seq, recorded_at, actor, body FROM audit_records WHERE action = :a "
               "ORDER BY seq DESC LIMIT :n")
    with engine.connect() as c:
        rows = c.execute(sql, {"a": ACTION, "n": limit}).all()
    out = []
    for seq, at, actor, body in rows:
        d = json.loads(body)["detail"]
        out.append({"seq": int(seq), "recorded_at": str(at), "actor": actor,
                    "first": d.get("first", False), "added": d["added"],
                    "removed": d["removed"], "changed": d["changed"], "diff": d["diff"]})
    return out


def sources(env: Mapping[str, str], tariff_dir: Path | None) -> tuple[str | None, list[Path]]:
    """The settings file and the files named by environment variables (``DIANFEI_*_FILE``,
    ``DIANFEI_*_DIR`` except the data directory) and the tariff directory."""
    extra = [Path(v) for k, v in env.items()
             if k.startswith("DIANFEI_") and k.endswith(("_FILE", "_DIR")) and v
             and k != "DIANFEI_DATA_DIR"]
    if tariff_dir is not None:
        extra.append(tariff_dir)
    return env.get("DIANFEI_CONFIG") or None, extra
