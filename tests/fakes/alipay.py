"""The one fake of Alipay (支付宝) for tests and benchmarks: it speaks Alipay's real wire formats.

- :meth:`FakeAlipay.notification` builds an asynchronous notification exactly as Alipay POSTs it:
  ``application/x-www-form-urlencoded; charset=…``, every value percent-encoded in the charset,
  signed RSA2 (SHA256withRSA, PKCS#1 v1.5) over the sorted ``k=v&…`` of the decoded values without
  ``sign``, ``sign_type`` and empty values — the rule of Alipay's own SDK (``rsaCheckV1``).
- :meth:`FakeAlipay.trade_bill` builds the daily trade bill (``bill_type=trade``) as
  ``alipay.data.dataservice.bill.downloadurl.query`` delivers it: a zip of two GBK CSV files,
  ``{pid}_{yyyymmdd}_业务明细.csv`` and ``{pid}_{yyyymmdd}_业务明细(汇总).csv`` with ``#`` comment
  headers and footers (see docs/payment-channels.md for the columns).

The fake owns its RSA key pair (one 2048-bit key per process, generation is slow); tests write its
public key where ``DIANFEI_ALIPAY_PUBLIC_KEY_FILE`` points. Forged and tampered variants help prove
that verification refuses everything Alipay did not sign.
"""

from __future__ import annotations

import base64
import io
import secrets
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache
from pathlib import Path
from urllib.parse import parse_qsl, quote_plus, urlencode
from zoneinfo import ZoneInfo

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.hazmat.primitives.hashes import SHA256

BEIJING = ZoneInfo("Asia/Shanghai")


@cache
def rsa_key(name: str = "alipay") -> rsa.RSAPrivateKey:
    """One 2048-bit key per name per process (generation takes tens of milliseconds)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def private_pem(key: rsa.RSAPrivateKey) -> bytes:
    """PKCS#8 PEM (what python-alipay-sdk and wechatpayv3 load)."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _yuan(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    return f"{sign}{abs(fen) // 100}.{abs(fen) % 100:02d}"


def _bj(at: datetime) -> str:
    return at.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S")


def canonical(params: dict[str, str]) -> str:
    """Alipay's text to sign for a notification: sorted, without sign/sign_type/empty values."""
    return "&".join(f"{k}={v}" for k, v in sorted(params.items())
                    if k not in ("sign", "sign_type") and v != "")


@dataclass(frozen=True)
class AlipayBillLine:
    """One detail row of the trade bill: a trade (交易) or, with ``refund_no``, a refund (退款)."""

    trade_no: str
    order_no: str
    #: the trade's amount for a trade row; the refunded amount for a refund row (fen, > 0)
    amount_fen: int
    #: completion time (完成时间)
    at: datetime
    refund_no: str | None = None
    #: the original order amount shown on a refund row (defaults to amount_fen)
    order_amount_fen: int | None = None
    subject: str = "电费缴费"
    created_at: datetime | None = None


class FakeAlipay:
    """Alipay as seen by our notify endpoint and our statement import."""

    def __init__(self, *, app_id: str = "2021004100000001", seller_id: str = "2088101122136241",
                 key_name: str = "alipay") -> None:
        self.app_id = app_id
        self.seller_id = seller_id
        self.key = rsa_key(key_name)

    # keys -------------------------------------------------------------------------------
    @property
    def public_key_pem(self) -> bytes:
        return public_pem(self.key)

    @property
    def public_key_base64(self) -> str:
        """The public key as Alipay's console shows it: one line of base64, no PEM armour."""
        der = self.key.public_key().public_bytes(serialization.Encoding.DER,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)
        return base64.b64encode(der).decode("ascii")

    def write_public_key(self, path: Path, *, bare: bool = False) -> Path:
        path.write_bytes(self.public_key_base64.encode() if bare else self.public_key_pem)
        return path

    def env(self, key_path: Path, *, check_app_id: bool = True) -> dict[str, str]:
        """Environment variables that configure dianfei for this fake (writes the key file)."""
        self.write_public_key(key_path)
        env = {"DIANFEI_ALIPAY_PUBLIC_KEY_FILE": str(key_path)}
        if check_app_id:
            env["DIANFEI_ALIPAY_APP_ID"] = self.app_id
            env["DIANFEI_ALIPAY_SELLER_ID"] = self.seller_id
        return env

    # notifications ----------------------------------------------------------------------
    def params(self, order_no: str, trade_no: str, amount_fen: int, status: str = "TRADE_SUCCESS",
               paid_at: datetime | None = None, *, app_id: str | None = None, charset: str = "utf-8",
               **overrides: str) -> dict[str, str]:
        """The unsigned parameters of a trade_status_sync notification, as Alipay sends them."""
        paid_at = paid_at or datetime.now(UTC)
        amount = _yuan(amount_fen)
        p = {
            "gmt_create": _bj(paid_at - timedelta(seconds=7)),
            "charset": charset,
            "seller_email": "dianfei@example.com",
            "subject": "电费缴费",
            "buyer_id": "2088102177846880",
            "invoice_amount": amount,
            "notify_id": "2024" + secrets.token_hex(14),
            "fund_bill_list": f'[{{"amount":"{amount}","fundChannel":"ALIPAYACCOUNT"}}]',
            "notify_type": "trade_status_sync",
            "trade_status": status,
            "receipt_amount": amount,
            "app_id": app_id or self.app_id,
            "buyer_pay_amount": amount,
            "seller_id": self.seller_id,
            "notify_time": _bj(paid_at + timedelta(seconds=1)),
            "point_amount": "0.00",
            "version": "1.0",
            "out_trade_no": order_no,
            "total_amount": amount,
            "trade_no": trade_no,
            "auth_app_id": app_id or self.app_id,
            "buyer_logon_id": "158****1562",
        }
        if status in ("TRADE_SUCCESS", "TRADE_FINISHED"):
            p["gmt_payment"] = _bj(paid_at)
        else:
            for k in ("invoice_amount", "receipt_amount", "buyer_pay_amount", "fund_bill_list",
                      "point_amount"):
                p.pop(k)
            if status == "TRADE_CLOSED":
                p["gmt_close"] = _bj(paid_at)
        p.update(overrides)
        return p

    def sign(self, params: dict[str, str], *, key: rsa.RSAPrivateKey | None = None,
             charset: str = "utf-8", sign_type: str = "RSA2") -> dict[str, str]:
        """Signed copy of ``params`` (adds sign_type and sign)."""
        signer = key or self.key
        codec = "gbk" if charset.lower() in ("gbk", "gb2312") else charset
        signature = signer.sign(canonical(params).encode(codec), PKCS1v15(), SHA256())
        return {**params, "sign_type": sign_type, "sign": base64.b64encode(signature).decode("ascii")}

    @staticmethod
    def encode(params: dict[str, str], charset: str = "utf-8") -> tuple[bytes, str]:
        """The POST body (percent-encoded in the charset) and its Content-Type."""
        codec = "gbk" if charset.lower() in ("gbk", "gb2312") else charset
        body = urlencode(params, encoding=codec, quote_via=quote_plus).encode("ascii")
        return body, f"application/x-www-form-urlencoded; charset={charset}"

    def notification(self, order_no: str, trade_no: str, amount_fen: int, status: str = "TRADE_SUCCESS",
                     paid_at: datetime | None = None, *, app_id: str | None = None, charset: str = "utf-8",
                     key: rsa.RSAPrivateKey | None = None, sign_type: str = "RSA2",
                     **overrides: str) -> tuple[bytes, str]:
        """(body, content_type) of a genuine notification (or one signed by ``key``)."""
        p = self.params(order_no, trade_no, amount_fen, status, paid_at, app_id=app_id, charset=charset,
                        **overrides)
        return self.encode(self.sign(p, key=key, charset=charset, sign_type=sign_type), charset)

    def refund_notification(self, order_no: str, trade_no: str, amount_fen: int, refund_fen: int,
                            refund_no: str, refunded_at: datetime | None = None, *,
                            paid_at: datetime | None = None, full: bool | None = None) -> tuple[bytes, str]:
        """A refund notification: trade_status TRADE_SUCCESS (partial) or TRADE_CLOSED (full),
        with refund_fee (the TOTAL refunded so far), gmt_refund and out_biz_no."""
        refunded_at = refunded_at or datetime.now(UTC)
        full = refund_fen >= amount_fen if full is None else full
        paid_at = paid_at or refunded_at - timedelta(days=1)
        p = self.params(order_no, trade_no, amount_fen, "TRADE_SUCCESS", paid_at)
        p.update(trade_status="TRADE_CLOSED" if full else "TRADE_SUCCESS", refund_fee=_yuan(refund_fen),
                 gmt_refund=refunded_at.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3],
                 out_biz_no=refund_no)
        if full:
            p["gmt_close"] = _bj(refunded_at)
        return self.encode(self.sign(p))

    # forged and tampered variants --------------------------------------------------------------
    def forged(self, order_no: str, trade_no: str, amount_fen: int, **kw: object) -> tuple[bytes, str]:
        """Looks genuine but is signed with another RSA key (an attacker's)."""
        return self.notification(order_no, trade_no, amount_fen, key=rsa_key("alipay-forger"), **kw)  # type: ignore[arg-type]

    @staticmethod
    def tamper(body: bytes, charset: str = "utf-8", **changes: str | None) -> bytes:
        """The same notification with fields changed (None removes one), keeping the old signature."""
        codec = "gbk" if charset.lower() in ("gbk", "gb2312") else charset
        params = dict(parse_qsl(body.decode("ascii"), keep_blank_values=True, encoding=codec))
        for k, v in changes.items():
            if v is None:
                params.pop(k, None)
            else:
                params[k] = v
        return urlencode(params, encoding=codec, quote_via=quote_plus).encode("ascii")

    # daily trade bill --------------------------------------------------------------------
    def trade_bill(self, day: date, lines: Sequence[AlipayBillLine], *, fee_permille: int = 6,
                   exported_at: datetime | None = None, pid: str | None = None,
                   utf8_names: bool = False) -> bytes:
        """The zipped trade bill (业务明细 + 业务明细(汇总)), GBK, as Alipay delivers it.

        Service fee (服务费) is ``fee_permille``‰ of each row rounded half-up to the fen, negative
        on trades (deducted) and positive on refunds (returned) — the sign convention is unverified.
        Alipay's zip stores the Chinese file names in GBK without the UTF-8 flag; read them with
        ``zipfile.ZipFile(f, metadata_encoding="gbk")`` (``utf8_names=True`` writes UTF-8 instead).
        """
        pid = pid or self.seller_id
        account = f"{pid}0156"
        start = f"{day:%Y年%m月%d日} 00:00:00"
        end = f"{day + timedelta(days=1):%Y年%m月%d日} 00:00:00"
        exported = (exported_at or datetime.combine(day + timedelta(days=1), datetime.min.time(),
                                                     BEIJING) + timedelta(hours=9, minutes=12, seconds=3))
        exported_text = exported.astimezone(BEIJING).strftime("%Y年%m月%d日 %H:%M:%S")
        rows: list[str] = []
        trades = refunds = 0
        trade_sum = refund_sum = order_sum = fee_sum = 0
        for line in lines:
            refund = line.refund_no is not None
            fee = (line.amount_fen * fee_permille * 2 + 1000) // 2000  # half-up to the fen
            created = line.created_at or line.at - timedelta(seconds=5)
            if refund:
                refunds += 1
                refund_sum += line.amount_fen
                fee_sum += fee
                order_amount = line.order_amount_fen or line.amount_fen
                cells = [f"{line.trade_no}\t", f"{line.order_no}\t", "退款\t", line.subject, _bj(created),
                         _bj(line.at), "\t", "\t", "\t", "\t", "158****1562\t", _yuan(order_amount),
                         _yuan(-line.amount_fen), "0.00", "0.00", "0.00", "0.00", "0.00", "", "0.00\t",
                         "0.00", f"{line.refund_no}\t", _yuan(fee), "0.00", ""]
            else:
                trades += 1
                trade_sum += line.amount_fen
                order_sum += line.amount_fen
                fee_sum -= fee
                cells = [f"{line.trade_no}\t", f"{line.order_no}\t", "交易\t", line.subject, _bj(created),
                         _bj(line.at), "\t", "\t", "\t", "\t", "158****1562\t", _yuan(line.amount_fen),
                         _yuan(line.amount_fen), "0.00", "0.00", "0.00", "0.00", "0.00", "", "0.00\t",
                         "0.00", "\t", _yuan(-fee), "0.00", ""]
            rows.append(",".join(cells))
        detail = [
            "#支付宝业务明细查询",
            f"#账号：[{account}]",
            f"#起始日期：[{start}]   终止日期：[{end}]",
            "#-----------------------------------------业务明细列表----------------------------------------",
            ",".join(ALIPAY_DETAIL_COLUMNS),
            *rows,
            "#-----------------------------------------业务明细列表结束------------------------------------",
            f"#交易合计：{trades}笔，商家实收共{_yuan(trade_sum)}元，商家优惠共0.00元",
            f"#退款合计：{refunds}笔，商家实收退款共{_yuan(-refund_sum)}元，商家优惠退款共0.00元",
            f"#导出时间：[{exported_text}]",
        ]
        received = trade_sum - refund_sum
        totals = [str(trades), str(refunds), _yuan(order_sum), _yuan(received), "0.00", "0.00", "0.00",
                  _yuan(fee_sum), "0.00", _yuan(received + fee_sum)]
        summary = [
            "#支付宝业务汇总查询",
            f"#账号：[{account}]",
            f"#起始日期：[{start}]   终止日期：[{end}]",
            "#-----------------------------------------业务汇总列表----------------------------------------",
            ",".join(ALIPAY_SUMMARY_COLUMNS),
            ",".join(["\t", "\t", *totals]),
            ",".join(["合计", "", *totals]),
            "#-----------------------------------------业务汇总列表结束------------------------------------",
            f"#导出时间：[{exported_text}]",
        ]
        stem = f"{pid}_{day:%Y%m%d}"
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, text in ((f"{stem}_业务明细.csv", detail), (f"{stem}_业务明细(汇总).csv", summary)):
                data = ("\r\n".join(text) + "\r\n").encode("gbk")
                info = _GbkZipInfo(name, date_time=exported.astimezone(BEIJING).timetuple()[:6],
                                   utf8=utf8_names)
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, data)
        return buf.getvalue()


class _GbkZipInfo(zipfile.ZipInfo):
    """A zip entry whose name is stored in GBK without the UTF-8 flag, as Alipay's zips are."""

    def __init__(self, name: str, date_time: tuple[int, ...], *, utf8: bool) -> None:
        super().__init__(name, date_time=date_time)  # type: ignore[arg-type]
        self._utf8 = utf8

    def _encodeFilenameFlags(self) -> tuple[bytes, int]:
        if self._utf8:
            return super()._encodeFilenameFlags()  # type: ignore[misc,no-any-return]
        return self.filename.encode("gbk"), self.flag_bits


ALIPAY_DETAIL_COLUMNS = tuple((  # noqa: SIM905 - the header line as the file has it
    "支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,"
    "门店名称,操作员,终端号,对方账户,订单金额（元）,商家实收（元）,支付宝红包（元）,"
    "集分宝（元）,支付宝优惠（元）,商家优惠（元）,券核销金额（元）,券名称,商家红包消费金额（元）,卡消费金额（元）,"
    "退款批次号/请求号,服务费（元）,分润（元）,备注"
).split(","))
ALIPAY_SUMMARY_COLUMNS = tuple((  # noqa: SIM905 - the header line as the file has it
    "门店编号,门店名称,交易订单总笔数,退款订单总笔数,订单金额（元）,商家实收（元）,支付宝优惠（元）,"
    "商家优惠（元）,卡消费金额（元）,服务费（元）,分润（元）,实收净额（元）"
).split(","))
