"""Roles and what each may do, as data (a utility changes this table, not the routes).

Every route names one permission; a caller's role grants a set of them. ``customer`` grants only
``own:*`` permissions, which the route further limits to the caller's own customer id.
"""

from __future__ import annotations

from collections.abc import Mapping

#: every permission a route may ask for, with what it allows
PERMISSIONS: Mapping[str, str] = {
    "periods:read": "billed periods and their totals (dashboard)",
    "bills:read": "any customer's bills",
    "exceptions:read": "the bill run's exceptions list",
    "payments:read": "any account's payments",
    "payments:worklist": "refused payment notifications awaiting clarification",
    "customers:read": "any customer's data and bills",
    "users:manage": "create, disable and list users",
    "audit:read": "the audit chain and its verification",
    "own:bills": "the signed-in customer's own bills",
    "metrics:read": "operational figures for monitoring (/metrics): counts, no personal data",
    # payment plans (分期缴费协议)
    "plans:read": "payment plans (a collector: the ones they proposed)",
    "plans:propose": "propose a payment plan within policy",
    "plans:approve": "approve a payment plan someone else proposed (four-eyes)",
    "plans:report": "plan performance by collector and segment",
    "worklists:own": "the signed-in collector's own worklist and the timelines of its accounts",
    "worklists:read": "every collector's worklists, the supervisor view and account timelines",
    "worklists:manage": "reassign and balance worklists",
    # field work (web/fieldwork_api.py): a collector's records are limited to their own
    "visits:record": "record a visit or call and its outcome",
    "visits:read": "visits and calls (a collector: only their own)",
    "tickets:open": "open a service ticket (dispute, complaint, question)",
    "tickets:read": "service tickets",
    "tickets:decide": "decide a service ticket",
    "surveys:record": "record a satisfaction survey",
    # collector operations (跨部门工单, 联系方式核实, 信用等级)
    "tasks:read": "every department's tasks",
    "tasks:own": "the tasks owned by the signed-in user (list, report done)",
    "tasks:write": "open, assign, hand over, complete and escalate any task",
    "contacts:read": "contact flags and verified-phone coverage",
    "contacts:verify": "record a contact verified with the customer",
    "ratings:read": "credit ratings and the incentives report",
    "experiments:read": "strategy experiments: arms, sizes, KPIs with confidence intervals",
    # the staff console's core pages (web/console_pages.py)
    "pii:read": "phone and ID numbers unmasked on screen (others see 138****5678)",
    "jobs:read": "the job runs history (kind, state, attempts, errors)",
    "settings:read": "the configuration files in force (tariffs, ladders, rules), read-only",
}

_READ_BILLS = {"periods:read", "bills:read", "customers:read"}

#: the service desk's part of field work: open and read tickets, record surveys
_FIELDWORK_DESK = {"tickets:open", "tickets:read", "surveys:record"}

#: role → permissions (管理员, 抄核收员, 收费员, 催费员, 主管, 稽核, 客户, 监控)
ROLE_PERMISSIONS: Mapping[str, frozenset[str]] = {
    "admin": frozenset(PERMISSIONS) - {"own:bills"},
    "billing_clerk": frozenset(_READ_BILLS | {"exceptions:read"} | _FIELDWORK_DESK),
    "cashier": frozenset(_READ_BILLS | {"payments:read"} | _FIELDWORK_DESK),
    "collector": frozenset({"bills:read", "customers:read", "payments:read", "worklists:own",
                            "visits:record", "visits:read", "tickets:open", "tasks:own"}),
    "supervisor": frozenset(_READ_BILLS | {"exceptions:read", "payments:read",
                                           "payments:worklist", "worklists:read",
                                           "worklists:manage"} | _FIELDWORK_DESK
                            | {"visits:record", "visits:read", "tickets:decide"}
                            | {"tasks:read", "tasks:write", "contacts:read", "contacts:verify",
                               "ratings:read"}),
    "auditor": frozenset(_READ_BILLS | {"exceptions:read", "payments:read",
                                        "payments:worklist", "audit:read", "worklists:read",
                                        "visits:read", "tickets:read", "tasks:read",
                                        "contacts:read", "ratings:read"}),
    "customer": frozenset({"own:bills"}),
    #: Prometheus' scraper: the figures of /metrics and nothing else (监控)
    "monitor": frozenset({"metrics:read"}),
}

#: payment plans: a collector reads and proposes (their own), supervisors also approve and
#: report, auditors read and report (admin has every permission already)
_PLAN_GRANTS: Mapping[str, frozenset[str]] = {
    "collector": frozenset({"plans:read", "plans:propose"}),
    "supervisor": frozenset({"plans:read", "plans:propose", "plans:approve", "plans:report"}),
    "auditor": frozenset({"plans:read", "plans:report"}),
}
ROLE_PERMISSIONS = {role: perms | _PLAN_GRANTS.get(role, frozenset())
                    for role, perms in ROLE_PERMISSIONS.items()}

#: maker-checker (四眼原则, docs/approvals.md): who may ask for each kind of change and who may
#: decide it. The checker is never the maker (the approvals service refuses that as well).
APPROVAL_KINDS = ("waiver", "write_off", "bill_correction", "suspension", "tariff_change",
                  "account_closure")
PERMISSIONS = {
    **PERMISSIONS,
    "approvals:read": "approval requests and their decisions",
    **{f"approvals:request:{k}": f"ask for a {k.replace('_', ' ')} (a second person decides)"
       for k in APPROVAL_KINDS if k != "suspension"},
    **{f"approvals:decide:{k}": f"approve or refuse someone else's {k.replace('_', ' ')}"
       for k in APPROVAL_KINDS},
}
_APPROVAL_GRANTS: Mapping[str, frozenset[str]] = {
    "admin": frozenset(p for p in PERMISSIONS if p.startswith("approvals:")),
    "collector": frozenset({"approvals:read", "approvals:request:waiver"}),
    "cashier": frozenset({"approvals:read", "approvals:request:waiver"}),
    "billing_clerk": frozenset({"approvals:read", "approvals:request:waiver",
                                "approvals:request:write_off", "approvals:request:bill_correction",
                                "approvals:request:tariff_change",
                                "approvals:request:account_closure"}),
    "supervisor": frozenset(p for p in PERMISSIONS if p.startswith("approvals:")),
    "auditor": frozenset({"approvals:read"}),
}
ROLE_PERMISSIONS = {role: perms | _APPROVAL_GRANTS.get(role, frozenset())
                    for role, perms in ROLE_PERMISSIONS.items()}

#: strategy experiments (策略试验, the console's /experiments): supervisors and auditors read them
_EXPERIMENT_GRANTS: Mapping[str, frozenset[str]] = {
    "supervisor": frozenset({"experiments:read"}),
    "auditor": frozenset({"experiments:read"}),
}
ROLE_PERMISSIONS = {role: perms | _EXPERIMENT_GRANTS.get(role, frozenset())
                    for role, perms in ROLE_PERMISSIONS.items()}

#: the back office's operational pages (web/ops_pages.py): bill runs, the VEE and
#: reconciliation worklists, the cashier's counter
_OPS_PERMISSIONS: Mapping[str, str] = {
    "billing:run": "start a bill run for a period and follow its progress",
    "vee:read": "the meter-data worklist: flagged and estimated reads awaiting review",
    "vee:review": "release or reject a read held as implausible (it moves no balance until then)",
    "reconcile:read": "reconciliation runs by channel and day, and their breaks",
    "reconcile:resolve": "close a reconciliation break with a note saying how it was cleared",
    "counter:take": "take payments at the counter, print the receipt and close the own till",
}
PERMISSIONS = {**PERMISSIONS, **_OPS_PERMISSIONS}
_OPS_GRANTS: Mapping[str, frozenset[str]] = {
    "admin": frozenset(_OPS_PERMISSIONS),
    "billing_clerk": frozenset({"billing:run", "vee:read", "vee:review"}),
    "supervisor": frozenset({"billing:run", "vee:read", "vee:review", "reconcile:read",
                             "reconcile:resolve"}),
    "auditor": frozenset({"vee:read", "reconcile:read"}),
    "cashier": frozenset({"counter:take"}),
}
ROLE_PERMISSIONS = {role: perms | _OPS_GRANTS.get(role, frozenset())
                    for role, perms in ROLE_PERMISSIONS.items()}

#: the console's core pages: supervisors see personal data, supervisors and auditors read the
#: job history and the settings in force (admin has every permission already)
_CONSOLE_GRANTS: Mapping[str, frozenset[str]] = {
    "supervisor": frozenset({"pii:read", "jobs:read", "settings:read"}),
    "auditor": frozenset({"jobs:read", "settings:read"}),
}
ROLE_PERMISSIONS = {role: perms | _CONSOLE_GRANTS.get(role, frozenset())
                    for role, perms in ROLE_PERMISSIONS.items()}

ROLES = tuple(ROLE_PERMISSIONS)
STAFF_ROLES = tuple(r for r in ROLES if r != "customer")


def allows(role: str, permission: str) -> bool:
    if permission not in PERMISSIONS:
        raise KeyError(f"unknown permission {permission!r}")
    return permission in ROLE_PERMISSIONS.get(role, frozenset())


def roles_with(permission: str) -> list[str]:
    return [r for r in ROLES if allows(r, permission)]


# == the REST API over every domain (issue 12, web/*_api.py, docs/api.md) ==========================
#: staff read permissions of the API routes, and the customer's own-data permissions (a route with
#: an ``own:*`` permission further limits a customer user to their own customer id: another's → 404)
_API_PERMISSIONS: Mapping[str, str] = {
    "pii:read": "phone and ID numbers in clear (everyone else sees them masked: 138****5678)",
    "reads:read": "meter reads and the VEE findings",
    "reconcile:read": "the channel reconciliation reports and the clarification worklist",
    "risk:read": "arrears-risk scores with their reasons, the ranked list and early warnings",
    "kpis:read": "the KPI figures by period, region, customer class, station and collector",
    "own:customer": "the signed-in customer's own customer record and accounts",
    "own:reads": "the signed-in customer's own meter reads",
    "own:payments": "the signed-in customer's own payments",
}
PERMISSIONS = {**PERMISSIONS, **_API_PERMISSIONS}
#: pii:read: the billing clerk keeps the customer files (开户/过户 need the ID number) and
#: calls customers about their reads; cashiers, collectors and supervisors work from the masked
#: number (a collector's contact check verifies a number without reading it back)
_API_GRANTS: Mapping[str, frozenset[str]] = {
    "admin": frozenset(p for p in _API_PERMISSIONS if not p.startswith("own:")),
    "billing_clerk": frozenset({"pii:read", "reads:read"}),
    "collector": frozenset({"reads:read"}),
    "supervisor": frozenset({"reads:read", "reconcile:read", "risk:read", "kpis:read"}),
    "auditor": frozenset({"reads:read", "reconcile:read", "risk:read", "kpis:read"}),
    "customer": frozenset({"own:customer", "own:reads", "own:payments"}),
}
ROLE_PERMISSIONS = {role: perms | _API_GRANTS.get(role, frozenset())
                    for role, perms in ROLE_PERMISSIONS.items()}

#: the customer portal (web/portal.py): a customer's own usage, payments and requests; every
#: route further limits them to the signed-in customer (another customer's id answers 404)
_PORTAL_PERMISSIONS: Mapping[str, str] = {
    "own:usage": "the signed-in customer's own usage charts",
    "own:pay": "create a payment order for the signed-in customer's own bill",
    "own:plans": "request a payment plan for the signed-in customer's own account",
    "own:complaints": "file a complaint about the signed-in customer's own service",
    "own:ratings": "rate the service the signed-in customer received",
}
PERMISSIONS = {**PERMISSIONS, **_PORTAL_PERMISSIONS}
ROLE_PERMISSIONS = {**ROLE_PERMISSIONS,
                    "customer": ROLE_PERMISSIONS["customer"] | frozenset(_PORTAL_PERMISSIONS)}
