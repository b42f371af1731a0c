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
    # collector operations (跨部门工单, 联系方式核实, 信用等级)
    "tasks:read": "every department's tasks",
    "tasks:own": "the tasks owned by the signed-in user (list, report done)",
    "tasks:write": "open, assign, hand over, complete and escalate any task",
    "contacts:read": "contact flags and verified-phone coverage",
    "contacts:verify": "record a contact verified with the customer",
    "ratings:read": "credit ratings and the incentives report",
}

_READ_BILLS = {"periods:read", "bills:read", "customers:read"}

#: role → permissions (管理员, 抄核收员, 收费员, 催费员, 主管, 稽核, 客户)
ROLE_PERMISSIONS: Mapping[str, frozenset[str]] = {
    "admin": frozenset(PERMISSIONS) - {"own:bills"},
    "billing_clerk": frozenset(_READ_BILLS | {"exceptions:read"}),
    "cashier": frozenset(_READ_BILLS | {"payments:read"}),
    "collector": frozenset({"bills:read", "customers:read", "payments:read", "tasks:own"}),
    "supervisor": frozenset(_READ_BILLS | {"exceptions:read", "payments:read",
                                           "payments:worklist", "tasks:read", "tasks:write",
                                           "contacts:read", "contacts:verify", "ratings:read"}),
    "auditor": frozenset(_READ_BILLS | {"exceptions:read", "payments:read",
                                        "payments:worklist", "audit:read", "tasks:read",
                                        "contacts:read", "ratings:read"}),
    "customer": frozenset({"own:bills"}),
}

ROLES = tuple(ROLE_PERMISSIONS)
STAFF_ROLES = tuple(r for r in ROLES if r != "customer")


def allows(role: str, permission: str) -> bool:
    if permission not in PERMISSIONS:
        raise KeyError(f"unknown permission {permission!r}")
    return permission in ROLE_PERMISSIONS.get(role, frozenset())


def roles_with(permission: str) -> list[str]:
    return [r for r in ROLES if allows(r, permission)]
