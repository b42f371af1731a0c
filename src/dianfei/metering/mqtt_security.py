"""Transport security of the AMI listener (采集接入安全): TLS to the broker, and which gateway may
report which meter.

Settings (the environment wins over the ``[metering.mqtt]`` table of the config file)::

    [metering.mqtt]
    tls = true                        # DIANFEI_MQTT_TLS
    ca_file = "/etc/dianfei/mqtt-ca.pem"   # DIANFEI_MQTT_CA_FILE: the CA that signed the broker
    cert_file = "/etc/dianfei/listener.pem"  # DIANFEI_MQTT_CERT_FILE (mutual TLS, optional)
    key_file = "/etc/dianfei/listener.key"   # DIANFEI_MQTT_KEY_FILE
    username = "dianfei-listener"     # DIANFEI_MQTT_USERNAME (optional)
    password = "…"                    # DIANFEI_MQTT_PASSWORD
    allow_plaintext = false           # DIANFEI_MQTT_ALLOW_PLAINTEXT

Without TLS anyone on the network path can read the readings and publish forged ones, so the
listener refuses to start with ``tls = false`` unless ``allow_plaintext = true`` says, explicitly,
that this is accepted (a broker on the same host, a test). Which gateway may publish on which
topic is the broker's job (per-gateway credentials and ACLs, docs/metering-live.md); which
meters a gateway may report is ours: :func:`gateway_of_topic` and ``meters.gateway_id``.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dianfei.core.errors import ValidationError

if TYPE_CHECKING:
    from dianfei.core.settings import Settings

#: ``ami/<gateway_id>/readings``: the gateway is the topic level before the last
TOPIC_LAYOUT = "ami/<gateway_id>/readings"


class MqttTlsError(ValidationError):
    """The TLS handshake with the broker failed (an untrusted or wrong certificate): a setting
    to fix, not a failure to retry."""

    code = "mqtt_tls_failed"


@dataclass(frozen=True)
class MqttSecurity:
    tls: bool = False
    allow_plaintext: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    username: str | None = None
    password: str | None = None

    def check(self) -> None:
        """Refuse settings that cannot work or that would run unprotected by accident, naming
        the setting."""
        if not self.tls:
            if not self.allow_plaintext:
                raise ValidationError(
                    "[metering.mqtt] tls = false: meter readings would travel unencrypted and "
                    "anyone on the network could publish forged ones; set tls = true and ca_file "
                    "(DIANFEI_MQTT_TLS, DIANFEI_MQTT_CA_FILE), or set allow_plaintext = true "
                    "(DIANFEI_MQTT_ALLOW_PLAINTEXT) to accept that explicitly")
            return
        for key in ("ca_file", "cert_file", "key_file"):
            path = getattr(self, key)
            if path is not None and not Path(path).is_file():
                raise ValidationError(f"[metering.mqtt] {key}: {path} is not a readable file")
        if self.key_file is not None and self.cert_file is None:
            raise ValidationError("[metering.mqtt] key_file is set but cert_file is not "
                                  "(the client certificate for mutual TLS)")
        if self.password is not None and self.username is None:
            raise ValidationError("[metering.mqtt] password is set but username is not")

    def apply(self, client: Any) -> None:
        """Configure a paho client: TLS (server certificate and host name verified) and the
        listener's own credentials."""
        if self.tls:
            client.tls_set(ca_certs=self.ca_file, certfile=self.cert_file, keyfile=self.key_file,
                           cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        if self.username is not None:
            client.username_pw_set(self.username, self.password)


#: for tests and a broker on the same host only: no TLS, accepted explicitly
PLAINTEXT = MqttSecurity(tls=False, allow_plaintext=True)


def _flag(value: Any, key: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValidationError(f"[metering.mqtt] {key} must be true or false, got {value!r}")


def load_security(settings: Settings | None = None,
                  env: Mapping[str, str] | None = None) -> MqttSecurity:
    """The listener's transport settings: environment first, then ``[metering.mqtt]``."""
    env = os.environ if env is None else env
    raw = settings.raw if settings is not None else {}
    metering = raw.get("metering", {}) if isinstance(raw.get("metering"), dict) else {}
    section = metering.get("mqtt", {})
    if not isinstance(section, dict):
        raise ValidationError("[metering.mqtt] in the config file must be a table")
    known = {"tls", "allow_plaintext", "ca_file", "cert_file", "key_file", "username", "password"}
    unknown = sorted(set(section) - known)
    if unknown:
        raise ValidationError(f"[metering.mqtt] unknown settings: {', '.join(unknown)}")

    def pick(key: str) -> Any:
        value = env.get(f"DIANFEI_MQTT_{key.upper()}")
        return value if value not in (None, "") else section.get(key)

    def text(key: str) -> str | None:
        value = pick(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            raise ValidationError(f"[metering.mqtt] {key} must be a non-empty text, got {value!r}")
        return value

    sec = MqttSecurity(tls=_flag(pick("tls") or False, "tls"),
                       allow_plaintext=_flag(pick("allow_plaintext") or False, "allow_plaintext"),
                       ca_file=text("ca_file"), cert_file=text("cert_file"),
                       key_file=text("key_file"), username=text("username"),
                       password=text("password"))
    sec.check()
    return sec


def gateway_of_topic(topic: str) -> str | None:
    """The gateway a message was published as: the topic level before the last
    (``ami/GW-0001/readings`` → ``GW-0001``). The broker's ACL lets a gateway publish only under
    its own id, so this — not the ``gateway_id`` the payload claims — is who sent it."""
    levels = topic.split("/")
    if len(levels) < 2 or not levels[-2]:
        return None
    return levels[-2]
