"""QR codes for the online ways to pay (扫码缴费), made with segno (pure Python, no imaging).

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
    """The payload's modules (error correction M), dark = 1, without the quiet zone (``BORDER``
    modules a side): what the printed bill draws (pdf._qr). Not cached: a bill run draws
    every payload once."""
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
    """segno's ``make_qr(payload, error="m", mask=MASK).matrix``, with the two pure-Python
    loops over every module (placing the bits, applying the mask: ~70 % of its ~3 ms a code)
    done by numpy; the data encoding and Reed–Solomon codewords are segno's
    (tests/billing/test_bill_pdf_batch.py compares the two, module for module)."""
    import numpy as np

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
    final = encoder.make_final_message(version, error, buff).getbits()
    bits = np.frombuffer(bytes(final), np.uint8)
    grid, rows, cols, mask = _layout(version)
    n = len(bits)
    if n > len(rows):
        raise ValueError(f"QR version {version}: {n} bits for {len(rows)} data modules")
    matrix = grid.copy()
    matrix[rows[:n], cols[:n]] = bits
    matrix ^= mask
    out = tuple(bytearray(r.tobytes()) for r in matrix)
    encoder.add_format_info(out, version, error, MASK)
    encoder.add_version_info(out, version)
    return out
