"""Render a bill document as HTML (Jinja2, autoescaped) from the same view as the PDF."""

from __future__ import annotations

from functools import lru_cache
from typing import Any


@lru_cache(maxsize=1)
def _env() -> Any:
    from jinja2 import Environment, PackageLoader, select_autoescape

    from dianfei.billing.qr import qr_svg

    env = Environment(loader=PackageLoader("dianfei.billing", "templates"),
                      autoescape=select_autoescape(["html"]))
    env.globals["qr_svg"] = qr_svg
    return env


def render_html(document: dict[str, Any], lang: str | None = None) -> str:
    """The web bill (zh-CN unless ``lang`` says en): the sections of :func:`view.bill_view`."""
    from dianfei.billing.view import bill_view

    return str(_env().get_template("bill.html").render(bill=document, view=bill_view(document, lang)))
