"""The fakes' daily trade bills have the real layouts the statement parsers are written against."""

from __future__ import annotations

import io
import zipfile
from datetime import date, datetime
from zoneinfo import ZoneInfo

from tests.fakes.alipay import ALIPAY_DETAIL_COLUMNS, AlipayBillLine, FakeAlipay
from tests.fakes.wechatpay import WECHAT_ALL_COLUMNS, WECHAT_SUMMARY_COLUMNS, FakeWechatPay, WechatBillLine

BJ = ZoneInfo("Asia/Shanghai")
DAY = date(2024, 3, 1)


def test_alipay_trade_bill_zip_of_two_gbk_csvs(fake_alipay: FakeAlipay) -> None:
    lines = [
        AlipayBillLine("2024030122001400001", "DF1", 12345, datetime(2024, 3, 1, 10, 0, tzinfo=BJ)),
        AlipayBillLine("2024030122001400002", "DF2", 5000, datetime(2024, 3, 1, 11, 0, tzinfo=BJ)),
        AlipayBillLine(
            "2024030122001400001",
            "DF1",
            2345,
            datetime(2024, 3, 1, 15, 0, tzinfo=BJ),
            refund_no="RF1",
            order_amount_fen=12345,
        ),
    ]
    data = fake_alipay.trade_bill(DAY, lines)
    with zipfile.ZipFile(io.BytesIO(data), metadata_encoding="gbk") as zf:
        names = sorted(zf.namelist())
        assert names == [
            "2088101122136241_20240301_业务明细(汇总).csv",
            "2088101122136241_20240301_业务明细.csv",
        ]
        detail = zf.read(names[1]).decode("gbk").split("\r\n")
        summary = zf.read(names[0]).decode("gbk").split("\r\n")
    assert detail[0] == "#支付宝业务明细查询"
    assert detail[1] == "#账号：[20881011221362410156]"
    assert detail[2] == "#起始日期：[2024年03月01日 00:00:00]   终止日期：[2024年03月02日 00:00:00]"
    assert detail[3].startswith("#---") and "业务明细列表" in detail[3]
    assert detail[4].split(",") == list(ALIPAY_DETAIL_COLUMNS)
    rows = [r.split(",") for r in detail[5:8]]
    assert all(len(r) == 25 for r in rows)
    assert [r[0].strip() for r in rows] == [
        "2024030122001400001",
        "2024030122001400002",
        "2024030122001400001",
    ]
    assert [r[2].strip() for r in rows] == ["交易", "交易", "退款"]
    assert [(r[11], r[12]) for r in rows] == [("123.45", "123.45"), ("50.00", "50.00"), ("123.45", "-23.45")]
    assert rows[2][21].strip() == "RF1" and rows[0][22] == "-0.74"
    assert detail[8].startswith("#---") and "业务明细列表结束" in detail[8]
    assert detail[9] == "#交易合计：2笔，商家实收共173.45元，商家优惠共0.00元"
    assert detail[10] == "#退款合计：1笔，商家实收退款共-23.45元，商家优惠退款共0.00元"
    assert detail[11].startswith("#导出时间：[2024年03月02日")
    total = next(r for r in summary if r.startswith("合计")).split(",")
    assert total[2:6] == ["2", "1", "173.45", "150.00"]


def test_wechat_trade_bill_backticks_and_summary(fake_wechat: FakeWechatPay) -> None:
    lines = [
        WechatBillLine("4200000001", "DF1", 12345, datetime(2024, 3, 1, 10, 0, tzinfo=BJ)),
        WechatBillLine("4200000002", "DF2", 100, datetime(2024, 3, 1, 11, 0, tzinfo=BJ)),
        WechatBillLine(
            "4200000001",
            "DF1",
            2345,
            datetime(2024, 3, 1, 15, 0, tzinfo=BJ),
            refund_id="50300000001",
            out_refund_no="RF1",
        ),
    ]
    text = fake_wechat.trade_bill(DAY, lines).decode("utf-8")
    assert text.startswith("\ufeff") and text.endswith("\r\n")
    out = text[1:].split("\r\n")[:-1]
    assert out[0].split(",") == list(WECHAT_ALL_COLUMNS)
    rows = [r.split(",") for r in out[1:4]]
    assert all(len(r) == 27 and all(c.startswith("`") for c in r) for r in rows)
    cells = [[c[1:] for c in r] for r in rows]
    assert cells[0][:13] == [
        "2024-03-01 10:00:00",
        fake_wechat.appid,
        fake_wechat.mchid,
        "0",
        "",
        "4200000001",
        "DF1",
        "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o",
        "JSAPI",
        "SUCCESS",
        "OTHERS",
        "CNY",
        "123.45",
    ]
    assert (cells[0][22], cells[0][23], cells[0][24]) == ("0.74000", "0.60%", "123.45")
    assert (cells[2][9], cells[2][14], cells[2][15], cells[2][16], cells[2][22]) == (
        "REFUND",
        "50300000001",
        "RF1",
        "23.45",
        "-0.14000",
    )
    assert out[4].split(",") == list(WECHAT_SUMMARY_COLUMNS)
    assert out[5].split(",") == ["`3", "`124.45", "`23.45", "`0.00", "`0.61000", "`124.45", "`23.45"]
    assert len(out) == 6
