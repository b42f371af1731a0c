"""The console's page renderer: one Jinja2 environment, the navigation, the language and the
CSRF token for every page.

A page module registers its routes on the app and its menu entry here
(:meth:`Console.add_nav`); the menu shows only what the signed-in role may open, so a cashier
never sees a link that would answer 403.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, select_autoescape

from dianfei.security.service import Principal, allows
from dianfei.web import i18n
from dianfei.web.auth import COOKIE, caller
from dianfei.web.csrf import csrf_token


@dataclass(frozen=True)
class NavItem:
    key: str  # i18n key of the label
    href: str
    permission: str
    order: int


@dataclass
class Console:
    env: Environment = field(default_factory=lambda: Environment(
        loader=PackageLoader("dianfei.web", "templates"),
        autoescape=select_autoescape(["html"])))
    nav: list[NavItem] = field(default_factory=list)
    #: the account search box appears once a module serves ``/search``
    search_href: str | None = None

    def add_nav(self, key: str, href: str, permission: str, order: int = 100) -> None:
        allows("admin", permission)  # an unknown permission fails at start-up, not on a click
        self.nav.append(NavItem(key, href, permission, order))
        self.nav.sort(key=lambda n: (n.order, n.key))

    def lang(self, request: Request) -> str:
        asked = request.query_params.get("lang")
        return i18n.normalise(asked or request.cookies.get(i18n.COOKIE))

    def context(self, request: Request) -> dict[str, Any]:
        lang = self.lang(request)
        who: Principal | None = caller(request)
        session = request.cookies.get(COOKIE)
        return {
            "t": i18n.translator(lang), "lang": lang, "other_lang": i18n.other(lang),
            "user": who,
            "nav": [n for n in self.nav if who is not None and allows(who.role, n.permission)],
            "csrf": csrf_token(session) if session and who is not None else "",
            "path": request.url.path, "search_href": self.search_href,
        }

    def render(self, request: Request, template: str, status_code: int = 200,
               **values: Any) -> HTMLResponse:
        ctx = self.context(request)
        ctx.update(values)
        resp = HTMLResponse(self.env.get_template(template).render(**ctx), status_code=status_code)
        asked = request.query_params.get("lang")
        if asked:  # the switch is remembered for the next pages
            resp.set_cookie(i18n.COOKIE, ctx["lang"], max_age=365 * 86400, samesite="lax",
                            httponly=True)
        return resp
