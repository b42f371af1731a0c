"""DL/T 645-2007 master (主站) over TCP: reads and trip/close through a gateway.

Meters on an RS-485 bus are reached over TCP through a concentrator or serial server
(集中器 / 串口服务器): the master writes a frame, the gateway puts it on the bus, and the
addressed meter's reply comes back on the same connection. One request is outstanding per
connection at a time (a bus is half-duplex).

Each attempt has a deadline covering connect, write and the whole reply. Noise-like failures
(timeout, refused connection, bad checksum, a reply from another meter) are retried on a fresh
connection — a late reply to a timed-out request must never be taken for the answer to the next
one. An error reply (异常应答) is the meter's answer and is not retried: repeating a wrong
password can lock a meter.

Configuration (environment wins over the ``[metering.dlt645]`` table of the config file):

=================  ===========================  ============================================
key                environment                  default
=================  ===========================  ============================================
host, port         DIANFEI_DLT645_HOST / _PORT  none (``meters read`` takes --host/--port)
timeout_s          DIANFEI_DLT645_TIMEOUT       3.0 seconds per attempt
retries            DIANFEI_DLT645_RETRIES       2 (so at most 3 attempts)
password           DIANFEI_DLT645_PASSWORD      ``02000000`` (level 02, password 000000)
operator           DIANFEI_DLT645_OPERATOR      ``00000000``
valid_minutes      DIANFEI_DLT645_VALID_MINUTES 10 (trip/close expires 10 min after sending)
preamble           DIANFEI_DLT645_PREAMBLE      true (send FE FE FE FE before each frame)
clock_tolerance_s  DIANFEI_DLT645_CLOCK_TOLERANCE 60 (``meters drift`` lists meters further off)
=================  ===========================  ============================================
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, time, timedelta
from decimal import Decimal
from types import TracebackType
from typing import Any

from dianfei.core.clock import BUSINESS_TZ, Clock, SystemClock
from dianfei.core.errors import DianfeiError, ValidationError
from dianfei.core.settings import Settings
from dianfei.metering.dlt645 import frame as f

#: the registers a master reads, by the name used in register reads (and their DI)
REGISTER_DI: dict[str, int] = {
    "total": f.DI_FORWARD_ACTIVE_TOTAL,
    "sharp": f.DI_FORWARD_ACTIVE_SHARP,
    "peak": f.DI_FORWARD_ACTIVE_PEAK,
    "flat": f.DI_FORWARD_ACTIVE_FLAT,
    "valley": f.DI_FORWARD_ACTIVE_VALLEY,
    "reverse": f.DI_REVERSE_ACTIVE_TOTAL,
}
TOU_REGISTERS = ("sharp", "peak", "flat", "valley")


@dataclass(frozen=True)
class Dlt645Config:
    host: str | None = None
    port: int | None = None
    timeout_s: float = 3.0
    retries: int = 2
    #: 8 hex digits: the level byte (密码权限) then the 6-digit password as written on the meter
    password: str = "02000000"
    #: 8 hex digits: the operator code (操作者代码) recorded by the meter with each command
    operator: str = "00000000"
    valid_minutes: int = 10
    preamble: bool = True
    #: a meter whose clock is further than this from ours (seconds) is listed by ``meters drift``
    clock_tolerance_s: int = 60

    def with_gateway(self, host: str | None, port: int | None) -> Dlt645Config:
        return replace(self, host=host or self.host, port=port if port is not None else self.port)

    def gateway(self) -> tuple[str, int]:
        if not self.host or self.port is None:
            raise ValidationError("no DL/T 645 gateway: give --host/--port, DIANFEI_DLT645_HOST/PORT "
                                  "or host/port under [metering.dlt645] in the config file")
        return self.host, self.port


def _flag(text: Any) -> bool:
    if isinstance(text, bool):
        return text
    return str(text).strip().lower() in ("1", "true", "yes", "on")


def load_config(settings: Settings | None = None, env: Mapping[str, str] | None = None) -> Dlt645Config:
    """The DL/T 645 settings: environment first, then ``[metering.dlt645]``, then the defaults."""
    env = os.environ if env is None else env
    raw = settings.raw if settings is not None else {}
    section = raw.get("metering", {}).get("dlt645", {}) if isinstance(raw.get("metering"), dict) else {}
    base = Dlt645Config()

    def pick(key: str, env_key: str, default: Any) -> Any:
        value = env.get(env_key)
        if value not in (None, ""):
            return value
        return section.get(key, default)

    try:
        port = pick("port", "DIANFEI_DLT645_PORT", None)
        cfg = Dlt645Config(
            host=pick("host", "DIANFEI_DLT645_HOST", None) or None,
            port=int(port) if port not in (None, "") else None,
            timeout_s=float(pick("timeout_s", "DIANFEI_DLT645_TIMEOUT", base.timeout_s)),
            retries=int(pick("retries", "DIANFEI_DLT645_RETRIES", base.retries)),
            password=str(pick("password", "DIANFEI_DLT645_PASSWORD", base.password)),
            operator=str(pick("operator", "DIANFEI_DLT645_OPERATOR", base.operator)),
            valid_minutes=int(pick("valid_minutes", "DIANFEI_DLT645_VALID_MINUTES", base.valid_minutes)),
            preamble=_flag(pick("preamble", "DIANFEI_DLT645_PREAMBLE", base.preamble)),
            clock_tolerance_s=int(pick("clock_tolerance_s", "DIANFEI_DLT645_CLOCK_TOLERANCE",
                                       base.clock_tolerance_s)),
        )
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"[metering.dlt645] settings: {exc}") from None
    validate_config(cfg)
    return cfg


def validate_config(cfg: Dlt645Config) -> None:
    if cfg.timeout_s <= 0 or cfg.retries < 0 or cfg.valid_minutes < 1:
        raise ValidationError("DL/T 645 timeout must be > 0 s, retries ≥ 0, valid_minutes ≥ 1")
    if cfg.clock_tolerance_s < 0:
        raise ValidationError(f"DL/T 645 clock_tolerance_s must be ≥ 0 seconds, got {cfg.clock_tolerance_s}")
    if cfg.port is not None and not 0 < cfg.port < 65536:
        raise ValidationError(f"DL/T 645 port {cfg.port} is not a TCP port")
    try:
        f.parse_password(cfg.password)
        f.parse_operator(cfg.operator)
    except f.FrameError as exc:
        raise ValidationError(f"DL/T 645 settings: {exc.message}") from None


@dataclass
class MeterReading:
    """What one read of a meter returned: register values in kWh and what it could not give."""

    address: str
    read_at: datetime
    values: dict[str, Decimal] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)
    #: the meter's own clock (local wall time, naive) when it was read, and when its reply came
    meter_time: datetime | None = None
    received_at: datetime | None = None


class Dlt645Client:
    """One connection to a gateway; use as ``async with Dlt645Client(host, port) as c``."""

    def __init__(self, host: str, port: int, *, timeout_s: float = 3.0, retries: int = 2,
                 preamble: bool = True) -> None:
        self.host = host
        self.port = port
        self.timeout_s = timeout_s
        self.retries = retries
        self.preamble = preamble
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._buffer = bytearray()
        #: attempts that failed and were retried, for the poller's statistics
        self.retried = 0

    @classmethod
    def from_config(cls, cfg: Dlt645Config) -> Dlt645Client:
        host, port = cfg.gateway()
        return cls(host, port, timeout_s=cfg.timeout_s, retries=cfg.retries, preamble=cfg.preamble)

    async def __aenter__(self) -> Dlt645Client:
        return self

    async def __aexit__(self, et: type[BaseException] | None, ev: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        self._buffer.clear()
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await writer.wait_closed()

    async def _attempt(self, request: f.Frame) -> f.Frame:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
            self._buffer.clear()
        assert self._reader is not None and self._writer is not None
        self._writer.write(f.encode_frame(request, preamble=self.preamble))
        await self._writer.drain()
        while True:
            raw = f.extract_frame(self._buffer)
            if raw is None:
                chunk = await self._reader.read(4096)
                if not chunk:
                    raise f.MeterTimeout(f"gateway {self.host}:{self.port} closed the connection")
                self._buffer += chunk
                continue
            reply = f.decode_frame(raw)
            if not reply.is_reply and reply == request:
                continue  # an RS-485 converter echoing our own frame
            return reply

    async def exchange(self, request: f.Frame, *, retries: int | None = None) -> f.Frame:
        """Send one request and return its checked reply, retrying noise-like failures."""
        last: DianfeiError | None = None
        for attempt in range((self.retries if retries is None else retries) + 1):
            if attempt:
                self.retried += 1
                await self.close()  # never read a late reply to the previous attempt
                await asyncio.sleep(min(0.05 * attempt, 0.5))
            try:
                async with asyncio.timeout(self.timeout_s):
                    reply = await self._attempt(request)
                f.check_reply(request, reply)
                return reply
            except TimeoutError:
                # a connect that did not finish in time (a loaded host, a dropped SYN) is the
                # gateway's fault, not the meter's silence
                last = f.MeterTimeout(
                    f"gateway {self.host}:{self.port} unreachable: no connection within {self.timeout_s:g} s"
                    if self._writer is None else
                    f"no reply from meter {request.address} via {self.host}:{self.port} "
                    f"within {self.timeout_s:g} s")
            except OSError as exc:
                last = f.MeterTimeout(f"gateway {self.host}:{self.port} unreachable: "
                                      f"{exc.strerror or exc}")
            except f.ErrorReply:
                raise
            except f.Dlt645Error as exc:  # checksum, malformed, wrong address, unexpected reply
                last = exc
        await self.close()
        assert last is not None
        raise last

    async def read_raw(self, address: str, di: int, *, retries: int | None = None) -> bytes:
        request = f.read_request(address, di)
        return f.read_value(request, await self.exchange(request, retries=retries))

    async def read_energy(self, address: str, di: int, *, retries: int | None = None) -> Decimal:
        return f.energy_value(await self.read_raw(address, di, retries=retries), what=f"DI {di:08X}")

    async def read_address(self) -> str:
        """Ask 'whoever is on the line' for its address (0x13); one meter per line only."""
        reply = await self.exchange(f.read_address_request())
        if len(reply.data) != 6:
            raise f.FrameError(f"read-address reply carries {len(reply.data)} bytes, not 6")
        return f.decode_address(reply.data)

    async def read_meter(self, address: str, registers: Sequence[str] = ("total", *TOU_REGISTERS),
                         *, clock: Clock | None = None, block: bool = False) -> MeterReading:
        """Read the named registers. ``total`` must answer; any other register the meter cannot
        give is reported in ``unavailable`` with the reason: an error reply (a single-rate meter
        asked for its valley register), a damaged reply, or silence — meters that ignore data
        identifiers they do not know exist, so after one optional register goes unanswered the
        remaining optional ones are not asked (each would cost a full timeout).

        ``block`` reads total and TOU in one round trip (00 01 FF 00) and falls back to single
        reads if the meter refuses it."""
        clock = clock or SystemClock()
        reading = MeterReading(address=address, read_at=clock.now().replace(microsecond=0))
        todo = list(dict.fromkeys(registers))
        unknown = [name for name in todo if name not in REGISTER_DI]
        if unknown:
            raise ValidationError(f"register {unknown[0]!r} cannot be read over DL/T 645 "
                                  f"(known: {', '.join(REGISTER_DI)})")
        if "total" in todo:  # the one register that must answer, first
            todo.remove("total")
            todo.insert(0, "total")
        if block and todo[:1] == ["total"] and set(todo) & set(TOU_REGISTERS):
            try:
                values = f.energy_block(await self.read_raw(address, f.DI_FORWARD_ACTIVE_BLOCK))
                for name, value in zip(("total", *TOU_REGISTERS), values, strict=False):
                    if name in todo:
                        reading.values[name] = value
                        todo.remove(name)
            except f.ErrorReply:
                pass
        silent: str | None = None
        for name in todo:
            if name == "total":
                reading.values[name] = await self.read_energy(address, REGISTER_DI[name])
                continue
            if silent is not None:
                reading.unavailable[name] = f"not asked: the meter did not answer for {silent}"
                continue
            try:
                # optional registers: one retry at most, so a meter without them costs little
                reading.values[name] = await self.read_energy(address, REGISTER_DI[name],
                                                              retries=min(self.retries, 1))
            except f.ErrorReply as exc:
                reading.unavailable[name] = describe(exc)
            except f.MeterTimeout as exc:
                reading.unavailable[name] = exc.message
                silent = name
            except f.Dlt645Error as exc:
                reading.unavailable[name] = exc.message
        return reading

    async def read_clock(self, address: str, *, retries: int | None = None) -> datetime:
        """The meter's own clock (its local wall time, naive): date (04000101) then time
        (04000102). A time in the first seconds of a day may follow a date read just before
        midnight, so then the date is read again."""
        day = await self.read_raw(address, f.DI_DATE, retries=retries)
        hms = await self.read_raw(address, f.DI_TIME, retries=retries)
        if f.meter_clock(day, hms).time() < time(0, 0, 10):
            day = await self.read_raw(address, f.DI_DATE, retries=retries)
        return f.meter_clock(day, hms)

    async def broadcast_time(self, local: datetime) -> bytes:
        """Send a broadcast time sync (0x08 to 99 99 99 99 99 99) and return the bytes sent.
        Meters never answer a broadcast, so success means the gateway took the frame; a
        gateway that cannot be reached or written to is a :class:`MeterTimeout` (retryable)."""
        raw = f.encode_frame(f.broadcast_time_request(local), preamble=self.preamble)
        try:
            async with asyncio.timeout(self.timeout_s):
                if self._writer is None:
                    self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
                self._writer.write(raw)
                await self._writer.drain()
        except TimeoutError:
            # no connection in time is the same fault as a refused one (the gateway is not
            # there for us); a connection that would not take the frame is the gateway's
            what = ("unreachable: no connection" if self._writer is None
                    else "did not take the time sync")
            raise f.MeterTimeout(f"gateway {self.host}:{self.port} {what} "
                                 f"within {self.timeout_s:g} s") from None
        except OSError as exc:
            raise f.MeterTimeout(f"gateway {self.host}:{self.port} unreachable: "
                                 f"{exc.strerror or exc}") from None
        finally:
            await self.close()
        return raw

    async def control(self, address: str, action: str, *, password: bytes, operator: bytes,
                      valid_until: datetime) -> f.Frame:
        """Trip or close the meter's relay; returns the 0x9C reply, raises ErrorReply on 0xDC."""
        request = f.control_request(address, action, password=password, operator=operator,
                                    valid_until=valid_until)
        return await self.exchange(request)


def describe(exc: f.ErrorReply) -> str:
    return f"error reply: {f.describe_error(exc.err)}"


def valid_until(cfg: Dlt645Config, clock: Clock) -> datetime:
    """The command's expiry as the meter's local wall time (Beijing time, 北京时间)."""
    local = clock.now().astimezone(BUSINESS_TZ) + timedelta(minutes=cfg.valid_minutes)
    return local.replace(tzinfo=None, microsecond=0)


# ---------------------------------------------------------------------------- synchronous helpers

def read_meter_sync(cfg: Dlt645Config, address: str | None,
                    registers: Sequence[str] = ("total", *TOU_REGISTERS, "reverse"),
                    *, clock: Clock | None = None) -> MeterReading:
    """One read of one meter (for the CLI); ``address`` None asks the line for it first (0x13)."""

    async def go() -> MeterReading:
        async with Dlt645Client.from_config(cfg) as client:
            addr = address or await client.read_address()
            return await client.read_meter(addr, registers, clock=clock)

    return asyncio.run(go())


def control_sync(cfg: Dlt645Config, address: str, action: str, *, clock: Clock | None = None) -> f.Frame:
    """One trip or close, with the password and operator code of the configuration."""
    clock = clock or SystemClock()
    password = f.parse_password(cfg.password)
    operator = f.parse_operator(cfg.operator)

    async def go() -> f.Frame:
        async with Dlt645Client.from_config(cfg) as client:
            return await client.control(address, action, password=password, operator=operator,
                                        valid_until=valid_until(cfg, clock))

    return asyncio.run(go())
