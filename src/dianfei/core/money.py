"""Money: integer fen in storage, ``Decimal`` in code, half-up rounding in one place.

Chinese electricity bills round every line to the fen (0.01 yuan) half-up; totals are the sum of
the rounded lines. Unit prices carry four decimal places (e.g. 0.5380 yuan/kWh). Quantities of
energy carry at most two decimals (a register shows e.g. 123456.78 kWh), so the columnar engine can
hold them as integer centi-kWh and compute every amount exactly in integers.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from dianfei.core.errors import ValidationError

FEN = Decimal("0.01")
PRICE_QUANTUM = Decimal("0.0001")
QTY_QUANTUM = Decimal("0.01")

#: integer scale of a unit price (1 unit = 0.0001 yuan)
PRICE_SCALE = 10_000
#: integer scale of a quantity (1 unit = 0.01 kWh, kVA, kW ...)
QTY_SCALE = 100


def round_fen(amount: Decimal) -> Decimal:
    """Round a yuan amount half-up (away from zero on .5) to the fen."""
    return amount.quantize(FEN, rounding=ROUND_HALF_UP)


def to_fen(amount: Decimal) -> int:
    """Yuan (Decimal) → integer fen, rounding half-up."""
    return int(round_fen(amount) * 100)


def from_fen(fen: int) -> Decimal:
    """Integer fen → yuan as a Decimal with exactly two places."""
    return (Decimal(fen) / 100).quantize(FEN)


def fmt_yuan(fen: int) -> str:
    """Integer fen → the canonical output string: yuan with exactly two places ("123.45")."""
    sign = "-" if fen < 0 else ""
    whole, part = divmod(abs(fen), 100)
    return f"{sign}{whole}.{part:02d}"


def fmt_price(units: int) -> str:
    """Integer price units (0.0001 yuan) → a string with exactly four places ("0.5380")."""
    sign = "-" if units < 0 else ""
    whole, part = divmod(abs(units), PRICE_SCALE)
    return f"{sign}{whole}.{part:04d}"


def fmt_qty(units: int) -> str:
    """Integer quantity units (0.01) → a decimal string with two places ("123.40")."""
    sign = "-" if units < 0 else ""
    whole, part = divmod(abs(units), QTY_SCALE)
    return f"{sign}{whole}.{part:02d}"


def div_round_half_up(numerator: int, denominator: int) -> int:
    """Integer division rounded half-up (away from zero on ties), as Decimal ROUND_HALF_UP does."""
    if denominator <= 0:
        raise ValueError("denominator must be positive")
    q, r = divmod(abs(numerator), denominator)
    if 2 * r >= denominator:
        q += 1
    return q if numerator >= 0 else -q


def line_amount_fen(qty_units: int, price_units: int) -> int:
    """Amount of one bill line in fen: quantity (0.01) × unit price (0.0001), rounded half-up.

    qty × price is in 1e-6 yuan; one fen is 1e-2 yuan, hence the division by 10^4.
    """
    return div_round_half_up(qty_units * price_units, QTY_SCALE * PRICE_SCALE // 100)


def parse_decimal(text: str | int | Decimal, what: str, *, places: int | None = None,
                  allow_negative: bool = True) -> Decimal:
    """Parse a decimal from user or file input with a clear error naming ``what``.

    Floats are refused on purpose: a binary float cannot carry a money amount exactly.
    """
    if isinstance(text, float):  # pragma: no cover - defensive
        raise ValidationError(f"{what}: floats are not accepted for money or quantities, got {text!r}")
    try:
        value = Decimal(str(text).strip())
    except (InvalidOperation, ValueError):
        raise ValidationError(f"{what}: not a decimal number: {text!r}") from None
    if not value.is_finite():
        raise ValidationError(f"{what}: not a finite number: {text!r}")
    if not allow_negative and value < 0:
        raise ValidationError(f"{what}: must not be negative, got {text}")
    if places is not None:
        exponent = value.as_tuple().exponent
        if isinstance(exponent, int) and exponent < -places and value != value.quantize(
            Decimal(1).scaleb(-places)
        ):
            raise ValidationError(f"{what}: at most {places} decimal places, got {text}")
    return value


def price_units(value: Decimal) -> int:
    """A unit price as integer units of 0.0001 yuan (the price must already have ≤ 4 places)."""
    return int(value.quantize(PRICE_QUANTUM) * PRICE_SCALE)


def qty_units(value: Decimal) -> int:
    """A quantity as integer units of 0.01 (the quantity must already have ≤ 2 places)."""
    return int(value.quantize(QTY_QUANTUM) * QTY_SCALE)
