"""DL/T 645-2007 frames (多功能电能表通信协议 帧格式): encode, find in a byte stream, decode.

A frame on the wire::

    [FE FE FE FE]  68  A0 A1 A2 A3 A4 A5  68  C  L  D0 … D(L-1)  CS  16

* ``FE`` × 0–4 is the wake-up preamble (前导字节). Masters usually send it; meters and
  concentrators answer with or without it, so the decoder accepts both.
* ``A0…A5`` is the 12-digit communication address (通信地址) in BCD, **low byte first**:
  address ``123456789012`` travels as ``12 90 78 56 34 12``. ``AA`` bytes are wildcards
  (缩位寻址), ``AAAAAAAAAAAA`` asks "whoever is on the line" (read address, 0x13).
* ``C`` is the control code (控制码): bit 7 set on replies from the meter (从站应答), bit 6 set
  on error replies (异常应答), bit 5 set when follow-up frames exist (后续帧); the low five bits
  are the function: 0x11 read data, 0x13 read address, 0x1C trip/close (跳合闸、报警、保电).
* ``L`` is the length of the data field; every data byte travels **plus 0x33** (加33H处理),
  so that a field of zeros never looks like a run of preamble or start bytes.
* ``CS`` is the sum of every byte from the first ``68`` up to the last data byte, mod 256.

Data identifiers (数据标识 DI3 DI2 DI1 DI0) travel low byte first; numbers are BCD, low byte
first. A forward active total energy of 12345.67 kWh (format XXXXXX.XX) is ``67 45 23 01``.

Everything that can go wrong with bytes from the line is a typed error: :class:`FrameError`
(malformed), :class:`ChecksumError`, :class:`AddressMismatchError`, :class:`ErrorReply` (the meter
said no, with its error word decoded) and :class:`MeterTimeout`. Noise-like failures (checksum,
wrong address, timeout) are retryable; an error reply is the meter's considered answer and is not.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from dianfei.core.errors import DianfeiError, RetryableError

START = 0x68
END = 0x16
PREAMBLE = b"\xfe\xfe\xfe\xfe"
#: bytes from the first 68 to 16 around an empty data field
MIN_FRAME = 12

# Function codes (low five bits of C) and the bits of a reply
READ_DATA = 0x11
READ_ADDRESS = 0x13
REMOTE_CONTROL = 0x1C
BROADCAST_TIME = 0x08
REPLY_BIT = 0x80
ERROR_BIT = 0x40
FOLLOW_BIT = 0x20

#: Data identifiers (数据标识) as DI3..DI0 written high first, the way the standard's tables do
DI_FORWARD_ACTIVE_TOTAL = 0x00010000  # (当前)正向有功总电能
DI_FORWARD_ACTIVE_SHARP = 0x00010100  # 正向有功费率1 (尖) 电能
DI_FORWARD_ACTIVE_PEAK = 0x00010200   # 正向有功费率2 (峰) 电能
DI_FORWARD_ACTIVE_FLAT = 0x00010300   # 正向有功费率3 (平) 电能
DI_FORWARD_ACTIVE_VALLEY = 0x00010400  # 正向有功费率4 (谷) 电能
DI_FORWARD_ACTIVE_BLOCK = 0x0001FF00  # 正向有功电能数据块: total, then rate 1..n
DI_REVERSE_ACTIVE_TOTAL = 0x00020000  # (当前)反向有功总电能
DI_DATE = 0x04000101  # 日期及星期 YYMMDDWW (the meter's own calendar, WW 0 = Sunday)
DI_TIME = 0x04000102  # 时间 hhmmss (the meter's own clock)

#: the broadcast address (广播地址): every meter on the line listens, none answers
BROADCAST_ADDRESS = "999999999999"

#: Trip / close (跳闸 / 合闸) commands, N1 of a 0x1C frame
ACTION_CODES = {"trip": 0x1A, "close": 0x1B}

#: Bits of the error word (错误信息字 ERR) of an error reply, DL/T 645-2007 table (附录 A)
ERROR_BITS = (
    (0x01, "other error (其他错误)"),
    (0x02, "no requested data (无请求数据)"),
    (0x04, "wrong password or not authorised (密码错/未授权)"),
    (0x08, "baud rate cannot be changed (通信速率不能更改)"),
    (0x10, "too many seasons (年时区数超)"),
    (0x20, "too many day tables (日时段数超)"),
    (0x40, "too many rates (费率数超)"),
)


class Dlt645Error(DianfeiError):
    """Something went wrong talking DL/T 645 to a meter."""

    code = "dlt645"
    http_status = 502


class FrameError(Dlt645Error):
    """Bytes that are not a well-formed DL/T 645 frame (wrong start/end byte, length, BCD)."""

    code = "dlt645_frame"


class ChecksumError(FrameError, RetryableError):
    """The checksum does not match: the frame was damaged on the line; asking again may work."""

    code = "dlt645_checksum"
    http_status = 502


class AddressMismatchError(Dlt645Error, RetryableError):
    """A reply came from another meter than the one asked (a late reply, a busy bus)."""

    code = "dlt645_address"
    http_status = 502


class UnexpectedReplyError(Dlt645Error, RetryableError):
    """A well-formed reply that does not answer the request (other function or data identifier)."""

    code = "dlt645_unexpected"
    http_status = 502


class ErrorReply(Dlt645Error):
    """The meter answered with an error reply (异常应答, control 0xD1 / 0xDC …) and its error word."""

    code = "dlt645_error_reply"

    def __init__(self, control: int, err: int | None, *, address: str) -> None:
        self.control = control
        self.err = err
        self.address = address
        super().__init__(f"meter {address} refused (error reply 0x{control:02X}): "
                         f"{describe_error(err)}")


class MeterTimeout(Dlt645Error, RetryableError):
    """No (complete) reply within the timeout, or the gateway could not be reached."""

    code = "dlt645_timeout"
    http_status = 504


def describe_error(err: int | None) -> str:
    """The error word of an error reply in words, e.g. ``0x04`` → wrong password."""
    if err is None:
        return "no error word given"
    names = [text for bit, text in ERROR_BITS if err & bit]
    if err & 0x80:
        names.append("reserved bit 7 set")
    return "; ".join(names) if names else f"unspecified error (ERR=0x{err:02X})"


@dataclass(frozen=True)
class Frame:
    """A decoded frame: ``data`` is the data field with the 0x33 offset already removed."""

    address: str
    control: int
    data: bytes = b""

    @property
    def is_reply(self) -> bool:
        return bool(self.control & REPLY_BIT)

    @property
    def is_error(self) -> bool:
        return bool(self.control & ERROR_BIT)

    @property
    def function(self) -> int:
        return self.control & 0x1F


# ---------------------------------------------------------------------------- address and BCD

def _check_address(address: str) -> str:
    text = address.upper()
    if len(text) != 12:
        raise FrameError(f"a DL/T 645 address has 12 digits, got {address!r}")
    for i in range(0, 12, 2):
        pair = text[i:i + 2]
        if not (pair.isdigit() and pair.isascii()) and pair != "AA":
            raise FrameError(f"address {address!r}: {pair!r} is neither two digits nor the AA wildcard")
    return text


def encode_address(address: str) -> bytes:
    """``"123456789012"`` → ``12 90 78 56 34 12`` (BCD, low byte first)."""
    return bytes.fromhex(_check_address(address))[::-1]


def decode_address(raw: bytes) -> str:
    if len(raw) != 6:
        raise FrameError(f"an address has 6 bytes, got {len(raw)}")
    return _check_address(raw[::-1].hex())


def bcd_to_int(raw: bytes) -> int:
    """Unsigned BCD, low byte first, to an integer; a nibble above 9 is a :class:`FrameError`."""
    text = raw[::-1].hex()
    if not text.isdigit():
        raise FrameError(f"not BCD: {raw.hex(' ')}")
    return int(text) if text else 0


def int_to_bcd(value: int, size: int) -> bytes:
    if value < 0 or value >= 10 ** (2 * size):
        raise FrameError(f"{value} does not fit {size} BCD bytes")
    return bytes.fromhex(f"{value:0{2 * size}d}")[::-1]


def bcd_to_decimal(raw: bytes, places: int) -> Decimal:
    """BCD with ``places`` implied decimals, e.g. format XXXXXX.XX → places = 2."""
    return Decimal(bcd_to_int(raw)).scaleb(-places)


def decimal_to_bcd(value: Decimal, size: int, places: int) -> bytes:
    scaled = value.scaleb(places)
    if scaled != scaled.to_integral_value():
        raise FrameError(f"{value} has more than {places} decimal places")
    return int_to_bcd(int(scaled), size)


def encode_di(di: int) -> bytes:
    return di.to_bytes(4, "little")


def decode_di(raw: bytes) -> int:
    return int.from_bytes(raw[:4], "little")


def encode_datetime(instant: datetime) -> bytes:
    """ssmmhhDDMMYY in BCD, seconds first (the meter's local wall time is the caller's job)."""
    return bytes(int(f"{v:02d}", 16) for v in (instant.second, instant.minute, instant.hour,
                                                 instant.day, instant.month, instant.year % 100))


def decode_datetime(raw: bytes) -> datetime:
    if len(raw) != 6:
        raise FrameError(f"a ssmmhhDDMMYY time has 6 bytes, got {len(raw)}")
    ss, mm, hh, dd, mo, yy = (bcd_to_int(bytes([b])) for b in raw)
    try:
        return datetime(2000 + yy, mo, dd, hh, mm, ss)
    except ValueError:
        raise FrameError(f"not a date and time: {raw.hex(' ')}") from None


# ---------------------------------------------------------------------------- frames

def encode_frame(frame: Frame, *, preamble: bool = True) -> bytes:
    """The bytes of a frame, with the FE FE FE FE preamble unless told otherwise."""
    if not 0 <= frame.control <= 0xFF:
        raise FrameError(f"control code {frame.control} is not a byte")
    if len(frame.data) > 0xFF:
        raise FrameError(f"data field of {len(frame.data)} bytes is longer than 255")
    body = bytearray((START, *encode_address(frame.address), START, frame.control, len(frame.data)))
    body += bytes((b + 0x33) & 0xFF for b in frame.data)
    body += bytes((sum(body) & 0xFF, END))
    return (PREAMBLE if preamble else b"") + bytes(body)


def decode_frame(raw: bytes) -> Frame:
    """Decode exactly one frame (leading FE bytes allowed). Raises only :class:`FrameError`."""
    i = 0
    while i < len(raw) and raw[i] == 0xFE:
        i += 1
    body = raw[i:]
    if len(body) < MIN_FRAME:
        raise FrameError(f"frame too short ({len(body)} bytes after the preamble): {bytes(raw).hex(' ')}")
    if body[0] != START or body[7] != START:
        raise FrameError(f"no 68 … 68 frame header: {bytes(body[:10]).hex(' ')}")
    length = body[9]
    if len(body) != MIN_FRAME + length:
        raise FrameError(f"length byte says {length} data bytes, the frame has {len(body) - MIN_FRAME}")
    if body[-1] != END:
        raise FrameError(f"frame does not end with 16 (ends with {body[-1]:02X})")
    expected = sum(body[:-2]) & 0xFF
    if body[-2] != expected:
        raise ChecksumError(f"checksum {body[-2]:02X}, expected {expected:02X}: {bytes(body).hex(' ')}")
    data = bytes((b - 0x33) & 0xFF for b in body[10:-2])
    return Frame(address=decode_address(bytes(body[1:7])), control=body[8], data=data)


def extract_frame(buffer: bytearray) -> bytes | None:
    """Take the next complete frame (68 … 16) out of a receive buffer, or None if incomplete.

    Bytes before the first 68 (preamble, line noise) are dropped. Once a header is complete the
    frame's length is known, so a frame split over several TCP segments is simply awaited; a
    frame that proves malformed is still returned whole, for :func:`decode_frame` to name the
    fault. Never raises.
    """
    start = buffer.find(START)
    if start < 0:
        buffer.clear()
        return None
    if start:
        del buffer[:start]
    if len(buffer) < 10:
        return None
    if buffer[7] != START:
        # not a header after all: hand back what we have up to the next 68 as a bad frame
        nxt = buffer.find(START, 1)
        cut = nxt if nxt > 0 else len(buffer)
        bad = bytes(buffer[:cut])
        del buffer[:cut]
        return bad
    total = MIN_FRAME + buffer[9]
    if len(buffer) < total:
        return None
    out = bytes(buffer[:total])
    del buffer[:total]
    return out


# ---------------------------------------------------------------------------- requests

def read_request(address: str, di: int) -> Frame:
    """Read data (读数据, 0x11): the data identifier, low byte first."""
    return Frame(address, READ_DATA, encode_di(di))


def read_address_request() -> Frame:
    """Read communication address (读通信地址, 0x13) — only with a single meter on the line."""
    return Frame("AAAAAAAAAAAA", READ_ADDRESS, b"")


def broadcast_time_request(local: datetime) -> Frame:
    """Broadcast time sync (广播校时, 0x08) to address 99 99 99 99 99 99: data ``ssmmhhDDMMYY``
    (6 BCD bytes, seconds first), the meters' local wall time. Meters never answer it."""
    return Frame(BROADCAST_ADDRESS, BROADCAST_TIME, encode_datetime(local))


def meter_date(raw: bytes) -> tuple[int, int, int]:
    """DI 04000101 (YYMMDDWW, low byte first: WW DD MM YY) → (year, month, day)."""
    if len(raw) != 4:
        raise FrameError(f"date (04000101): expected 4 bytes YYMMDDWW, got {len(raw)}")
    _ww, dd, mo, yy = (bcd_to_int(bytes([b])) for b in raw)
    return 2000 + yy, mo, dd


def meter_clock(date_raw: bytes, time_raw: bytes) -> datetime:
    """The meter's local wall time from DI 04000101 (date) and 04000102 (hhmmss, low byte first)."""
    if len(time_raw) != 3:
        raise FrameError(f"time (04000102): expected 3 bytes hhmmss, got {len(time_raw)}")
    ss, mm, hh = (bcd_to_int(bytes([b])) for b in time_raw)
    year, month, day = meter_date(date_raw)
    try:
        return datetime(year, month, day, hh, mm, ss)
    except ValueError:
        raise FrameError(f"not a date and time: {date_raw.hex(' ')} / {time_raw.hex(' ')}") from None


def encode_meter_date(local: datetime) -> bytes:
    """The 4 data bytes of DI 04000101 for a local date (WW DD MM YY; WW 0 = Sunday)."""
    week = (local.weekday() + 1) % 7
    return bytes(int(f"{v:02d}", 16) for v in (week, local.day, local.month, local.year % 100))


def encode_meter_time(local: datetime) -> bytes:
    """The 3 data bytes of DI 04000102 (ss mm hh)."""
    return bytes(int(f"{v:02d}", 16) for v in (local.second, local.minute, local.hour))


def parse_password(text: str, what: str = "password") -> bytes:
    """8 hex digits ``PAP2P1P0``-as-written (level first, then the password as shown on the
    meter) → wire bytes PA P0 P1 P2 (level, then the password low byte first)."""
    clean = text.strip()
    if len(clean) != 8 or any(c not in "0123456789abcdefABCDEF" for c in clean):
        raise FrameError(f"{what} must be 8 hex digits (level byte then 6 digits), got {text!r}")
    raw = bytes.fromhex(clean)
    return bytes((raw[0],)) + raw[1:][::-1]


def parse_operator(text: str) -> bytes:
    """8 hex digits of the operator code (操作者代码) as written → 4 bytes low first."""
    clean = text.strip()
    if len(clean) != 8 or any(c not in "0123456789abcdefABCDEF" for c in clean):
        raise FrameError(f"operator code must be 8 hex digits, got {text!r}")
    return bytes.fromhex(clean)[::-1]


def control_request(address: str, action: str, *, password: bytes, operator: bytes,
                    valid_until: datetime) -> Frame:
    """Trip / close (0x1C): password 4 + operator 4 + N1 + N2 (reserved) + valid-until 6 = 16 bytes.

    ``valid_until`` is the meter's local wall time after which it must ignore the command
    (命令有效截止时间), so a command delayed in a queue cannot cut a customer off hours later.
    """
    if action not in ACTION_CODES:
        raise FrameError(f"action must be trip or close, got {action!r}")
    if len(password) != 4 or len(operator) != 4:
        raise FrameError("password and operator code are 4 bytes each")
    data = password + operator + bytes((ACTION_CODES[action], 0x00)) + encode_datetime(valid_until)
    return Frame(address, REMOTE_CONTROL, data)


# ---------------------------------------------------------------------------- replies

def check_reply(request: Frame, reply: Frame) -> None:
    """Raise the typed error when ``reply`` does not answer ``request`` or is an error reply."""
    if not reply.is_reply or reply.function != request.function:
        raise UnexpectedReplyError(
            f"reply control 0x{reply.control:02X} does not answer request 0x{request.control:02X}")
    wildcard = "A" in request.address
    if not wildcard and reply.address != request.address:
        raise AddressMismatchError(f"asked meter {request.address}, reply came from {reply.address}")
    if reply.is_error:
        raise ErrorReply(reply.control, reply.data[0] if reply.data else None, address=reply.address)


def read_value(request: Frame, reply: Frame) -> bytes:
    """The value bytes of a read reply (after the echoed data identifier)."""
    check_reply(request, reply)
    if reply.data[:4] != request.data[:4]:
        got = reply.data[:4][::-1].hex().upper() if len(reply.data) >= 4 else reply.data.hex()
        raise UnexpectedReplyError(
            f"asked data identifier {request.data[:4][::-1].hex().upper()}, reply carries {got}")
    return reply.data[4:]


def energy_value(raw: bytes, *, what: str = "energy") -> Decimal:
    """A 4-byte XXXXXX.XX kWh energy register → Decimal kWh."""
    if len(raw) != 4:
        raise FrameError(f"{what}: expected 4 bytes XXXXXX.XX, got {len(raw)}")
    return bcd_to_decimal(raw, 2)


def energy_block(raw: bytes) -> list[Decimal]:
    """A block reply (…FF00): total then rate 1..n, 4 bytes each."""
    if not raw or len(raw) % 4:
        raise FrameError(f"energy block of {len(raw)} bytes is not a multiple of 4")
    return [energy_value(raw[i:i + 4]) for i in range(0, len(raw), 4)]
