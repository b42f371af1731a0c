"""Notice templates: every notice renders on every channel in both locales with exactly the
variables it declares, and a missing one fails with its name."""

from __future__ import annotations

import pytest

from dianfei.core.errors import ValidationError
from dianfei.notify import service
from dianfei.notify.render import LOCALES, SAMPLE_CONTEXT, normalise_locale, templates

EXTRA = {"utility_name": "城关供电公司", "hotline": "95598", "recipient_name": "张三",
         "recipient_address": "城关镇测试路1号", "today": "2026-11-02"}


def _required_only(notice: str) -> dict[str, str]:
    return {k: SAMPLE_CONTEXT[k] for k in templates().spec(notice).required}


def test_the_notice_list_matches_the_contract() -> None:
    assert tuple(templates().specs) == service.NOTICES
    legal = {n for n, s in templates().specs.items() if s.legally_required}
    assert legal == {"stop_notice", "pre_stop", "cutoff_notice"}


@pytest.mark.parametrize("notice", service.NOTICES)
@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("channel", service.CHANNELS)
def test_renders_with_only_the_required_variables(notice: str, locale: str, channel: str) -> None:
    r = templates().render(notice, channel, locale, _required_only(notice), extra=EXTRA)
    assert r.title and r.paragraphs and r.facts
    assert "None" not in " ".join(r.paragraphs)  # an absent optional variable leaves no trace
    if channel == "sms":
        assert r.sms_text and set(r.sms_params or {}) <= set(templates().spec(notice).required)
    if channel == "email":
        assert r.subject and r.text and r.html and "\n" not in r.subject
    if channel == "letter":
        assert r.letter_markup and "张三" in r.letter_markup and "城关镇测试路1号" in r.letter_markup


@pytest.mark.parametrize("notice", service.NOTICES)
def test_amounts_dates_channels_and_link_appear(notice: str) -> None:
    spec = templates().spec(notice)
    r = templates().render(notice, "email", "zh-CN", SAMPLE_CONTEXT, extra=EXTRA)
    for key in ("amount_due", "amount_paid", "balance", "due_on", "stop_on", "pay_channels", "bill_link"):
        if key in spec.required:
            assert SAMPLE_CONTEXT[key] in r.text, (notice, key)  # type: ignore[operator]


@pytest.mark.parametrize("notice", service.NOTICES)
def test_zh_cn_sms_fits_two_segments(notice: str) -> None:
    # a Chinese SMS segment is 70 characters (67 when concatenated); the signature 【…】 adds ~6
    r = templates().render(notice, "sms", "zh-CN", SAMPLE_CONTEXT, extra=EXTRA)
    assert len(r.sms_text or "") + 6 <= 2 * 67, r.sms_text


@pytest.mark.parametrize("notice", service.NOTICES)
def test_a_missing_required_variable_is_refused_by_name(notice: str) -> None:
    spec = templates().spec(notice)
    for key in spec.required:
        ctx = {k: v for k, v in _required_only(notice).items() if k != key}
        with pytest.raises(ValidationError, match=f"context lacks {key}"):
            templates().check_context(notice, ctx)
        with pytest.raises(ValidationError, match=f"'{key}' is undefined"):
            templates().render(notice, "sms", "zh-CN", ctx, extra=EXTRA)


def test_context_values_must_be_text() -> None:
    ctx = {**_required_only("reminder"), "amount_due": 123.45}
    with pytest.raises(ValidationError, match="not text: amount_due"):
        templates().check_context("reminder", ctx)  # type: ignore[arg-type]


def test_html_escapes_what_the_customer_record_holds() -> None:
    ctx = {**SAMPLE_CONTEXT, "customer_name": "<script>x</script>"}
    r = templates().render("reminder", "email", "zh-CN", ctx, extra=EXTRA)
    assert "<script>" not in (r.html or "") and "&lt;script&gt;" in (r.html or "")


def test_locales_normalise_and_unknown_ones_are_refused() -> None:
    assert [normalise_locale(x) for x in (None, "zh_CN", "zh", "en-US", "EN")] == [
        "zh-CN", "zh-CN", "zh-CN", "en", "en"]
    with pytest.raises(ValidationError, match="locale must be one of"):
        normalise_locale("fr")


def test_an_override_directory_replaces_one_file(tmp_path: object) -> None:
    from pathlib import Path

    from dianfei.notify.render import PACKAGED, Templates

    d = Path(str(tmp_path)) / "zh-CN"
    d.mkdir(parents=True)
    text = (PACKAGED / "zh-CN" / "reminder.toml").read_text("utf-8").replace("请尽快交纳", "请于三日内交纳")
    (d / "reminder.toml").write_text(text, "utf-8")
    r = Templates(d.parent).render("reminder", "sms", "zh-CN", SAMPLE_CONTEXT, extra=EXTRA)
    assert "请于三日内交纳" in (r.sms_text or "")
    assert "请尽快交纳" in (templates().render("reminder", "sms", "zh-CN", SAMPLE_CONTEXT,
                                           extra=EXTRA).sms_text or "")


def test_preview_renders_the_sample() -> None:
    r = service.preview("stop_notice", "sms", "zh-CN")
    assert r.sms_text is not None and "123.45" in r.sms_text and "2026-11-08" in r.sms_text


@pytest.mark.parametrize("notice", service.NOTICES)
@pytest.mark.parametrize("locale", LOCALES)
def test_the_sms_fast_path_renders_what_jinja_renders(notice: str, locale: str) -> None:
    # dispatch formats a plain SMS text ({{ variable }} and text only) without Jinja: same text
    tpl = templates()
    source = tpl._toml(f"{locale}/{notice}.toml")["sms"]
    for ctx in (SAMPLE_CONTEXT, _required_only(notice)):
        values = {k: None for k in tpl.spec(notice).optional} | dict(ctx) | EXTRA | {"locale": locale}
        fast = tpl.render(notice, "sms", locale, ctx, extra=EXTRA, sms_only=True).sms_text
        assert fast == tpl._compiled("sms", source).render(values).strip()


def test_an_sms_text_with_logic_is_rendered_by_jinja() -> None:
    tpl = templates()
    assert tpl._sms_plan("Dear {{ name }}, {{ amount }} yuan {x}.") is not None
    assert tpl._sms_plan("{% if stop_on %}stops {{ stop_on }}{% endif %}") is None
    assert tpl._sms_plan("{{ name | upper }}") is None
    # braces of the text survive the format pattern
    pattern, names = tpl._sms_plan("{x} {{ name }} }{") or ("", ())
    assert pattern.format("张三") == "{x} 张三 }{" and names == ("name",)


def test_a_missing_variable_fails_the_fast_path_like_jinja() -> None:
    tpl = templates()
    ctx = dict(SAMPLE_CONTEXT)
    with pytest.raises(ValidationError, match="'customer_name' is undefined"):
        tpl._sms("zh-CN/reminder.toml", tpl._toml("zh-CN/reminder.toml"), "reminder", "zh-CN",
                 {k: v for k, v in ctx.items() if k != "customer_name"})
