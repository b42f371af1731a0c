"""Fixtures for the channel adapters: the fakes, and notifiers configured for them through the
same settings path production uses (environment variables → load_channel_settings)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dianfei.core.settings import load_settings
from dianfei.payments.channels.alipay import AlipayNotifier
from dianfei.payments.channels.config import ChannelSettings, load_channel_settings
from dianfei.payments.channels.online import OnlineNotifier
from dianfei.payments.channels.wechatpay import WechatPayNotifier
from tests.fakes.alipay import FakeAlipay
from tests.fakes.wechatpay import FakeWechatPay

ONLINE_SECRET = "online-gateway-shared-secret-0123456789"


@pytest.fixture
def fake_alipay() -> FakeAlipay:
    return FakeAlipay()


@pytest.fixture
def fake_wechat() -> FakeWechatPay:
    return FakeWechatPay()


@pytest.fixture
def channel_env(tmp_path: Path, fake_alipay: FakeAlipay, fake_wechat: FakeWechatPay) -> dict[str, str]:
    return {**fake_alipay.env(tmp_path / "alipay_public.pem"),
            **fake_wechat.env(tmp_path / "wechatpay_platform_public.pem"),
            "DIANFEI_ONLINE_PAY_SECRET": ONLINE_SECRET}


@pytest.fixture
def channels(channel_env: dict[str, str]) -> ChannelSettings:
    return load_channel_settings(load_settings({}), channel_env)


@pytest.fixture
def alipay(channels: ChannelSettings) -> AlipayNotifier:
    return AlipayNotifier(channels.alipay)


@pytest.fixture
def wechat(channels: ChannelSettings) -> WechatPayNotifier:
    return WechatPayNotifier(channels.wechatpay)


@pytest.fixture
def online(channels: ChannelSettings) -> OnlineNotifier:
    return OnlineNotifier(channels.online)
