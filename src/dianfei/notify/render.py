"""Notice templates as data (通知模板): render a notice for a channel and a locale.

The templates are files, not code, so a utility rewords a notice without a release:
``templates/notices.toml`` lists the notice types with the variables each needs; per locale
(``zh-CN`` first, ``en``) one TOML file per notice holds the SMS text, the e-mail subject, the
title, the body and the facts table; ``email.html``, ``email.txt`` and ``letter.txt`` are the
shared layouts. ``[notify] template_dir`` points at a directory that overrides any of them file
by file.

Jinja2 with ``StrictUndefined``: a template that uses a variable the caller did not give fails
with a ``ValidationError`` naming the variable, the template and the locale — never a notice
with a hole in it. Optional variables (declared per notice) are present as ``None``.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dianfei.core.errors import ValidationError
from dianfei.core.rules import rule_cache

PACKAGED = Path(__file__).with_name("templates")
LOCALES = ("zh-CN", "en")
DEFAULT_LOCALE = "zh-CN"


@dataclass(frozen=True)
class NoticeSpec:
    """A notice type: the variables it needs, and whether the law requires it be given."""

    name: str
    description: str
    required: tuple[str, ...]
    optional: tuple[str, ...]
    #: an opt-out or an unreachable channel falls back to a letter (docs/notify.md)
    legally_required: bool


@dataclass(frozen=True)
class Rendered:
    """A notice rendered for one channel and locale."""

    notice: str
    channel: str
    locale: str
    title: str
    paragraphs: tuple[str, ...]
    facts: tuple[tuple[str, str], ...]
    #: e-mail
    subject: str | None = None
    text: str | None = None
    html: str | None = None
    #: SMS: the text (as the customer reads it) and the template variables a gateway with
    #: pre-registered templates (Alibaba Cloud SMS) needs
    sms_text: str | None = None
    sms_params: Mapping[str, str] | None = None
    #: letter: the block markup of notify/letters.py
    letter_markup: str | None = None
    #: the bill link, if the notice has one (e-mail button, WeChat message link)
    link: str | None = None
    #: e-mail: files to attach (the bill's PDF: the context's ``attachment``)
    attachments: tuple[str, ...] = ()


def normalise_locale(locale: str | None) -> str:
    """zh-CN / zh_CN / zh → zh-CN; en / en-US / en_GB → en."""
    if locale is None or not locale.strip():
        return DEFAULT_LOCALE
    low = locale.strip().lower().replace("_", "-")
    if low.startswith("zh"):
        return "zh-CN"
    if low.startswith("en"):
        return "en"
    raise ValidationError(f"locale must be one of {', '.join(LOCALES)}, got {locale!r}")


#: characters that end a line for str.splitlines (the letter parser splits on every one of them)
_LINE_BREAKS = dict.fromkeys(map(ord, "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"), " ")


def letter_text(value: Any) -> Any:
    """A value as it may appear in letter markup: on one line, with no table-cell separator.

    An address like ``"路1号\n| 应缴金额 | 0.00 元 |"`` would otherwise add a row to a legally
    required stop notice; ``|`` becomes the full-width ``｜`` (which reads the same on paper) and
    every line break a space.
    """
    if value is None or isinstance(value, (int, float)):
        return value
    return str(value).translate(_LINE_BREAKS).replace("|", "｜")


class Templates:
    """The template files of one installation: the packaged ones, overridden file by file."""

    def __init__(self, override_dir: Path | None = None) -> None:
        from jinja2 import Environment, StrictUndefined

        self.override_dir = override_dir
        self._text_env = Environment(undefined=StrictUndefined, autoescape=False,
                                     keep_trailing_newline=True)
        self._html_env = Environment(undefined=StrictUndefined, autoescape=True)
        # letter markup is line-oriented: a value must never start a line or a table cell
        self._letter_env = Environment(undefined=StrictUndefined, autoescape=False,
                                       keep_trailing_newline=True, finalize=letter_text)
        self._cache: dict[tuple[str, ...], Any] = {}
        self.specs = self._load_specs()

    # -- files -------------------------------------------------------------------------------
    def _path(self, relative: str) -> Path:
        if self.override_dir is not None and (self.override_dir / relative).exists():
            return self.override_dir / relative
        path = PACKAGED / relative
        if not path.exists():
            raise ValidationError(f"notice template {relative} does not exist")
        return path

    def _toml(self, relative: str) -> dict[str, Any]:
        key = ("toml", relative)
        if key not in self._cache:
            path = self._path(relative)
            try:
                with path.open("rb") as fh:
                    self._cache[key] = tomllib.load(fh)
            except tomllib.TOMLDecodeError as exc:
                raise ValidationError(f"notice template {path}: {exc}") from None
        return self._cache[key]  # type: ignore[no-any-return]

    def _compiled(self, where: str, source: str, html: bool = False, letter: bool = False) -> Any:
        key = ("tpl", source, str(html), str(letter))
        if key not in self._cache:
            from jinja2 import TemplateSyntaxError

            env = self._html_env if html else self._letter_env if letter else self._text_env
            try:
                self._cache[key] = env.from_string(source)
            except TemplateSyntaxError as exc:
                raise ValidationError(f"notice template {where}: {exc}") from None
        return self._cache[key]

    def _load_specs(self) -> dict[str, NoticeSpec]:
        raw = self._toml("notices.toml")
        specs = {}
        for name, body in raw.items():
            specs[name] = NoticeSpec(name=name, description=str(body.get("description", "")),
                                     required=tuple(body.get("required", ())),
                                     optional=tuple(body.get("optional", ())),
                                     legally_required=bool(body.get("legally_required", False)))
        return specs

    # -- checks ------------------------------------------------------------------------------
    def spec(self, notice: str) -> NoticeSpec:
        try:
            return self.specs[notice]
        except KeyError:
            raise ValidationError(
                f"notice must be one of {', '.join(self.specs)}, got {notice!r}") from None

    def check_context(self, notice: str, context: Mapping[str, str]) -> None:
        """Refuse a context that lacks a required variable or carries a non-text value."""
        spec = self.spec(notice)
        missing = [k for k in spec.required if context.get(k) in (None, "")]
        if missing:
            raise ValidationError(f"notice {notice}: context lacks {', '.join(missing)}")
        bad = [k for k, v in context.items() if v is not None and not isinstance(v, str)]
        if bad:
            raise ValidationError(
                f"notice {notice}: context values must be text (yuan as \"123.45\", dates as "
                f"YYYY-MM-DD); not text: {', '.join(sorted(bad))}")

    # -- rendering ---------------------------------------------------------------------------
    def _render(self, where: str, source: str, values: Mapping[str, Any], html: bool = False,
                letter: bool = False) -> str:
        from jinja2 import UndefinedError

        try:
            return str(self._compiled(where, source, html, letter).render(values))
        except UndefinedError as exc:
            raise ValidationError(f"notice template {where}: {exc.message} "
                                  "(a variable the template needs is missing)") from None

    def sms_variables(self, notice: str, locale: str) -> tuple[str, ...]:
        """The variables the SMS text uses: what a registered gateway template receives."""
        key = ("smsvars", notice, locale)
        if key not in self._cache:
            from jinja2 import meta

            source = self._toml(f"{locale}/{notice}.toml")["sms"]
            ast = self._text_env.parse(source)
            self._cache[key] = tuple(sorted(meta.find_undeclared_variables(ast)))
        return self._cache[key]  # type: ignore[no-any-return]

    def _sms_plan(self, source: str) -> tuple[str, tuple[str, ...]] | None:
        """An SMS text that is only literal text and ``{{ variable }}`` outputs (every packaged
        one), as a ``str.format`` pattern and the variables it takes in order. Formatting it gives
        what Jinja renders (``str`` of each value) for ~1/10 of the cost, which counts at 3,000
        SMS a second. None for anything else (filters, conditions, loops): Jinja renders those."""
        key = ("smsplan", source)
        if key not in self._cache:
            from jinja2 import TemplateSyntaxError, nodes

            plan: list[str | tuple[str]] | None = []
            try:
                ast = self._text_env.parse(source)
            except TemplateSyntaxError:
                ast = None
            for node in ast.body if ast is not None else [None]:
                if plan is None or not isinstance(node, nodes.Output):
                    plan = None
                    break
                for part in node.nodes:
                    if isinstance(part, nodes.TemplateData):
                        plan.append(part.data)
                    elif isinstance(part, nodes.Name) and part.ctx == "load":
                        plan.append((part.name,))
                    else:
                        plan = None
                        break
            if plan is not None:
                # the plan must give what Jinja gives, with any value
                probe = {p[0]: f"\x00{i}\x00" for i, p in enumerate(plan) if isinstance(p, tuple)}
                mine = "".join(p if isinstance(p, str) else probe[p[0]] for p in plan)
                if self._compiled("sms", source).render(probe) != mine:
                    plan = None
            if plan is None:
                self._cache[key] = None
            else:
                pattern = "".join(p.replace("{", "{{").replace("}", "}}") if isinstance(p, str) else "{}"
                                  for p in plan)
                self._cache[key] = (pattern, tuple(p[0] for p in plan if isinstance(p, tuple)))
        return self._cache[key]  # type: ignore[no-any-return]

    def _sms(self, where: str, tpl: Mapping[str, Any], notice: str, loc: str,
             values: Mapping[str, Any]) -> dict[str, Any]:
        source = str(tpl["sms"])
        plan = self._sms_plan(source)
        if plan is None:
            text = self._render(f"{where}:sms", source, values)
        else:
            pattern, names = plan
            try:
                text = pattern.format(*[str(values[n]) for n in names])
            except KeyError as exc:  # StrictUndefined's message
                raise ValidationError(f"notice template {where}:sms: '{exc.args[0]}' is undefined "
                                      "(a variable the template needs is missing)") from None
        return {"sms_text": text.strip(),
                "sms_params": {k: str(values[k]) for k in self.sms_variables(notice, loc)
                               if values.get(k) is not None}}

    def render(self, notice: str, channel: str, locale: str | None, context: Mapping[str, str],
               *, extra: Mapping[str, str] | None = None, sms_only: bool = False) -> Rendered:
        """Render one notice for one channel. ``extra`` carries what notify adds itself:
        utility_name, hotline, and for letters recipient_name, recipient_address, today.

        ``sms_only`` (dispatch, channel sms): render the SMS text and its parameters alone —
        ``title`` is empty and ``paragraphs``/``facts`` are left out. The SMS is all the gateway
        gets, and the other parts cost ten times more (each of ~19 small templates)."""
        spec = self.spec(notice)
        loc = normalise_locale(locale)
        values: dict[str, Any] = {k: None for k in spec.optional}
        values.update(context)
        values.update(extra or {})
        values["locale"] = loc
        where = f"{loc}/{notice}.toml"
        tpl = self._toml(where)
        if sms_only and channel == "sms":
            return Rendered(notice=notice, channel=channel, locale=loc, title="", paragraphs=(),
                            facts=(), link=values.get("bill_link") or None, **self._sms(where, tpl,
                                                                                     notice, loc, values))
        words_raw = self._toml(f"{loc}/_layout.toml")
        words = {k: self._render(f"{loc}/_layout.toml:{k}", str(v), values)
                 for k, v in words_raw.items()}
        title = self._render(f"{where}:title", str(tpl["title"]), values).strip()
        body = self._render(f"{where}:body", str(tpl["body"]), values)
        paragraphs = tuple(" ".join(p.split("\n")).strip() for p in body.split("\n\n") if p.strip())
        facts = tuple((self._render(f"{where}:facts", str(label), values),
                       self._render(f"{where}:facts", str(value), values))
                      for label, value in tpl.get("facts", ()))
        link = values.get("bill_link") or None
        out: dict[str, Any] = {"notice": notice, "channel": channel, "locale": loc, "title": title,
                               "paragraphs": paragraphs, "facts": facts, "link": link}
        layout = {**values, "title": title, "paragraphs": paragraphs, "facts": facts,
                  "words": words, "bill_link": link}
        if channel == "sms":
            out.update(self._sms(where, tpl, notice, loc, values))
        elif channel == "email":
            out["subject"] = self._render(f"{where}:subject", str(tpl["subject"]), values).strip()
            out["text"] = self._render("email.txt", self._path("email.txt").read_text("utf-8"),
                                       layout)
            out["html"] = self._render("email.html", self._path("email.html").read_text("utf-8"),
                                       layout, html=True)
            if values.get("attachment"):
                out["attachments"] = (str(values["attachment"]),)
        elif channel == "letter":
            out["letter_markup"] = self._render(
                "letter.txt", self._path("letter.txt").read_text("utf-8"), layout, letter=True)
        elif channel != "wechat":
            raise ValidationError(f"channel must be sms, email, wechat or letter, got {channel!r}")
        return Rendered(**out)


@rule_cache(maxsize=8)
def templates(override_dir: str | None = None) -> Templates:
    """The (cached) template set; ``override_dir`` from ``[notify] template_dir``."""
    return Templates(Path(override_dir) if override_dir else None)


#: a context that exercises every variable of every notice (for `notify preview` and tests)
SAMPLE_CONTEXT: dict[str, str] = {
    "customer_name": "张三",
    "account_id": "C00000001",
    "amount_due": "123.45",
    "amount_paid": "123.45",
    "due_on": "2026-10-25",
    "paid_on": "2026-10-28",
    "bill_id": "C00000001-202609-1",
    "bill_link": "https://pay.example.cn/b/C00000001-202609-1",
    "stop_on": "2026-11-08",
    "balance": "12.30",
    "pay_channels": "网上国网App、支付宝、微信、营业厅",
    # bill_forecast (risk's next-bill forecast)
    "period": "2026-07",
    "amount": "312.40",
    "amount_low": "268.10",
    "amount_high": "361.75",
    "usual_amount": "140.20",
    "kwh": "520.00",
    "bill_total": "98.70",
}
