"""A DL/T 645-2007 concentrator with many meters behind it, over TCP (the in-tree fake peer).

It speaks the real wire format — the same bytes a serial server in front of an RS-485 bus of
meters would put on a TCP connection — so the client, the poller and every test that needs a
meter run against it. It hosts meters by address, each with energy registers, a relay
(closed = supplied, tripped = cut off), a password, and faults to inject on its next replies:

* ``bad_checksum`` / ``wrong_address`` / ``silent`` / ``error_reply``: counters, one reply each
  (``silent`` = -1 never answers again);
* ``garbage``: bytes sent before the next reply (line noise);
* ``preamble``: whether replies carry FE FE FE FE (real meters differ);
* ``split``: send each reply in small TCP segments with pauses, as slow gateways do.

Use it from synchronous tests::

    with MeterSimulator([SimMeter("123456789012", total=Decimal("12345.67"))]) as sim:
        host, port = sim.address
        ...

or from a shell: ``python -m dianfei.metering.dlt645.simulator --port 8899 --meters 3``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from types import TracebackType

from dianfei.core.clock import BUSINESS_TZ, Clock
from dianfei.metering.dlt645 import frame as f

ERR_OTHER = 0x01
ERR_NO_DATA = 0x02
ERR_PASSWORD = 0x04
#: a meter takes a broadcast time sync only when it moves its clock by at most this much
#: (DL/T 645-2007 广播校时: larger errors need a programmed setting, 编程校时)
MAX_BROADCAST_STEP = timedelta(minutes=5)


@dataclass
class Faults:
    bad_checksum: int = 0
    wrong_address: int = 0
    silent: int = 0
    error_reply: int = 0
    error_word: int = ERR_OTHER
    garbage: bytes = b""
    preamble: bool = True
    split: bool = False


@dataclass
class SimMeter:
    address: str
    total: Decimal = Decimal("0")
    #: rate registers 1..4 (sharp, peak, flat, valley); None for a single-rate meter
    tou: tuple[Decimal, Decimal, Decimal, Decimal] | None = None
    reverse: Decimal = Decimal("0")
    relay: str = "closed"
    #: 8 hex digits as configured on the master (level then password)
    password: str = "02000000"
    faults: Faults = field(default_factory=Faults)
    #: every trip/close received: (action, operator code as written, valid-until, accepted)
    commands: list[tuple[str, str, datetime | None, bool]] = field(default_factory=list)
    reads: int = 0
    #: False: stay silent for data identifiers it does not have (cheap meters and some peers do)
    answers_unknown: bool = True
    #: the meter's clock runs this far from the simulator's (ahead when positive); it answers
    #: DI 04000101/04000102 from it, and a broadcast time sync (0x08) resets it
    clock_offset: timedelta = timedelta(0)
    #: False: a meter without a clock to read (no 04000101/04000102)
    has_clock: bool = True
    #: every broadcast time sync heard: (time sent, accepted)
    time_syncs: list[tuple[datetime, bool]] = field(default_factory=list)

    def registers(self) -> dict[int, bytes]:
        regs = {f.DI_FORWARD_ACTIVE_TOTAL: f.decimal_to_bcd(self.total, 4, 2),
                f.DI_REVERSE_ACTIVE_TOTAL: f.decimal_to_bcd(self.reverse, 4, 2)}
        if self.tou is not None:
            dis = (f.DI_FORWARD_ACTIVE_SHARP, f.DI_FORWARD_ACTIVE_PEAK, f.DI_FORWARD_ACTIVE_FLAT,
                   f.DI_FORWARD_ACTIVE_VALLEY)
            for di, value in zip(dis, self.tou, strict=True):
                regs[di] = f.decimal_to_bcd(value, 4, 2)
            regs[f.DI_FORWARD_ACTIVE_BLOCK] = regs[f.DI_FORWARD_ACTIVE_TOTAL] + b"".join(
                regs[di] for di in dis)
        return regs


class MeterSimulator:
    """An asyncio TCP server in its own thread, hosting meters by address."""

    def __init__(self, meters: Iterable[SimMeter] = (), *, host: str = "127.0.0.1", port: int = 0,
                 now: datetime | Clock | None = None) -> None:
        self.meters: dict[str, SimMeter] = {m.address: m for m in meters}
        self.host = host
        self.port = port
        #: the meters' clock for command expiry: a local wall time, a Clock (e.g. the FixedClock
        #: a simulation moves), or None for the real time
        self.now = now
        self.frames_received = 0
        self.bad_frames = 0
        #: connections open now, and the most ever open at once (to check a master's concurrency)
        self.connections = 0
        self.max_connections = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ lifecycle
    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    def add(self, meter: SimMeter) -> SimMeter:
        with self._lock:
            self.meters[meter.address] = meter
        return meter

    def start(self) -> tuple[str, int]:
        self._thread = threading.Thread(target=self._run, name="dlt645-simulator", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("DL/T 645 simulator did not start")
        if self._server is None:
            raise RuntimeError(f"DL/T 645 simulator could not listen on {self.host}:{self.port}")
        return self.address

    def stop(self) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and self._thread is not None:
            loop.call_soon_threadsafe(stop.set)
            self._thread.join(10)
            self._thread = None

    def __enter__(self) -> MeterSimulator:
        self.start()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            server = await asyncio.start_server(self._serve, self.host, self.port, backlog=1024)
        except OSError:
            self._ready.set()
            return
        self._server = server
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        async with server:
            await self._stop.wait()

    async def serve_forever(self) -> None:
        """Run in the caller's event loop (the command-line entry point)."""
        server = await asyncio.start_server(self._serve, self.host, self.port, backlog=1024)
        self.port = server.sockets[0].getsockname()[1]
        async with server:
            await server.serve_forever()

    # ------------------------------------------------------------------ protocol
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        buffer = bytearray()
        self.connections += 1
        self.max_connections = max(self.max_connections, self.connections)
        try:
            while True:
                raw = f.extract_frame(buffer)
                if raw is None:
                    chunk = await reader.read(4096)
                    if not chunk:
                        return
                    buffer += chunk
                    continue
                self.frames_received += 1
                try:
                    request = f.decode_frame(raw)
                except f.FrameError:
                    self.bad_frames += 1  # a meter ignores a damaged frame; the master times out
                    continue
                await self._answer(request, writer)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.connections -= 1
            writer.close()

    def _target(self, request: f.Frame) -> SimMeter | None:
        if request.function == f.READ_ADDRESS and "A" in request.address:
            with self._lock:
                return next(iter(self.meters.values())) if len(self.meters) == 1 else None
        with self._lock:
            return self.meters.get(request.address)

    def _broadcast_time(self, request: f.Frame) -> None:
        """Every meter on the line hears a broadcast time sync; none answers. A meter whose clock
        is more than MAX_BROADCAST_STEP off ignores it, as meters do."""
        try:
            sent = f.decode_datetime(request.data)
        except f.FrameError:
            self.bad_frames += 1
            return
        base = self._meter_now()
        with self._lock:
            meters = list(self.meters.values())
        for meter in meters:
            if not meter.has_clock:
                continue
            ok = abs(base + meter.clock_offset - sent) <= MAX_BROADCAST_STEP
            if ok:
                meter.clock_offset = sent - base
            meter.time_syncs.append((sent, ok))

    async def _answer(self, request: f.Frame, writer: asyncio.StreamWriter) -> None:
        if request.address == f.BROADCAST_ADDRESS and request.function == f.BROADCAST_TIME:
            self._broadcast_time(request)
            return
        meter = self._target(request)
        if meter is None or request.is_reply:
            return  # nobody with that address on the bus: silence, as on a real line
        faults = meter.faults
        if faults.silent:
            if faults.silent > 0:
                faults.silent -= 1
            return
        reply = self._reply(meter, request)
        if reply is None:
            return
        if faults.error_reply:
            faults.error_reply -= 1
            reply = f.Frame(meter.address, request.function | f.REPLY_BIT | f.ERROR_BIT,
                            bytes((faults.error_word,)))
        if faults.wrong_address:
            faults.wrong_address -= 1
            other = f"{(int(meter.address) + 1) % 10**12:012d}"
            reply = f.Frame(other, reply.control, reply.data)
        raw = bytearray(f.encode_frame(reply, preamble=faults.preamble))
        if faults.bad_checksum:
            faults.bad_checksum -= 1
            raw[-2] = (raw[-2] + 1) & 0xFF
        raw = bytearray(faults.garbage) + raw
        if faults.split:
            for i in range(0, len(raw), 3):
                writer.write(bytes(raw[i:i + 3]))
                await writer.drain()
                await asyncio.sleep(0.005)
        else:
            writer.write(bytes(raw))
            await writer.drain()

    def _meter_now(self) -> datetime:
        """The meter's local wall time (Beijing time, as meters keep it)."""
        if isinstance(self.now, datetime):
            return self.now
        instant = self.now.now() if self.now is not None else datetime.now(BUSINESS_TZ)
        return instant.astimezone(BUSINESS_TZ).replace(tzinfo=None)

    def _reply(self, meter: SimMeter, request: f.Frame) -> f.Frame | None:
        fn = request.function
        ok, err = fn | f.REPLY_BIT, fn | f.REPLY_BIT | f.ERROR_BIT
        if fn == f.READ_DATA:
            meter.reads += 1
            if len(request.data) < 4:
                return f.Frame(meter.address, err, bytes((ERR_OTHER,)))
            di = f.decode_di(request.data)
            if meter.has_clock and di in (f.DI_DATE, f.DI_TIME):
                local = self._meter_now() + meter.clock_offset
                told = f.encode_meter_date(local) if di == f.DI_DATE else f.encode_meter_time(local)
                return f.Frame(meter.address, ok, request.data[:4] + told)
            value = meter.registers().get(di)
            if value is None:
                return f.Frame(meter.address, err, bytes((ERR_NO_DATA,))) if meter.answers_unknown else None
            return f.Frame(meter.address, ok, request.data[:4] + value)
        if fn == f.READ_ADDRESS:
            return f.Frame(meter.address, ok, f.encode_address(meter.address))
        if fn == f.REMOTE_CONTROL:
            return self._control(meter, request, ok, err)
        if fn == f.BROADCAST_TIME:
            return None  # broadcasts are never answered
        return f.Frame(meter.address, err, bytes((ERR_OTHER,)))

    def _control(self, meter: SimMeter, request: f.Frame, ok: int, err: int) -> f.Frame:
        data = request.data
        if len(data) != 16:
            return f.Frame(meter.address, err, bytes((ERR_OTHER,)))
        operator = data[4:8][::-1].hex().upper()
        action = {v: k for k, v in f.ACTION_CODES.items()}.get(data[8])
        try:
            until: datetime | None = f.decode_datetime(data[10:16])
        except f.FrameError:
            until = None
        if data[:4] != f.parse_password(meter.password):
            meter.commands.append((action or f"0x{data[8]:02X}", operator, until, False))
            return f.Frame(meter.address, err, bytes((ERR_PASSWORD,)))
        if action is None or until is None or until < self._meter_now():
            meter.commands.append((action or f"0x{data[8]:02X}", operator, until, False))
            return f.Frame(meter.address, err, bytes((ERR_OTHER,)))
        meter.relay = "tripped" if action == "trip" else "closed"
        meter.commands.append((action, operator, until, True))
        return f.Frame(meter.address, ok, b"")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="DL/T 645-2007 meter simulator over TCP")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8899)
    parser.add_argument("--meters", type=int, default=3, help="meters 000000000001…")
    parser.add_argument("--password", default="02000000")
    args = parser.parse_args(argv)
    meters = [SimMeter(f"{i:012d}", total=Decimal("1000.25") * i,
                       tou=(Decimal(100 * i), Decimal(300 * i), Decimal(400 * i), Decimal("200.25") * i),
                       password=args.password)
              for i in range(1, args.meters + 1)]
    sim = MeterSimulator(meters, host=args.host, port=args.port)
    print(f"DL/T 645 simulator on {args.host}:{args.port} with meters "
          f"{', '.join(m.address for m in meters[:5])}{' …' if len(meters) > 5 else ''}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(sim.serve_forever())


if __name__ == "__main__":
    main()
