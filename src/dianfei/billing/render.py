"""Render a bill document as HTML (Jinja2, autoescaped)."""

from __future__ import annotations

from typing import Any


def render_html(document: dict[str, Any]) -> str:
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(loader=PackageLoader("dianfei.billing", "templates"),
                      autoescape=select_autoescape(["html"]))
    return env.get_template("bill.html").render(bill=document)
