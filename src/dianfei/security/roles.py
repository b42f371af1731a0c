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

ROLES = tuple(ROLE_PERMISSIONS)
STAFF_ROLES = tuple(r for r in ROLES if r != "customer")


def allows(role: str, permission: str) -> bool:
    if permission not in PERMISSIONS:
        raise KeyError(f"unknown permission {permission!r}")
    return permission in ROLE_PERMISSIONS.get(role, frozenset())


def roles_with(permission: str) -> list[str]:
    return [r for r in ROLES if allows(r, permission)]

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
