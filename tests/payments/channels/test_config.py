"""Channel settings: environment wins over the config file; bad settings name the variable."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from dianfei.core.errors import ValidationError
from dianfei.core.settings import load_settings
from dianfei.payments.channels.config import load_channel_settings, not_configured
from tests.fakes.alipay import FakeAlipay, rsa_key
from tests.fakes.wechatpay import FakeWechatPay


def _settings_with_file(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    cfg = tmp_path / "dianfei.toml"
    cfg.write_text(text, encoding="utf-8")
    return load_settings({"DIANFEI_CONFIG": str(cfg)})


def test_nothing_configured_means_every_channel_is_none() -> None:
    cs = load_channel_settings(load_settings({}), {})
    assert (cs.alipay, cs.wechatpay, cs.online) == (None, None, None)
    assert not_configured("wechatpay").code == "not_configured"


def test_config_file_sections(tmp_path: Path, fake_alipay: FakeAlipay, fake_wechat: FakeWechatPay) -> None:
    a = fake_alipay.write_public_key(tmp_path / "a.pem")
    w = fake_wechat.write_public_key(tmp_path / "w.pem")
    settings = _settings_with_file(
        tmp_path,
        f"""
[payments.alipay]
public_key_file = "{a}"
app_id = "2021004100000001"
[payments.wechatpay]
platform_public_key_file = "{w}"
apiv3_key = "{fake_wechat.apiv3_key}"
mchid = "1900000109"
replay_window_seconds = 120
[payments.online]
secret = "0123456789abcdef0123"
""",
    )
    cs = load_channel_settings(settings, {})
    assert cs.alipay is not None and cs.alipay.app_id == "2021004100000001"
    assert cs.wechatpay is not None and cs.wechatpay.mchid == "1900000109"
    assert cs.wechatpay.replay_window == dt.timedelta(seconds=120) and cs.wechatpay.appid is None
    assert cs.online is not None and cs.online.secret == b"0123456789abcdef0123"
    # the environment wins over the file
    cs2 = load_channel_settings(
        settings, {"DIANFEI_ALIPAY_APP_ID": "2021000000000009", "DIANFEI_WECHATPAY_MCHID": "1900000001"}
    )
    assert cs2.alipay is not None and cs2.alipay.app_id == "2021000000000009"
    assert cs2.wechatpay is not None and cs2.wechatpay.mchid == "1900000001"


def test_missing_key_file_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"DIANFEI_ALIPAY_PUBLIC_KEY_FILE.*not found"):
        load_channel_settings(load_settings({}), {"DIANFEI_ALIPAY_PUBLIC_KEY_FILE": str(tmp_path / "no.pem")})


def test_garbage_key_file_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key at all")
    with pytest.raises(ValidationError, match=r"DIANFEI_ALIPAY_PUBLIC_KEY_FILE.*not an RSA public key"):
        load_channel_settings(load_settings({}), {"DIANFEI_ALIPAY_PUBLIC_KEY_FILE": str(bad)})


@pytest.mark.parametrize("key", ["short", "a" * 31, "a" * 33, "密" * 32])
def test_apiv3_key_must_be_32_characters(tmp_path: Path, fake_wechat: FakeWechatPay, key: str) -> None:
    env = {**fake_wechat.env(tmp_path / "w.pem"), "DIANFEI_WECHATPAY_APIV3_KEY": key}
    with pytest.raises(ValidationError, match=r"DIANFEI_WECHATPAY_APIV3_KEY.*32"):
        load_channel_settings(load_settings({}), env)


def test_half_configured_wechatpay_is_an_error(tmp_path: Path, fake_wechat: FakeWechatPay) -> None:
    with pytest.raises(ValidationError, match=r"DIANFEI_WECHATPAY_PLATFORM_PUBLIC_KEY_FILE"):
        load_channel_settings(load_settings({}), {"DIANFEI_WECHATPAY_APIV3_KEY": fake_wechat.apiv3_key})
    path = fake_wechat.write_public_key(tmp_path / "w.pem")
    with pytest.raises(ValidationError, match=r"DIANFEI_WECHATPAY_APIV3_KEY"):
        load_channel_settings(load_settings({}), {"DIANFEI_WECHATPAY_PLATFORM_PUBLIC_KEY_FILE": str(path)})


def test_platform_certificate_gives_key_and_serial(tmp_path: Path, fake_wechat: FakeWechatPay) -> None:
    key = rsa_key("wechatpay")
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Tenpay.com Root CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(0x5157F09EFDC096DE15EBE81A47057A72)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    path = tmp_path / "cert.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    cs = load_channel_settings(
        load_settings({}),
        {
            "DIANFEI_WECHATPAY_PLATFORM_PUBLIC_KEY_FILE": str(path),
            "DIANFEI_WECHATPAY_APIV3_KEY": fake_wechat.apiv3_key,
        },
    )
    assert cs.wechatpay is not None
    assert cs.wechatpay.platform_public_key_id == "5157F09EFDC096DE15EBE81A47057A72"


def test_short_online_secret_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"DIANFEI_ONLINE_PAY_SECRET"):
        load_channel_settings(load_settings({}), {"DIANFEI_ONLINE_PAY_SECRET": "short"})
