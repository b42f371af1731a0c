"""Channel settings (渠道配置): the keys and ids each payment channel's notifications are checked with.

Receiving notifications needs no merchant private key: only the channel's PUBLIC key (Alipay public
key, WeChat Pay platform public key or platform certificate), the WeChat Pay APIv3 key (a symmetric
key that decrypts the ``resource`` of a notification) and the shared secret of our own online
banking / app gateway.

Every setting comes from an environment variable, or from the TOML config file (``DIANFEI_CONFIG``)
under ``[payments.alipay]``, ``[payments.wechatpay]`` or ``[payments.online]``; the environment
variable wins. A channel with no key configured is simply not configured: its notifications are
refused with the stable code ``not_configured`` (see :func:`not_configured`). A channel configured
wrongly (a key file that is missing or unreadable, an APIv3 key that is not 32 characters) is an
error at start-up that names the variable, so a deployment never runs half-configured.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_der_public_key, load_pem_public_key

from dianfei.core.errors import ValidationError
from dianfei.core.settings import Settings
from dianfei.payments.channels.base import Refusal

#: default tolerance between a notification's timestamp and our clock (WeChat Pay recommends 5 min)
DEFAULT_REPLAY_WINDOW = timedelta(minutes=5)


@dataclass(frozen=True)
class AlipaySettings:
    """支付宝: the Alipay public key (RSA2 notifications are signed with Alipay's private key)."""

    public_key: RSAPublicKey
    #: where the key came from, for messages
    public_key_source: str
    #: our application id (APPID); when set, a notification for another app is refused
    app_id: str | None = None
    #: our merchant's Alipay user id (seller_id, 2088…); when set, another seller's is refused
    seller_id: str | None = None


@dataclass(frozen=True)
class WechatPaySettings:
    """微信支付 APIv3: platform public key (or certificate), APIv3 key, ids checked when given."""

    platform_public_key: RSAPublicKey
    platform_public_key_source: str
    #: the 32-character APIv3 key as bytes (AES-256 key of the notification resource)
    apiv3_key: bytes
    #: the platform public key id (PUB_KEY_ID_…) or certificate serial: Wechatpay-Serial must equal it
    platform_public_key_id: str | None = None
    #: our merchant id (商户号) and app id; a notification naming others is refused
    mchid: str | None = None
    appid: str | None = None
    replay_window: timedelta = DEFAULT_REPLAY_WINDOW


@dataclass(frozen=True)
class OnlineSettings:
    """网银/App: our own gateway signs its JSON callbacks with HMAC-SHA256 and a shared secret."""

    secret: bytes
    replay_window: timedelta = DEFAULT_REPLAY_WINDOW


@dataclass(frozen=True)
class ChannelSettings:
    """What each channel is configured with; None for a channel that is not configured."""

    alipay: AlipaySettings | None = None
    wechatpay: WechatPaySettings | None = None
    online: OnlineSettings | None = None


def not_configured(channel: str) -> Refusal:
    """The refusal every notification gets on a channel that has no keys configured."""
    hints = {
        "alipay": "set DIANFEI_ALIPAY_PUBLIC_KEY_FILE (or [payments.alipay] public_key_file)",
        "wechatpay": "set DIANFEI_WECHATPAY_PLATFORM_PUBLIC_KEY_FILE and DIANFEI_WECHATPAY_APIV3_KEY "
                     "(or [payments.wechatpay] platform_public_key_file and apiv3_key)",
        "online": "set DIANFEI_ONLINE_PAY_SECRET (or [payments.online] secret)",
    }
    return Refusal("not_configured", f"{channel} channel is not configured: {hints.get(channel, '')}")


def _setting(env: Mapping[str, str], section: Mapping[str, Any], var: str,
             key: str) -> tuple[str | None, str]:
    """(value, where) for a setting: the environment variable first, then the config file."""
    value = env.get(var)
    if value is not None and value.strip() != "":
        return value.strip(), var
    raw = section.get(key)
    if raw is None or str(raw).strip() == "":
        return None, var
    return str(raw).strip(), f"config [payments] {key}"


def _section(settings: Settings, name: str) -> Mapping[str, Any]:
    payments = settings.raw.get("payments", {})
    if not isinstance(payments, Mapping):
        raise ValidationError("config [payments] must be a table")
    section = payments.get(name, {})
    if not isinstance(section, Mapping):
        raise ValidationError(f"config [payments.{name}] must be a table")
    return section


def load_public_key(data: bytes, where: str) -> RSAPublicKey:
    """An RSA public key from PEM (PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE) or a bare base64 body.

    Alipay's open platform console hands the public key out as one line of base64 without PEM
    armour; WeChat Pay hands out a PEM public key (or, in the older mode, a platform certificate).
    """
    text = data.strip()
    key: object
    try:
        if b"-----BEGIN CERTIFICATE-----" in text:
            key = x509.load_pem_x509_certificate(text).public_key()
        elif text.startswith(b"-----BEGIN"):
            key = load_pem_public_key(text)
        else:
            der = base64.b64decode(b"".join(text.split()), validate=True)
            key = load_der_public_key(der)
    except (ValueError, TypeError, binascii.Error) as exc:
        raise ValidationError(f"{where}: not an RSA public key in PEM or base64 form ({exc})") from None
    if not isinstance(key, RSAPublicKey):
        raise ValidationError(f"{where}: the key is not an RSA key")
    if key.key_size < 2048:
        raise ValidationError(f"{where}: RSA key of {key.key_size} bits; RSA2 needs at least 2048")
    return key


def certificate_serial(data: bytes) -> str | None:
    """The serial number (upper-case hex, as Wechatpay-Serial carries it) of a PEM certificate."""
    if b"-----BEGIN CERTIFICATE-----" not in data:
        return None
    try:
        cert = x509.load_pem_x509_certificate(data.strip())
    except ValueError:
        return None
    return format(cert.serial_number, "X")


def _read_key_file(path_text: str, where: str) -> bytes:
    path = Path(path_text)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ValidationError(f"{where}: key file not found: {path}") from None
    except OSError as exc:
        raise ValidationError(f"{where}: cannot read key file {path}: {exc}") from None


def _window(env: Mapping[str, str], section: Mapping[str, Any], var: str) -> timedelta:
    text, where = _setting(env, section, var, "replay_window_seconds")
    if text is None:
        return DEFAULT_REPLAY_WINDOW
    try:
        seconds = int(text)
    except ValueError:
        raise ValidationError(f"{where}: replay window must be whole seconds, got {text!r}") from None
    if not 1 <= seconds <= 86_400:
        raise ValidationError(f"{where}: replay window must be 1..86400 seconds, got {seconds}")
    return timedelta(seconds=seconds)


def _alipay(settings: Settings, env: Mapping[str, str]) -> AlipaySettings | None:
    section = _section(settings, "alipay")
    key_file, where = _setting(env, section, "DIANFEI_ALIPAY_PUBLIC_KEY_FILE", "public_key_file")
    app_id, _ = _setting(env, section, "DIANFEI_ALIPAY_APP_ID", "app_id")
    seller_id, _ = _setting(env, section, "DIANFEI_ALIPAY_SELLER_ID", "seller_id")
    if key_file is None:
        return None
    key = load_public_key(_read_key_file(key_file, where), f"{where} ({key_file})")
    return AlipaySettings(public_key=key, public_key_source=key_file, app_id=app_id,
                          seller_id=seller_id)


def _wechatpay(settings: Settings, env: Mapping[str, str]) -> WechatPaySettings | None:
    section = _section(settings, "wechatpay")
    key_file, key_where = _setting(env, section, "DIANFEI_WECHATPAY_PLATFORM_PUBLIC_KEY_FILE",
                                   "platform_public_key_file")
    apiv3, apiv3_where = _setting(env, section, "DIANFEI_WECHATPAY_APIV3_KEY", "apiv3_key")
    if key_file is None and apiv3 is None:
        return None
    if key_file is None:
        raise ValidationError(f"{key_where} is not set but the WeChat Pay APIv3 key is: both are needed "
                              "to verify WeChat Pay notifications")
    if apiv3 is None:
        raise ValidationError(f"{apiv3_where} is not set but the WeChat Pay platform key is: both are "
                              "needed to decrypt WeChat Pay notifications")
    apiv3_bytes = apiv3.encode("utf-8")
    if len(apiv3) != 32 or len(apiv3_bytes) != 32:
        raise ValidationError(f"{apiv3_where}: the APIv3 key must be exactly 32 ASCII characters, "
                              f"got {len(apiv3)}")
    pem = _read_key_file(key_file, key_where)
    key = load_public_key(pem, f"{key_where} ({key_file})")
    key_id, _ = _setting(env, section, "DIANFEI_WECHATPAY_PLATFORM_PUBLIC_KEY_ID", "platform_public_key_id")
    if key_id is None:
        # a platform certificate names its own serial: the header must carry it
        key_id = certificate_serial(pem)
    mchid, _ = _setting(env, section, "DIANFEI_WECHATPAY_MCHID", "mchid")
    appid, _ = _setting(env, section, "DIANFEI_WECHATPAY_APPID", "appid")
    return WechatPaySettings(
        platform_public_key=key, platform_public_key_source=key_file, apiv3_key=apiv3_bytes,
        platform_public_key_id=key_id, mchid=mchid, appid=appid,
        replay_window=_window(env, section, "DIANFEI_WECHATPAY_REPLAY_WINDOW_SECONDS"),
    )


def _online(settings: Settings, env: Mapping[str, str]) -> OnlineSettings | None:
    section = _section(settings, "online")
    secret, where = _setting(env, section, "DIANFEI_ONLINE_PAY_SECRET", "secret")
    if secret is None:
        return None
    if len(secret.encode("utf-8")) < 16:
        raise ValidationError(f"{where}: the shared secret must be at least 16 bytes")
    return OnlineSettings(secret=secret.encode("utf-8"),
                          replay_window=_window(env, section, "DIANFEI_ONLINE_PAY_REPLAY_WINDOW_SECONDS"))


def load_channel_settings(settings: Settings, env: Mapping[str, str]) -> ChannelSettings:
    """Read every channel's settings; raises ``ValidationError`` naming the variable on a bad one.

    With ``[payments] require_merchant_ids = true`` (``DIANFEI_PAYMENTS_REQUIRE_MERCHANT_IDS=1``)
    a configured channel without its merchant identities is refused: see
    :func:`missing_merchant_ids`."""
    channels = ChannelSettings(alipay=_alipay(settings, env), wechatpay=_wechatpay(settings, env),
                               online=_online(settings, env))
    payments = settings.raw.get("payments", {})
    required, _ = _setting(env, payments if isinstance(payments, Mapping) else {},
                           "DIANFEI_PAYMENTS_REQUIRE_MERCHANT_IDS", "require_merchant_ids")
    if required is not None and required.lower() in ("1", "true", "yes", "on"):
        missing = missing_merchant_ids(channels)
        if missing:
            raise ValidationError("payment channels: merchant identities are required "
                                  f"(require_merchant_ids) but not set: {', '.join(missing)}")
    return channels


def missing_merchant_ids(channels: ChannelSettings) -> list[str]:
    """The merchant identities a configured channel lacks, as the variables that set them.

    Without them a notification correctly signed by the channel for ANOTHER merchant or app
    under the same key (a service provider's sub-merchants share Alipay's key) would post here;
    the server warns at start-up, and ``require_merchant_ids`` makes it refuse to start."""
    missing = []
    if channels.alipay is not None:
        if channels.alipay.app_id is None:
            missing.append("DIANFEI_ALIPAY_APP_ID")
        if channels.alipay.seller_id is None:
            missing.append("DIANFEI_ALIPAY_SELLER_ID")
    if channels.wechatpay is not None:
        if channels.wechatpay.mchid is None:
            missing.append("DIANFEI_WECHATPAY_MCHID")
        if channels.wechatpay.appid is None:
            missing.append("DIANFEI_WECHATPAY_APPID")
    return missing
