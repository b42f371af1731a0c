"""The dependency order of design.md: domain code never imports api, web or cli, and lower
layers never import higher ones."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "dianfei"
ORDER = ["core", "db", "customers", "tariffs", "metering", "notify", "ledger", "billing",
         "payments", "risk", "collections", "reporting", "security", "api", "web", "cli"]
RANK = {name: i for i, name in enumerate(ORDER)}
#: the one place allowed to see every model: Alembic needs the whole metadata
MODEL_REGISTRY = {"db/metadata.py"}
SAME_RANK = {("tariffs", "metering"), ("metering", "tariffs"), ("billing", "payments"),
             ("payments", "billing")}


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dianfei."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("dianfei.")}
    return found


def test_packages_only_import_downwards() -> None:
    wrong = []
    for path in SRC.rglob("*.py"):
        pkg = path.relative_to(SRC).parts[0]
        if pkg not in RANK or str(path.relative_to(SRC)) in MODEL_REGISTRY:
            continue
        for dep in imports(path):
            if dep in RANK and RANK[dep] > RANK[pkg] and (pkg, dep) not in SAME_RANK:
                wrong.append(f"{path.relative_to(SRC)} imports dianfei.{dep}")
    assert wrong == []
