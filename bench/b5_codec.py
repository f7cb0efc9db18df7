"""B5: codec round trip of a five-field event with a UUID and an aware datetime.

The limit is msgspec used directly: one Encoder, one typed Decoder, built once. tidings'
``JsonCodec`` looks the decoder up per type and maps errors to DecodeError.
Run: ``python -m bench.b5_codec [--quick] [--json]``.
"""

from __future__ import annotations

import argparse
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import msgspec

from bench.common import Row, best_of, print_table
from tidings import JsonCodec


@dataclass(frozen=True, slots=True)
class Transferred:
    transfer_id: uuid.UUID
    at: datetime
    amount: Decimal
    account: str
    sequence: int


EVENT = Transferred(uuid.uuid4(), datetime.now(UTC), Decimal("120.50"), "acc-42", 7)


def run_limit(n: int) -> int:
    encode = msgspec.json.Encoder().encode
    decode = msgspec.json.Decoder(Transferred).decode
    for _ in range(n):
        assert decode(encode(EVENT)) is not None
    return n


def run_tidings(n: int) -> int:
    codec = JsonCodec()
    encode, decode = codec.encode, codec.decode
    for _ in range(n):
        assert decode(encode(EVENT), Transferred) is not None
    return n


def main(argv: list[str] | None = None) -> list[dict[str, object]]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    n = 50_000 if args.quick else 500_000
    assert JsonCodec().decode(JsonCodec().encode(EVENT), Transferred) == EVENT
    rows = [
        Row("limit: msgspec Encoder/Decoder", *best_of(lambda: run_limit(n))),
        Row("tidings JsonCodec", *best_of(lambda: run_tidings(n))),
    ]
    return print_table(
        f"B5: {n:,} codec round trips (target >= 0.80x)", rows, rows[0].name, args.json
    )


if __name__ == "__main__":
    main()
