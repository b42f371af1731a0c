"""Statement parsers: the real formats, their totals checks, and every kind of bad file."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dianfei.core.clock import BUSINESS_TZ
from dianfei.core.errors import DianfeiError
from dianfei.payments.statements import StatementError, parse_statement
from tests.payments.statements.builders import Line, alipay_csv, alipay_zip, wechat_bill

AT = datetime(2024, 3, 5, 10, 0, 0)
LINES = [
    Line("4200001", 1234, AT, "DF1", fee=7),
    Line("4200002", 500, AT.replace(hour=23, minute=59), "DF2"),
    Line("4200001", 900, AT.replace(hour=12), "DF1", kind="refund", refund_id="500001", fee=5),
]


def test_wechat_bill_gives_one_row_per_line_in_fen_and_utc() -> None:
    s = parse_statement("wechatpay", wechat_bill(LINES), name="wx.csv")
    assert s.frame.select(
        "transaction_id", "order_no", "amount", "kind", "fee", "line", "refund_id"
    ).rows() == [
        ("4200001", "DF1", 1234, "payment", 7, 2, None),
        ("4200002", "DF2", 500, "payment", 0, 3, None),
        ("4200001", "DF1", 900, "refund", -5, 4, "500001"),
    ]
    assert s.frame["paid_at"].to_list()[1] == datetime(2024, 3, 5, 15, 59, tzinfo=UTC)
    assert s.check.ok and s.check.figures["总交易单数"] == (3, 3)
    assert s.check.figures["应结订单总金额"] == (1734, 1734)


def test_alipay_zip_with_gbk_member_names_and_the_bare_csv_parse_alike() -> None:
    csv = alipay_csv(LINES)
    zipped = parse_statement("alipay", alipay_zip(csv), name="bill.zip")
    bare = parse_statement("alipay", csv, name="bill.csv")
    utf8 = parse_statement("alipay", alipay_zip(csv, utf8_names=True))
    assert zipped.frame.equals(bare.frame) and utf8.frame.equals(bare.frame)
    assert bare.frame.select("transaction_id", "amount", "kind", "fee", "line", "refund_id").rows() == [
        ("4200001", 1234, "payment", 7, 6, None),
        ("4200002", 500, "payment", 0, 7, None),
        ("4200001", 900, "refund", -5, 8, "500001"),
    ]
    assert bare.check.ok and bare.check.figures["商家实收退款"] == (-900, -900)
    assert zipped.file.endswith("业务明细.csv") and bare.meta["account"] == "20881234567890120156"


def test_a_summary_that_disagrees_with_the_lines_is_a_finding_not_a_crash() -> None:
    s = parse_statement(
        "wechatpay", wechat_bill(LINES, summary={"总交易单数": "4", "应结订单总金额": "17.35"})
    )
    assert not s.check.ok and s.check.mismatches == ["总交易单数", "应结订单总金额"]
    a = parse_statement("alipay", alipay_csv(LINES, trades=(2, 1735)))
    assert a.check.mismatches == ["商家实收"]


@pytest.mark.parametrize("cut", [0.3, 0.6, 0.97])
def test_a_truncated_file_is_refused_naming_the_file(cut: float) -> None:
    for channel, data in (("wechatpay", wechat_bill(LINES)), ("alipay", alipay_csv(LINES))):
        with pytest.raises(StatementError) as err:
            parse_statement(channel, data[: int(len(data) * cut)], name=f"{channel}.csv")
        assert str(err.value).startswith(f"{channel}.csv: line ")


def test_a_gbk_file_read_as_utf8_and_bytes_valid_in_no_encoding_are_refused() -> None:
    with pytest.raises(StatementError, match="not an Alipay business-detail bill"):
        parse_statement("alipay", alipay_csv(LINES), encoding="latin-1")
    with pytest.raises(StatementError, match=r"line 3, encoding"):
        parse_statement("wechatpay", wechat_bill(LINES).replace(b"4200002", b"\xff\xfe\xff", 1))


def test_unknown_and_missing_columns_are_named() -> None:
    data = wechat_bill(LINES).replace("商户订单号".encode(), "商户单号".encode(), 1)
    with pytest.raises(StatementError) as err:
        parse_statement("wechatpay", data, name="wx.csv")
    assert "line 1, 商户单号: unknown column" in str(err.value) and "商户订单号: missing column" in str(
        err.value
    )


def test_negative_and_malformed_amounts_are_named_by_line_and_field() -> None:
    data = wechat_bill(LINES).replace(b"`12.34,`0.00,`", b"`-12.34,`0.00,`", 1)
    data = data.replace(b"`5.00", b"`5.0x", 1)
    with pytest.raises(StatementError) as err:
        parse_statement("wechatpay", data, name="wx.csv")
    msg = str(err.value)
    assert "line 2, 应结订单金额: a payment cannot settle a negative amount" in msg
    assert "line 3, 应结订单金额: not an amount" in msg
    bad = alipay_csv([Line("T9", 100, AT, "DF9")]).replace("交易,".encode("gbk"), "冻结,".encode("gbk"))
    with pytest.raises(StatementError, match="line 6, 业务类型: unknown business type"):
        parse_statement("alipay", bad)


def test_a_garbage_line_in_the_middle_is_reported_never_skipped() -> None:
    data = wechat_bill(LINES).replace(b"\r\n`2024-03-05 23:59", b"\r\nhello world\r\n`2024-03-05 23:59", 1)
    with pytest.raises(StatementError, match="line 3, raw: a detail row must start with a backtick"):
        parse_statement("wechatpay", data)


def test_against_the_channel_fakes() -> None:
    from tests.fakes.alipay import AlipayBillLine, FakeAlipay
    from tests.fakes.wechatpay import FakeWechatPay, WechatBillLine

    at = datetime(2024, 3, 5, 9, 0, tzinfo=BUSINESS_TZ)
    wx = FakeWechatPay().trade_bill(
        date(2024, 3, 5),
        [
            WechatBillLine("4200000001", "DF1", 12345, at),
            WechatBillLine("4200000002", "DF2", 99, at),
            WechatBillLine("4200000001", "DF1", 345, at, refund_id="50300001", out_refund_no="RF1"),
        ],
    )
    s = parse_statement("wechatpay", wx)
    assert s.check.ok, s.check.as_json()
    assert s.frame.select("transaction_id", "amount", "kind", "refund_id").rows() == [
        ("4200000001", 12345, "payment", None),
        ("4200000002", 99, "payment", None),
        ("4200000001", 345, "refund", "50300001"),
    ]
    ali = FakeAlipay().trade_bill(
        date(2024, 3, 5),
        [
            AlipayBillLine("2024030522001", "DF1", 12345, at),
            AlipayBillLine("2024030522001", "DF1", 345, at, refund_no="RF1"),
        ],
    )
    a = parse_statement("alipay", ali)
    assert a.check.ok, a.check.as_json()
    assert a.frame.select("transaction_id", "amount", "kind", "refund_id").rows() == [
        ("2024030522001", 12345, "payment", None),
        ("2024030522001", 345, "refund", "RF1"),
    ]


# ------------------------------------------------------------- fuzz: mutated lines never crash

_BASE = {"wechatpay": wechat_bill(LINES), "alipay": alipay_csv(LINES)}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    channel=st.sampled_from(["wechatpay", "alipay"]),
    pos=st.floats(0, 1),
    cut=st.integers(0, 40),
    junk=st.binary(max_size=40),
)
@example(channel="wechatpay", pos=0.5, cut=0, junk=b",`")
@example(channel="alipay", pos=0.6, cut=3, junk=b"\r\n#")
def test_fuzz_mutated_statements_parse_or_raise_a_typed_error(
    channel: str, pos: float, cut: int, junk: bytes
) -> None:
    data = _BASE[channel]
    i = int(pos * len(data))
    mutated = data[:i] + junk + data[i + cut :]
    try:
        s = parse_statement(channel, mutated, name="fuzz")
    except DianfeiError:
        return
    # whatever parses keeps the invariants: positive fen amounts, known kinds, real line numbers
    assert s.frame["amount"].min() is None or s.frame["amount"].min() > 0  # type: ignore[operator]
    assert set(s.frame["kind"].unique()) <= {"payment", "refund"}
    assert s.frame["line"].is_unique().all()


def test_a_gbk_name_whose_second_byte_is_the_delimiter_stays_one_field() -> None:
    """In GBK, 東 is 0x96 0x7C and 億 0x83 0x7C: their second byte is "|". Splitting the bytes
    before decoding cut such an outlet name into two fields and refused a genuine agent file."""
    from datetime import date, datetime

    from dianfei.core.clock import BUSINESS_TZ
    from dianfei.payments.layouts import load_layout
    from dianfei.payments.statements.bankfile import read_layout_file, render

    layout = load_layout("post_agent")
    at = datetime(2024, 3, 5, 14, 30, tzinfo=BUSINESS_TZ)
    outlet = "東城億家超市"
    assert b"|" in outlet.encode("gbk")
    body = render(layout, "agent", header={"agent_code": "YZ0001", "date": date(2024, 3, 5)},
                  details=[{"serial": "000001", "account_id": "C1", "amount": 3000, "paid_at": at,
                            "outlet": outlet}],
                  trailer={"count": 1, "total": 3000})
    parsed = read_layout_file(layout, "agent", body, name="yz.txt")
    assert [(d["account_id"], d["outlet"], d["amount"]) for d in parsed.details] == [("C1", outlet, 3000)]


def test_a_zip_that_unzips_past_the_cap_is_refused_before_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    """A zip bomb (kB that unzip to GB) must not fill memory: the member's size is checked first."""
    from dianfei.payments.statements import common

    csv = alipay_csv([Line(f"A{i}", 8000, datetime(2024, 3, 5, 10, 0), f"DF{i:06d}") for i in range(50)])
    monkeypatch.setattr(common, "MAX_UNZIPPED", len(csv) - 1)
    with pytest.raises(StatementError, match="more than the"):
        parse_statement("alipay", alipay_zip(csv), name="bill.zip")
    monkeypatch.setattr(common, "MAX_UNZIPPED", len(csv))
    assert parse_statement("alipay", alipay_zip(csv), name="bill.zip") is not None


def test_a_zip_member_in_a_compression_python_cannot_read_is_named() -> None:
    """zipfile raises NotImplementedError for such a member; the statement is refused saying so."""
    import io
    import struct
    import zipfile

    from dianfei.payments.statements.common import unzip_member

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("detail.csv", "x,y\n")
    data = bytearray(buf.getvalue())
    for signature, offset in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):  # local and central headers
        at = data.index(signature) + offset
        data[at:at + 2] = struct.pack("<H", 99)  # 99: WinZip AES
    with pytest.raises(StatementError) as info:
        unzip_member(bytes(data), "bill.zip", prefer="detail", avoid="summary")
    assert "compression method 99 is not supported" in str(info.value)
