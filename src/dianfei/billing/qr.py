"""QR codes for the online ways to pay (扫码缴费), made with segno (pure Python, no imaging);
the printed bill's (``qr_modules``) by a faster encoder here that gives segno's modules.

The payload is the payment page link with the account, bill and amount (documents.Links): the
customer scans it with Alipay or WeChat and the page creates the channel's order then.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

#: the quiet zone around a code, in modules (the standard's minimum)
BORDER = 4

#: a fixed data mask: any of the eight is valid and every decoder reads it; choosing the "best"
#: one scores all eight (three quarters of segno's time, ~5 ms a code in pure Python)
MASK = 0


@lru_cache(maxsize=64)
def qr_matrix(payload: str) -> tuple[tuple[bool, ...], ...]:
    """The modules of the payload's QR code (error correction M), dark = True, with the
    4-module quiet zone the standard asks for."""
    import segno

    code = segno.make_qr(payload, error="m", mask=MASK)
    return tuple(tuple(bool(v) for v in row) for row in code.matrix_iter(scale=1, border=BORDER))


@lru_cache(maxsize=4096)
def qr_svg(payload: str, scale: int = 3) -> str:
    """The QR code as inline SVG for the web bill (crisp at any zoom, no image file). Kept for
    the latest few thousand payloads: a customer opens the same bill (the same payment link)
    again and again. Drawn here from the modules, one rectangle per run of dark modules in a
    row: a third of the time of segno's general-purpose SVG writer, on every first view."""
    import segno

    matrix = segno.make_qr(payload, error="m", mask=MASK).matrix
    border = BORDER
    size = len(matrix) + 2 * border
    runs: list[str] = []
    for y, row in enumerate(matrix, start=border):
        x, n = 0, len(row)
        while x < n:
            if row[x]:
                start = x
                while x < n and row[x]:
                    x += 1
                runs.append(f"M{start + border} {y}h{x - start}v1h-{x - start}z")
            else:
                x += 1
    px = size * scale
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{px}" height="{px}" '
            f'viewBox="0 0 {size} {size}" class="segno" role="img" shape-rendering="crispEdges">'
            f'<rect width="{size}" height="{size}" fill="#fff"/>'
            f'<path fill="#000" d="{"".join(runs)}"/></svg>')


def qr_modules(payload: str) -> tuple[bytearray, ...]:
    """The payload's modules (error correction M, or higher as segno boosts it), dark = 1,
    without the quiet zone (``BORDER`` modules a side): what the printed bill draws (pdf._qr).
    Not cached: a bill run draws every payload once."""
    return _fast_matrix(payload)


def _segno() -> tuple[Any, Any]:
    """segno's encoder functions and constants: not its documented API (and untyped), so
    held as ``Any``; the lock file pins segno, and a test compares the result with
    ``segno.make_qr`` module for module."""
    from segno import consts, encoder

    return encoder, consts


@lru_cache(maxsize=8)
def _layout(version: int) -> tuple[Any, Any, Any, Any]:
    """What every code of a version shares: the function patterns (finder, alignment, timing),
    where the data bits go in placement order, and mask 0 over the encoding region — built
    with segno's own functions, so the placement is segno's."""
    import numpy as np

    encoder, _ = _segno()
    width = encoder.calc_matrix_size(version)
    template = encoder.make_matrix(width, width)
    encoder.add_finder_patterns(template, width, width)
    encoder.add_alignment_patterns(template, width, width)
    grid = np.array([list(r) for r in template], dtype=np.uint8)
    # the order of segno's add_codewords (ISO/IEC 18004:2015, 7.7.3): two-module columns from
    # the right, alternately upwards and downwards, skipping the vertical timing column
    rows, cols = [], []
    for right in range(width - 1, 0, -2):
        if right <= 6:
            right -= 1
        for vertical in range(width):
            for z in range(2):
                j = right - z
                upwards = ((right & 2) == 0) ^ (j < 6)
                i = (width - 1 - vertical) if upwards else vertical
                if grid[i, j] == 0x2:
                    rows.append(i)
                    cols.append(j)
    functions = grid.copy()
    functions[-8, 8] = 0x1  # the dark module: no data, never masked
    ii, jj = np.indices(grid.shape)
    mask = ((functions > 0x1) & ((ii + jj) % 2 == 0)).astype(np.uint8)
    return grid, np.array(rows), np.array(cols), mask


def _fast_matrix(payload: str) -> tuple[bytearray, ...]:
    """segno's ``make_qr(payload, error="m", mask=MASK).matrix``, with every pure-Python loop
    over bits done otherwise: the data codewords of a byte-mode payload (every payment link)
    from one integer (``_byte_codewords``), the Reed–Solomon codewords from lookup tables
    (``_final_bits``), placing the bits and the mask by numpy. The version and error level are
    chosen as segno chooses them (level M, raised to Q or H when the payload still fits the same
    version: segno's ``boost_error``), so the modules are segno's: tests compare the two module
    for module (tests/billing/test_bill_pdf_batch.py). ~0.1 ms a code instead of segno's ~0.6."""
    import numpy as np

    encoder, _ = _segno()
    coded = _byte_codewords(payload)
    if coded is None:  # numeric, alphanumeric or Kanji: segno's segment writer (not a link)
        coded = _segno_codewords(payload)
    version, error, codewords = coded
    grid, rows, cols, mask = _layout(version)
    bits = _final_bits(version, error, codewords)
    if len(bits) > len(rows):
        raise ValueError(f"QR version {version}: {len(bits)} bits for {len(rows)} data modules")
    matrix = grid.copy()
    # the modules left after the last codeword are the remainder bits (0): ISO/IEC 18004, 7.6
    data = np.zeros(len(rows), np.uint8)
    data[:len(bits)] = bits
    matrix[rows, cols] = data
    matrix ^= mask
    out = tuple(bytearray(r.tobytes()) for r in matrix)
    encoder.add_format_info(out, version, error, MASK)
    encoder.add_version_info(out, version)
    return out


def _segno_codewords(payload: str) -> tuple[int, int, bytes]:
    """The version, error level and data codewords of ``payload`` by segno's own encoder."""
    encoder, consts = _segno()
    segments = encoder.prepare_data(payload, None, None)
    error = encoder.normalize_errorlevel("m")
    version = encoder.find_version(segments, error, eci=False, micro=False)
    error = encoder.boost_error_level(version, error, segments, False)
    buff = encoder.Buffer()
    ver_range = encoder.version_range(version)
    for segment in segments:
        encoder.write_segment(buff, segment, None, ver_range, False)
    capacity = consts.SYMBOL_CAPACITY[version][error]
    encoder.write_terminator(buff, capacity, None, len(buff))
    encoder.write_padding_bits(buff, version, len(buff))
    encoder.write_pad_codewords(buff, version, capacity, len(buff))
    return version, error, bytes(buff.toints())[:capacity // 8]


def _byte_codewords(payload: str) -> tuple[int, int, bytes] | None:
    """What segno writes for a payload in byte mode (ISO/IEC 18004, 7.4.5), as segno writes it;
    None when segno would choose another mode. The bit stream is one Python integer: mode
    indicator, character count, the bytes, the terminator, padding to a whole byte, then the
    pad codewords 0xEC 0x11 alternately."""
    encoder, consts = _segno()
    # ISO 8859-1 if it can, else Shift JIS, else UTF-8, no ECI: segno's data_to_bytes
    data, n, _ = encoder.data_to_bytes(payload, None)
    if encoder.find_mode(data) != consts.MODE_BYTE:
        return None
    error = consts.ERROR_LEVEL_M
    for version in range(1, 41):
        count_bits = consts.CHAR_COUNT_INDICATOR_LENGTH[consts.MODE_BYTE][
            encoder.version_range(version)]
        length = 4 + count_bits + 8 * n
        if consts.SYMBOL_CAPACITY[version][error] >= length:
            break
    else:
        raise ValueError(f"QR: {n} bytes do not fit a QR code")
    # segno's boost_error: the highest level after M the same version still holds
    for level in (consts.ERROR_LEVEL_Q, consts.ERROR_LEVEL_H):
        if consts.SYMBOL_CAPACITY[version][level] < length:
            break
        error = level
    capacity = consts.SYMBOL_CAPACITY[version][error]
    value = (((consts.MODE_BYTE << count_bits) | n) << (8 * n)) | int.from_bytes(data, "big")
    terminator = min(capacity - length, 4)
    length += terminator
    # segno pads with 8 - length % 8 zero bits: a whole zero byte when the stream already ends
    # on a byte boundary (any decoder stops at the terminator before it)
    padding = 8 - length % 8
    length += padding
    value <<= terminator + padding
    out = value.to_bytes(length // 8, "big")
    pads = capacity // 8 - length // 8
    if pads > 0:
        out += (b"\xec\x11" * (pads // 2 + 1))[:pads]
    return version, error, out[:capacity // 8]


def _gf_tables() -> tuple[list[int], list[int]]:
    """exp and log of GF(256) with the QR code's polynomial x^8 + x^4 + x^3 + x^2 + 1."""
    exp, log = [0] * 512, [0] * 256
    x = 1
    for i in range(255):
        exp[i] = x
        log[x] = i
        x <<= 1
        if x & 0x100:
            x ^= 0x11D
    for i in range(255, 512):
        exp[i] = exp[i - 255]
    return exp, log


@lru_cache(maxsize=32)
def _rs_table(n_data: int, n_ec: int) -> Any:
    """The Reed–Solomon codewords of a block as a lookup: ``table[i, b]`` are the ``n_ec``
    error-correction codewords of a block whose only non-zero codeword is ``b`` at position
    ``i``. The codewords are the remainder of data(x)·x^n_ec divided by the generator
    polynomial, linear over GF(256): a block's codewords are the XOR of its positions' rows
    (``_final_bits``), one numpy gather instead of ~n_data × n_ec multiplications in Python.
    At most ~1 MB (version 40), built once per block size."""
    import numpy as np

    exp, log = _gf_tables()
    # the generator: the product of (x − α^i), i < n_ec, highest coefficient (1) first
    gen = [1]
    for i in range(n_ec):
        nxt = [*gen, 0]
        for j, c in enumerate(gen):
            if c:
                nxt[j + 1] ^= exp[log[c] + i]
        gen = nxt
    # x^n_ec mod gen for the last data codeword, then times x for each one before it
    units = np.zeros((n_data, n_ec), np.int64)
    rem = gen[1:]
    for i in range(n_data - 1, -1, -1):
        units[i] = rem
        top, rem = rem[0], [*rem[1:], 0]
        if top:
            rem = [r ^ exp[log[top] + log[g]] if g else r
                   for r, g in zip(rem, gen[1:], strict=True)]
    exp_a, log_a = np.array(exp, np.int64), np.array(log, np.int64)
    b = np.arange(256)
    table = exp_a[log_a[b][None, :, None] + log_a[units][:, None, :]]
    table[:, 0, :] = 0
    table[np.broadcast_to((units == 0)[:, None, :], table.shape)] = 0
    return table.astype(np.uint8)


@lru_cache(maxsize=64)
def _blocks(version: int, error: int) -> tuple[tuple[tuple[int, int, int], ...], Any, Any]:
    """How the data codewords of a version and level split into blocks — (first codeword,
    number of blocks, codewords a block) for each group — and the interleaving of the final
    message (ISO/IEC 18004, 7.6) as two permutations: data codewords, then error-correction
    codewords, the first of every block, then the second, and so on."""
    import numpy as np

    _, consts = _segno()
    groups: list[tuple[int, int, int]] = []
    data_order: list[int] = []
    ec_order: list[int] = []
    start = 0
    data_pos: list[list[int]] = []
    ec_pos: list[list[int]] = []
    ec_start = 0
    for info in consts.ECC[version][error]:
        n_ec = info.num_total - info.num_data
        groups.append((start, info.num_blocks, info.num_data))
        for _ in range(info.num_blocks):
            data_pos.append(list(range(start, start + info.num_data)))
            ec_pos.append(list(range(ec_start, ec_start + n_ec)))
            start += info.num_data
            ec_start += n_ec
    for positions, order in ((data_pos, data_order), (ec_pos, ec_order)):
        for i in range(max(len(p) for p in positions)):
            order.extend(p[i] for p in positions if i < len(p))
    return tuple(groups), np.array(data_order), np.array(ec_order)


def _final_bits(version: int, error: int, codewords: bytes) -> Any:
    """The final message's bits (segno's ``make_final_message``): the data codewords and each
    block's Reed–Solomon codewords, interleaved, as a numpy array of 0/1."""
    import numpy as np

    _, consts = _segno()
    groups, data_order, ec_order = _blocks(version, error)
    info = consts.ECC[version][error][0]
    n_ec = info.num_total - info.num_data
    data = np.frombuffer(codewords, np.uint8)
    ecs = []
    for start, count, n_data in groups:
        table = _rs_table(n_data, n_ec)
        block = data[start:start + count * n_data].reshape(count, n_data)
        ecs.append(np.bitwise_xor.reduce(table[np.arange(n_data), block], axis=1))
    ec = np.concatenate(ecs).reshape(-1)
    return np.unpackbits(np.concatenate([data[data_order], ec[ec_order]]))
