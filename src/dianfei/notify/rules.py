"""When a notice may go out (发送规则): quiet hours, rate limits, retries with backoff.

Every rule here is a small pure function of settings and instants, so dispatch stays readable
and the rules are tested without a database.

Configuration (the ``[notify]`` table of the config TOML; defaults in brackets)::

    [notify]
    max_attempts = 5               # tries before a row becomes 'failed' on the worklist
    backoff_seconds = 60           # first retry after 60 s, then 120, 240, … (exponential)
    backoff_max_seconds = 21600    # never wait more than 6 h between tries
    sending_timeout_seconds = 600  # a 'sending' row older than this was left by a crash
    dispatch_concurrency = 200     # messages in flight at once within a dispatch pass
    utility_name = "国网某县供电公司"  # signs notices; utility_name_en for English
    hotline = "95598"
    template_dir = "/etc/dianfei/notices"   # overrides packaged templates file by file
    [notify.quiet_hours]           # local time (Asia/Shanghai): no sms / wechat at night
    sms = "21:00-08:00"
    wechat = "21:00-08:00"         # email and letter: none unless configured
    [notify.per_customer_daily]    # at most N sent per customer, channel and business day
    sms = 3
    wechat = 5
    email = 10
    [notify.per_channel_per_minute]  # gateway throughput: at most N claimed per rolling minute
    sms = 600
    [notify.channel_concurrency]   # a lower cap per channel [email 10, letter 2]
    email = 10

Quiet hours come from practice, not law: Chinese SMS rules (工信部《通信短信息服务管理规定》)
restrict commercial messages without consent; utilities avoid night-time service messages too.
Legally required notices (stop notices) obey quiet hours but skip the per-customer daily limit,
so a busy day never pushes a stop notice past the date the law counts from.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from dianfei.core.errors import ValidationError

CHANNELS = ("sms", "email", "wechat", "letter")


@dataclass(frozen=True)
class QuietHours:
    """A nightly window in local time; ``start > end`` wraps midnight (21:00–08:00)."""

    start: time
    end: time

    @classmethod
    def parse(cls, text: str, where: str = "notify.quiet_hours") -> QuietHours:
        try:
            a, b = (part.strip() for part in text.split("-"))
            start, end = time.fromisoformat(a), time.fromisoformat(b)
        except ValueError:
            raise ValidationError(f"{where}: expected HH:MM-HH:MM, got {text!r}") from None
        if start == end:
            raise ValidationError(f"{where}: an empty window {text!r}; remove it instead")
        return cls(start, end)

    def contains(self, local: time) -> bool:
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


@dataclass(frozen=True)
class NotifySettings:
    max_attempts: int = 5
    backoff_seconds: int = 60
    backoff_max_seconds: int = 6 * 3600
    sending_timeout_seconds: int = 600
    timezone: str = "Asia/Shanghai"
    utility_name: str = "供电公司"
    utility_name_en: str = "Power Supply Company"
    hotline: str = "95598"
    template_dir: str | None = None
    quiet_hours: Mapping[str, QuietHours] = field(default_factory=lambda: {
        "sms": QuietHours(time(21), time(8)), "wechat": QuietHours(time(21), time(8))})
    per_customer_daily: Mapping[str, int] = field(default_factory=lambda: {
        "sms": 3, "wechat": 5, "email": 10})
    per_channel_per_minute: Mapping[str, int] = field(default_factory=dict)
    #: messages handed to the adapters at once within a pass (a 50 ms SMS gateway: 200 → ~4,000/s)
    dispatch_concurrency: int = 200
    #: a lower cap for a channel: an SMTP server limits a client's connections; letters are CPU
    channel_concurrency: Mapping[str, int] = field(default_factory=lambda: {"email": 10, "letter": 2})
    #: the raw [notify] table (channel settings: smtp, sms, letters, wechat)
    raw: Mapping[str, Any] = field(default_factory=dict)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


def _channel_map(raw: Any, where: str, convert: Any) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        raise ValidationError(f"{where} must be a table of channel = value")
    out = {}
    for ch, value in raw.items():
        if ch not in CHANNELS:
            raise ValidationError(f"{where}: unknown channel {ch!r} (expected {', '.join(CHANNELS)})")
        out[ch] = convert(value, f"{where}.{ch}")
    return out


def _positive_int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValidationError(f"{where} must be a whole number ≥ 1, got {value!r}")
    return value


def load_notify_settings(raw_config: Mapping[str, Any], timezone: str = "Asia/Shanghai") -> NotifySettings:
    """``[notify]`` of the config file → settings, refusing what makes no sense."""
    cfg = raw_config.get("notify", {}) or {}
    base = NotifySettings()
    kwargs: dict[str, Any] = {"timezone": timezone, "raw": cfg}
    for name in ("max_attempts", "backoff_seconds", "backoff_max_seconds", "sending_timeout_seconds",
                 "dispatch_concurrency"):
        if name in cfg:
            kwargs[name] = _positive_int(cfg[name], f"notify.{name}")
    for name in ("utility_name", "utility_name_en", "hotline", "template_dir"):
        if name in cfg:
            kwargs[name] = str(cfg[name])
    if "quiet_hours" in cfg:
        kwargs["quiet_hours"] = _channel_map(cfg["quiet_hours"], "notify.quiet_hours",
                                             lambda v, w: QuietHours.parse(str(v), w))
    if "per_customer_daily" in cfg:
        kwargs["per_customer_daily"] = _channel_map(cfg["per_customer_daily"],
                                                    "notify.per_customer_daily", _positive_int)
    if "per_channel_per_minute" in cfg:
        kwargs["per_channel_per_minute"] = _channel_map(cfg["per_channel_per_minute"],
                                                        "notify.per_channel_per_minute", _positive_int)
    if "channel_concurrency" in cfg:
        kwargs["channel_concurrency"] = {**base.channel_concurrency, **_channel_map(
            cfg["channel_concurrency"], "notify.channel_concurrency", _positive_int)}
    settings = NotifySettings(**{**base.__dict__, **kwargs})
    if settings.backoff_max_seconds < settings.backoff_seconds:
        raise ValidationError("notify.backoff_max_seconds must be ≥ notify.backoff_seconds")
    return settings


def quiet_until(instant: datetime, channel: str, settings: NotifySettings) -> datetime | None:
    """If ``instant`` falls in the channel's quiet hours, the UTC instant they end; else None."""
    window = settings.quiet_hours.get(channel)
    if window is None:
        return None
    local = instant.astimezone(settings.tz)
    if not window.contains(local.time().replace(tzinfo=None)):
        return None
    end_day = local.date()
    if window.start > window.end and local.time().replace(tzinfo=None) >= window.start:
        end_day = end_day + timedelta(days=1)  # 22:30 → tomorrow's 08:00
    return datetime.combine(end_day, window.end, tzinfo=settings.tz).astimezone(UTC)


def earliest_allowed(instant: datetime, channel: str, settings: NotifySettings) -> datetime:
    """``instant``, or the end of the quiet hours it falls in."""
    return quiet_until(instant, channel, settings) or instant


def backoff(attempt: int, settings: NotifySettings) -> timedelta:
    """The wait after failed attempt number ``attempt`` (1-based): base · 2^(attempt−1), capped."""
    seconds = settings.backoff_seconds * (2 ** max(attempt - 1, 0))
    return timedelta(seconds=min(seconds, settings.backoff_max_seconds))


def business_day_bounds(instant: datetime, settings: NotifySettings) -> tuple[datetime, datetime]:
    """[start, end) of the business day containing ``instant``, as UTC instants."""
    day = instant.astimezone(settings.tz).date()
    start = datetime.combine(day, time(0), tzinfo=settings.tz)
    return start.astimezone(UTC), (start + timedelta(days=1)).astimezone(UTC)
