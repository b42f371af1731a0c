"""The dependency order of docs/design.md: domain code never imports api, web or cli, and lower
layers never import higher ones; packages meet only through their services.

The rule of :func:`test_packages_meet_only_through_services`:

- a package's public face to other packages is its ``service`` module (``dianfei.Q.service``):
  a module of package P may import ``dianfei.Q.service`` of another package Q, nothing else of Q
  (not its models, repository, helpers or package ``__init__``). What another package needs is
  a public name of ``Q.service`` (a function, or a re-export where it is Q's public API);
- ``core`` and ``db`` are infrastructure (money, clock, errors, settings; engine, frames, bulk
  writes) that anyone may import, and ``db/metadata.py`` is the model registry: Alembic needs
  every package's tables;
- the entry points — ``cli``, ``web``, ``api`` and the root modules (``__main__.py``,
  ``demo.py``) — are the outermost layer: they assemble adapters (channel notifiers, the DL/T 645
  client, bank-file layouts, PDF letters, the simulator) as well as call services, so they may
  import any public module of any package;
- ``scale`` (the Spark backend) is an execution adapter: it runs other packages' pure column
  functions (the VEE pipeline, the risk features, pricing) inside Spark tasks, so it may import
  any public module of the packages below it — never a private name;
- nobody imports a private name: ``from X import _name`` is refused everywhere (within a package
  too: a name another module needs is public), and a private module (``_rng.py``) is imported
  only from inside its own package.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "dianfei"
ORDER = ["core", "db", "events", "audit", "customers", "tariffs", "metering", "notify", "ledger",
         "billing", "payments", "risk", "collections", "reporting", "security", "approvals", "jobs",
         "scale", "api", "web", "cli"]
RANK = {name: i for i, name in enumerate(ORDER)}
#: the one place allowed to see every model: Alembic needs the whole metadata; and a migration
#: that must record existing data in the audit chain as it creates it (it calls audit.service)
MODEL_REGISTRY = {"db/metadata.py", "db/migrations/versions/0018_users_audit_chain.py"}
SAME_RANK = {("tariffs", "metering"), ("metering", "tariffs"), ("billing", "payments"),
             ("payments", "billing")}
#: what any package may import from any other
INFRASTRUCTURE = {"core", "db"}
#: the outermost layer, which may import any public module (see the module doc)
ENTRY_POINTS = {"api", "web", "cli"}
#: run other packages' pure functions elsewhere (Spark tasks): public modules, like entry points
ENGINES = {"scale"}


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


# -- packages meet only through their services ---------------------------------------------------


def _is_module(dotted: str) -> bool:
    """Whether ``dianfei.x.y`` names a module or package of the source tree."""
    rel = Path(*dotted.split(".")[1:]) if "." in dotted else Path()
    return (SRC / rel).with_suffix(".py").is_file() or (SRC / rel / "__init__.py").is_file()


def _package(dotted: str) -> str:
    """The top-level package of a ``dianfei.…`` module (a root module names itself)."""
    return dotted.split(".")[1] if dotted.count(".") else ""


def _private(part: str) -> bool:
    return part.startswith("_") and not (part.startswith("__") and part.endswith("__"))


def _targets(node: ast.Import | ast.ImportFrom, here: str) -> list[tuple[str, str | None]]:
    """(module, name or None) pairs an import statement reaches; ``here`` is the importing
    module's dotted name (for relative imports)."""
    if isinstance(node, ast.Import):
        return [(a.name, None) for a in node.names]
    base = node.module or ""
    if node.level:
        parent = here.split(".")[:-node.level]
        base = ".".join(parent + ([base] if base else []))
    out: list[tuple[str, str | None]] = []
    for a in node.names:
        sub = f"{base}.{a.name}"
        if base.startswith("dianfei") and _is_module(sub):
            out.append((sub, None))  # ``from package import module``
        else:
            out.append((base, a.name))
    return out


def boundary_violations(rel: Path, source: str) -> list[str]:
    """What breaks the rule in ``source``, the text of the module at ``rel`` (under SRC)."""
    here = ".".join(("dianfei", *rel.with_suffix("").parts))
    pkg = rel.parts[0] if len(rel.parts) > 1 else ""
    entry_point = pkg in ENTRY_POINTS or pkg in ENGINES or not pkg
    wrong = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        for module, name in _targets(node, here):
            what = module if name is None else f"{module}.{name}"
            if name is not None and _private(name):
                wrong.append(f"{rel}: imports the private name {what}")
                continue
            if not module.startswith("dianfei."):
                continue
            other = _package(module)
            if other != pkg and any(_private(p) for p in module.split(".")):
                wrong.append(f"{rel}: imports the private module {module} of another package")
            elif (other != pkg and other not in INFRASTRUCTURE and not entry_point
                  and str(rel) not in MODEL_REGISTRY and module != f"dianfei.{other}.service"):
                wrong.append(f"{rel}: imports {what}, not the service of dianfei.{other}")
    return wrong


def test_packages_meet_only_through_services() -> None:
    wrong = [v for path in sorted(SRC.rglob("*.py"))
             for v in boundary_violations(path.relative_to(SRC), path.read_text(encoding="utf-8"))]
    assert wrong == []


def test_the_boundary_rule_catches_what_it_should() -> None:
    """The rule itself, on made-up modules of the real tree's packages."""
    cases = {
        "collections/probe_a.py": ("from dianfei.ledger import items\n", "not the service"),
        "collections/probe_b.py": ("from dianfei.customers.models import Customer\n",
                                    "not the service"),
        "collections/probe_c.py": ("from dianfei.collections.service import _x\n",
                                    "private name"),
        "collections/probe_d.py": ("import dianfei.payments.fastpath\n", "not the service"),
        "collections/probe_e.py": ("from dianfei.sim._rng import stream\n", "private module"),
        "cli/probe_f.py": ("from dianfei.payments.service import _check\n", "private name"),
    }
    fine = {
        "collections/probe_g.py": "from dianfei.ledger import service as ledger\n"
                                   "from dianfei.ledger.service import balances\n"
                                   "from dianfei.core.money import fmt_yuan\n"
                                   "from dianfei.db.frames import read_frame\n"
                                   "from dianfei.collections import repository\n",
        "cli/probe_h.py": "from dianfei.payments.channels.base import Outcome\n",
    }
    for rel, (code, why) in cases.items():
        found = boundary_violations(Path(rel), code)
        assert len(found) == 1 and why in found[0], (rel, found)
    for rel, code in fine.items():
        assert boundary_violations(Path(rel), code) == [], rel


def _tables_of(package: str) -> set[str]:
    found = set()
    for path in (SRC / package).rglob("*models.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Assign) and any(
                    isinstance(t, ast.Name) and t.id == "__tablename__" for t in node.targets)
                    and isinstance(node.value, ast.Constant)):
                found.add(str(node.value.value))
    return found


def test_collections_sql_names_only_its_own_tables() -> None:
    """Collections reads other packages through their services, so its SQL (every string
    literal of the package) names none of their tables."""
    import re

    theirs = set().union(*(_tables_of(p) for p in RANK if p != "collections")) - _tables_of(
        "collections")
    sql = re.compile(r"\b(?:FROM|JOIN|INTO|UPDATE)\s+([a-z_]+)", re.IGNORECASE)
    wrong = []
    for path in sorted((SRC / "collections").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                wrong += [f"{path.relative_to(SRC)}: {t}" for t in sql.findall(node.value)
                          if t in theirs]
    assert theirs and wrong == []
