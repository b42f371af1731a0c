"""Statement files in the channels' real formats, for tests (written independently of the
parsers from the channels' published format descriptions)."""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from datetime import datetime

WECHAT_HEADER = (
    "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,"
    "货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,"
    "商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注"
)
WECHAT_SUMMARY = (
    "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额"
)
ALIPAY_HEADER = (
    "支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,操作员,终端号,对方账户,"
    "订单金额（元）,商家实收（元）,支付宝红包（元）,集分宝（元）,支付宝优惠（元）,商家优惠（元）,券核销金额（元）,"
    "券名称,商家红包消费金额（元）,卡消费金额（元）,退款批次号/请求号,服务费（元）,分润（元）,备注"
)


@dataclass
class Line:
    transaction_id: str
    amount: int  # fen
    at: datetime  # Beijing-aware or naive Beijing
    order_no: str = ""
    kind: str = "payment"
    refund_id: str = ""
    fee: int = 0  # fen, positive = charged


def yuan(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    return f"{sign}{abs(fen) // 100}.{abs(fen) % 100:02d}"


def wechat_bill(lines: list[Line], *, summary: dict[str, str] | None = None, crlf: bool = True) -> bytes:
    out = [WECHAT_HEADER]
    settle = refund = fee = order = 0
    for ln in lines:
        t = ln.at.strftime("%Y-%m-%d %H:%M:%S")
        if ln.kind == "payment":
            f = [
                t,
                "wx8888888888888888",
                "1900000109",
                "0",
                "",
                ln.transaction_id,
                ln.order_no,
                "oUpF8uMuAJO",
                "NATIVE",
                "SUCCESS",
                "OTHERS",
                "CNY",
                yuan(ln.amount),
                "0.00",
                "0",
                "0",
                "0.00",
                "0.00",
                "",
                "",
                "电费",
                "",
                f"{yuan(ln.fee)}000",
                "0.60%",
                yuan(ln.amount),
                "0.00",
                "",
            ]
            settle += ln.amount
            order += ln.amount
        else:
            f = [
                t,
                "wx8888888888888888",
                "1900000109",
                "0",
                "",
                ln.transaction_id,
                ln.order_no,
                "oUpF8uMuAJO",
                "NATIVE",
                "REFUND",
                "OTHERS",
                "CNY",
                "0.00",
                "0.00",
                ln.refund_id,
                "R" + ln.refund_id,
                yuan(ln.amount),
                "0.00",
                "ORIGINAL",
                "SUCCESS",
                "电费",
                "",
                f"{yuan(-ln.fee)}000",
                "0.60%",
                "0.00",
                yuan(ln.amount),
                "",
            ]
            refund += ln.amount
        fee += ln.fee if ln.kind == "payment" else -ln.fee
        out.append(",".join("`" + x for x in f))
    values = {
        "总交易单数": str(len(lines)),
        "应结订单总金额": yuan(settle),
        "退款总金额": yuan(refund),
        "充值券退款总金额": "0.00",
        "手续费总金额": f"{yuan(fee)}000",
        "订单总金额": yuan(order),
        "申请退款总金额": yuan(refund),
    }
    values.update(summary or {})
    out.append(WECHAT_SUMMARY)
    out.append(",".join("`" + values[k] for k in WECHAT_SUMMARY.split(",")))
    nl = "\r\n" if crlf else "\n"
    return (nl.join(out) + nl).encode("utf-8")


def alipay_csv(
    lines: list[Line], *, trades: tuple[int, int] | None = None, refunds: tuple[int, int] | None = None
) -> bytes:
    out = [
        "#支付宝业务明细查询",
        "#账号：[20881234567890120156]",
        "#起始日期：[2024年03月05日 00:00:00]   终止日期：[2024年03月06日 00:00:00]",
        "#-----------------------------------------业务明细列表----------------------------------------",
        ALIPAY_HEADER,
    ]
    n_pay = pay = n_ref = ref = 0
    for ln in lines:
        t = ln.at.strftime("%Y-%m-%d %H:%M:%S")
        if ln.kind == "payment":
            f = [
                ln.transaction_id + "\t",
                ln.order_no + "\t",
                "交易",
                "电费缴费",
                t,
                t,
                "",
                "",
                "",
                "",
                "138****0000",
                yuan(ln.amount),
                yuan(ln.amount),
                "0.00",
                "0.00",
                "0.00",
                "0.00",
                "0.00",
                "",
                "0.00",
                "0.00",
                "",
                yuan(-ln.fee),
                "0.00",
                "",
            ]
            n_pay += 1
            pay += ln.amount
        else:
            f = [
                ln.transaction_id + "\t",
                ln.order_no + "\t",
                "退款",
                "电费缴费",
                t,
                t,
                "",
                "",
                "",
                "",
                "138****0000",
                yuan(ln.amount),
                yuan(-ln.amount),
                "0.00",
                "0.00",
                "0.00",
                "0.00",
                "0.00",
                "",
                "0.00",
                "0.00",
                ln.refund_id + "\t",
                yuan(ln.fee),
                "0.00",
                "",
            ]
            n_ref += 1
            ref -= ln.amount
        out.append(",".join(f))
    n_pay, pay = trades or (n_pay, pay)
    n_ref, ref = refunds or (n_ref, ref)
    out += [
        "#-----------------------------------------业务明细列表结束------------------------------------",
        f"#交易合计：{n_pay}笔，商家实收共{yuan(pay)}元，商家优惠共0.00元",
        f"#退款合计：{n_ref}笔，商家实收退款共{yuan(ref)}元，商家优惠退款共0.00元",
        "#导出时间：[2024年03月06日 09:21:10]",
    ]
    return ("\r\n".join(out) + "\r\n").encode("gbk")


def alipay_zip(csv: bytes, *, utf8_names: bool = False) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, body in (
            ("20881234567890120156_20240305_业务明细.csv", csv),
            ("20881234567890120156_20240305_业务明细(汇总).csv", "#汇总\r\n".encode("gbk")),
        ):
            info = zipfile.ZipInfo(name) if utf8_names else _GbkName(name.encode("gbk").decode("cp437"))
            z.writestr(info, body)
    return buf.getvalue()


class _GbkName(zipfile.ZipInfo):
    """A member name stored as GBK bytes without the UTF-8 flag, as Alipay's archives have."""

    def _encodeFilenameFlags(self) -> tuple[bytes, int]:
        return self.filename.encode("cp437"), self.flag_bits
