"""The one fake of WeChat Pay APIv3 (微信支付) for tests and benchmarks, in its real wire formats.

- :meth:`FakeWechatPay.notification` builds a payment notification as WeChat Pay POSTs it: a
  compact UTF-8 JSON envelope whose ``resource`` is the transaction encrypted with
  AEAD_AES_256_GCM under the APIv3 key (12-character nonce, associated_data ``transaction``,
  ciphertext base64 with the tag appended), and the headers ``Wechatpay-Serial``,
  ``Wechatpay-Signature`` (base64 SHA256-RSA PKCS#1 v1.5 over ``timestamp\\nnonce\\nbody\\n``),
  ``Wechatpay-Timestamp``, ``Wechatpay-Nonce`` and ``Wechatpay-Signature-Type``.
- :meth:`FakeWechatPay.trade_bill` builds the daily trade bill (交易账单) as the bill download
  returns it: UTF-8 (with a BOM), CRLF lines, comma-separated, the detail header, detail rows whose
  every field is prefixed with a backtick, then the summary header and the backtick-prefixed
  summary row (see docs/payment-channels.md for the columns).

The platform key pair is generated once per process; the platform public key id is a
``PUB_KEY_ID_…`` string (WeChat Pay's "platform public key" mode).
"""

from __future__ import annotations

import base64
import json
import secrets
import string
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256

from tests.fakes.alipay import public_pem, rsa_key

BEIJING = ZoneInfo("Asia/Shanghai")
_ALNUM = string.ascii_uppercase + string.digits


def _random(n: int, alphabet: str = _ALNUM) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(n))


def _rfc3339(at: datetime) -> str:
    return at.astimezone(BEIJING).isoformat(timespec="seconds")


@dataclass(frozen=True)
class WechatBillLine:
    """One detail row of the trade bill: a payment (SUCCESS) or, with ``refund_id``, a refund."""

    transaction_id: str
    order_no: str
    #: the payment's amount, or the refunded amount on a refund row (fen, > 0)
    amount_fen: int
    #: payment time, or the refund's time on a refund row
    at: datetime
    refund_id: str | None = None
    out_refund_no: str | None = None
    openid: str = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
    trade_type: str = "JSAPI"
    bank_type: str = "OTHERS"
    body: str = "电费缴费"
    attach: str = ""


class FakeWechatPay:
    """WeChat Pay as seen by our notify endpoint and our statement import."""

    def __init__(self, *, mchid: str = "1900000109", appid: str = "wxd678efh567hg6787",
                 apiv3_key: str = "a7Kx9Qm2Lr5Tz8Wc3Vb6Nd1Fg4Hj0Pse",
                 public_key_id: str = "PUB_KEY_ID_0119000001092024030100000000000001",
                 key_name: str = "wechatpay") -> None:
        assert len(apiv3_key) == 32
        self.mchid = mchid
        self.appid = appid
        self.apiv3_key = apiv3_key
        self.public_key_id = public_key_id
        self.key = rsa_key(key_name)

    @property
    def public_key_pem(self) -> bytes:
        return public_pem(self.key)

    def write_public_key(self, path: Path) -> Path:
        path.write_bytes(self.public_key_pem)
        return path

    def env(self, key_path: Path, *, check_ids: bool = True) -> dict[str, str]:
        """Environment variables that configure dianfei for this fake (writes the key file)."""
        self.write_public_key(key_path)
        env = {"DIANFEI_WECHATPAY_PLATFORM_PUBLIC_KEY_FILE": str(key_path),
               "DIANFEI_WECHATPAY_APIV3_KEY": self.apiv3_key}
        if check_ids:
            env.update(DIANFEI_WECHATPAY_PLATFORM_PUBLIC_KEY_ID=self.public_key_id,
                       DIANFEI_WECHATPAY_MCHID=self.mchid, DIANFEI_WECHATPAY_APPID=self.appid)
        return env

    # building blocks ---------------------------------------------------------------------
    def encrypt(self, plain: dict[str, Any], associated_data: str, *, apiv3_key: str | None = None,
                original_type: str = "transaction") -> dict[str, str]:
        nonce = _random(12, string.ascii_letters + string.digits)
        key = (apiv3_key or self.apiv3_key).encode("utf-8")
        data = json.dumps(plain, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        ciphertext = AESGCM(key).encrypt(nonce.encode("utf-8"), data, associated_data.encode("utf-8"))
        return {"original_type": original_type, "algorithm": "AEAD_AES_256_GCM",
                "ciphertext": base64.b64encode(ciphertext).decode("ascii"),
                "associated_data": associated_data, "nonce": nonce}

    def sign_headers(self, body: bytes, *, timestamp: datetime, key: rsa.RSAPrivateKey | None = None,
                     serial: str | None = None, nonce: str | None = None) -> dict[str, str]:
        ts = str(int(timestamp.timestamp()))
        nonce = nonce or _random(32)
        message = ts.encode() + b"\n" + nonce.encode() + b"\n" + body + b"\n"
        signature = (key or self.key).sign(message, PKCS1v15(), SHA256())
        return {"Wechatpay-Nonce": nonce, "Wechatpay-Signature": base64.b64encode(signature).decode("ascii"),
                "Wechatpay-Timestamp": ts, "Wechatpay-Serial": serial or self.public_key_id,
                "Wechatpay-Signature-Type": "WECHATPAY2-SHA256-RSA2048"}

    def envelope(self, event_type: str, summary: str, resource: dict[str, str], created: datetime) -> bytes:
        body = {"id": f"{secrets.token_hex(4)}-{secrets.token_hex(2)}-{secrets.token_hex(2)}-"
                      f"{secrets.token_hex(2)}-{secrets.token_hex(6)}",
                "create_time": _rfc3339(created), "resource_type": "encrypt-resource",
                "event_type": event_type, "summary": summary, "resource": resource}
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    def transaction(self, order_no: str, transaction_id: str, amount_fen: int, trade_state: str = "SUCCESS",
                    paid_at: datetime | None = None, *, payer_total: int | None = None,
                    mchid: str | None = None, appid: str | None = None, **overrides: Any) -> dict[str, Any]:
        """The decrypted resource of a payment notification (a transaction object)."""
        paid_at = paid_at or datetime.now(UTC)
        tx: dict[str, Any] = {
            "mchid": mchid or self.mchid, "appid": appid or self.appid, "out_trade_no": order_no,
            "transaction_id": transaction_id, "trade_type": "JSAPI", "trade_state": trade_state,
            "trade_state_desc": "支付成功" if trade_state == "SUCCESS" else trade_state,
            "bank_type": "OTHERS", "attach": "", "success_time": _rfc3339(paid_at),
            "payer": {"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},
            "amount": {"total": amount_fen, "payer_total": amount_fen if payer_total is None else payer_total,
                       "currency": "CNY", "payer_currency": "CNY"},
        }
        tx.update(overrides)
        return tx

    # notifications -------------------------------------------------------------------------
    def notification(self, order_no: str, transaction_id: str, amount_fen: int, trade_state: str = "SUCCESS",
                     paid_at: datetime | None = None, *, timestamp: datetime | None = None,
                     key: rsa.RSAPrivateKey | None = None, serial: str | None = None,
                     apiv3_key: str | None = None, payer_total: int | None = None,
                     mchid: str | None = None, appid: str | None = None,
                     **overrides: Any) -> tuple[dict[str, str], bytes]:
        """(headers, body) of a genuine TRANSACTION.SUCCESS notification (or one made with the given
        key, serial, APIv3 key or timestamp)."""
        paid_at = paid_at or datetime.now(UTC)
        tx = self.transaction(order_no, transaction_id, amount_fen, trade_state, paid_at,
                              payer_total=payer_total, mchid=mchid, appid=appid, **overrides)
        resource = self.encrypt(tx, "transaction", apiv3_key=apiv3_key)
        body = self.envelope("TRANSACTION.SUCCESS", "支付成功", resource, paid_at + timedelta(seconds=2))
        headers = self.sign_headers(body, timestamp=timestamp or datetime.now(UTC), key=key, serial=serial)
        return headers, body

    def refund_notification(self, order_no: str, transaction_id: str, amount_fen: int, refund_fen: int,
                            refund_id: str, out_refund_no: str, refunded_at: datetime | None = None, *,
                            status: str = "SUCCESS", timestamp: datetime | None = None,
                            ) -> tuple[dict[str, str], bytes]:
        refunded_at = refunded_at or datetime.now(UTC)
        refund = {"mchid": self.mchid, "out_trade_no": order_no, "transaction_id": transaction_id,
                  "out_refund_no": out_refund_no, "refund_id": refund_id, "refund_status": status,
                  "success_time": _rfc3339(refunded_at), "user_received_account": "支付用户零钱",
                  "amount": {"total": amount_fen, "refund": refund_fen, "payer_total": amount_fen,
                             "payer_refund": refund_fen}}
        resource = self.encrypt(refund, "refund", original_type="refund")
        event = f"REFUND.{status}"
        body = self.envelope(event, "退款成功", resource, refunded_at)
        return self.sign_headers(body, timestamp=timestamp or datetime.now(UTC)), body

    # forged and tampered variants ----------------------------------------------------------
    def forged(self, order_no: str, transaction_id: str, amount_fen: int,
               **kw: Any) -> tuple[dict[str, str], bytes]:
        """Signed with an attacker's RSA key (and the right serial)."""
        return self.notification(order_no, transaction_id, amount_fen, key=rsa_key("wechatpay-forger"), **kw)

    def stale(self, order_no: str, transaction_id: str, amount_fen: int, *, now: datetime,
              age: timedelta = timedelta(minutes=6), **kw: Any) -> tuple[dict[str, str], bytes]:
        """Genuine, but signed ``age`` before ``now`` (a replay)."""
        return self.notification(order_no, transaction_id, amount_fen, timestamp=now - age, **kw)

    @staticmethod
    def altered_body(headers: dict[str, str], body: bytes, old: bytes,
                     new: bytes) -> tuple[dict[str, str], bytes]:
        """The same headers (signature) with the body changed after signing."""
        assert old in body, "nothing to alter"
        return dict(headers), body.replace(old, new, 1)

    def reencrypted(self, headers: dict[str, str], body: bytes, *, timestamp: datetime, **changes: Any
                    ) -> tuple[dict[str, str], bytes]:
        """What an attacker who knows the APIv3 key but not the platform key can do: change the
        transaction, re-encrypt, keep the old signature."""
        envelope = json.loads(body)
        tx = json.loads(AESGCM(self.apiv3_key.encode()).decrypt(
            envelope["resource"]["nonce"].encode(), base64.b64decode(envelope["resource"]["ciphertext"]),
            envelope["resource"]["associated_data"].encode()))
        tx.update(changes)
        envelope["resource"] = self.encrypt(tx, "transaction")
        return dict(headers), json.dumps(envelope, ensure_ascii=False, separators=(",", ":")).encode()

    # daily trade bill ----------------------------------------------------------------------
    def trade_bill(self, day: date, lines: Sequence[WechatBillLine], *, bill_type: str = "ALL",
                   fee_rate_bp: int = 60) -> bytes:
        """The trade bill for one day (ALL or SUCCESS), UTF-8 with BOM, as the download returns it.

        Fee (手续费) = amount × rate rounded half-up to the fen, printed with 5 decimals; negative on
        refund rows (the fee returned). ``fee_rate_bp`` is the rate in basis points (60 = 0.60%).
        """
        if bill_type not in ("ALL", "SUCCESS"):
            raise ValueError("bill_type must be ALL or SUCCESS")
        rate = f"{fee_rate_bp // 100}.{fee_rate_bp % 100:02d}%"
        header = WECHAT_ALL_COLUMNS if bill_type == "ALL" else WECHAT_SUCCESS_COLUMNS
        rows: list[str] = []
        count = settle = refunded = fees = ordered = requested = 0
        for line in lines:
            refund = line.refund_id is not None
            if refund and bill_type == "SUCCESS":
                continue
            fee = (line.amount_fen * fee_rate_bp * 2 + 10_000) // 20_000
            common = [_bj(line.at), self.appid, self.mchid, "0", "", line.transaction_id, line.order_no,
                      line.openid, line.trade_type, "REFUND" if refund else "SUCCESS", line.bank_type, "CNY"]
            count += 1
            if refund:
                refunded += line.amount_fen
                requested += line.amount_fen
                fees -= fee
                cells = [*common, "0.00", "0.00", line.refund_id or "", line.out_refund_no or "",
                         _yuan(line.amount_fen), "0.00", "ORIGINAL", "SUCCESS", line.body, line.attach,
                         _fee(-fee), rate, "0.00", _yuan(line.amount_fen), ""]
            else:
                settle += line.amount_fen
                ordered += line.amount_fen
                fees += fee
                if bill_type == "ALL":
                    cells = [*common, _yuan(line.amount_fen), "0.00", "0", "0", "0.00", "0.00", "", "",
                             line.body, line.attach, _fee(fee), rate, _yuan(line.amount_fen), "0.00", ""]
                else:
                    cells = [*common, _yuan(line.amount_fen), "0.00", line.body, line.attach, _fee(fee), rate,
                             _yuan(line.amount_fen), ""]
            rows.append(",".join("`" + c for c in cells))
        summary = [str(count), _yuan(settle), _yuan(refunded), "0.00", _fee(fees), _yuan(ordered),
                   _yuan(requested)]
        text = "\r\n".join([",".join(header), *rows, ",".join(WECHAT_SUMMARY_COLUMNS),
                            ",".join("`" + c for c in summary)]) + "\r\n"
        return ("\ufeff" + text).encode("utf-8")


def _yuan(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    return f"{sign}{abs(fen) // 100}.{abs(fen) % 100:02d}"


def _fee(fen: int) -> str:
    return _yuan(fen) + "000"


def _bj(at: datetime) -> str:
    return at.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S")


WECHAT_ALL_COLUMNS = tuple((  # noqa: SIM905 - the header line as the file has it
    "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,"
    "用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,"
    "微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,"
    "商户数据包,手续费,费率,订单金额,申请退款金额,费率备注"
).split(","))
WECHAT_SUCCESS_COLUMNS = tuple((  # noqa: SIM905 - the header line as the file has it
    "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,"
    "用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,"
    "商品名称,商户数据包,手续费,费率,订单金额,费率备注"
).split(","))
WECHAT_SUMMARY_COLUMNS = tuple((  # noqa: SIM905 - the header line as the file has it
    "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额"
).split(","))
