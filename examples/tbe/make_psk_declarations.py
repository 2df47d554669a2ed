"""Regenerate the sample psk_declarations.csv (deterministic, NOT for real data).

The keys of PET cat/dog, DWELLING 001/999 and BEDROOMS <0/0/1 are the seed's worked-example keys;
the others are drawn from a seeded PRNG except the last value of each field, which balances the
field's keys to 1 mod bigN. For real declarations use
pldiffix.cellkey.tbe_config.generate_field_keys with its default (secrets.randbelow) and keep the
file secret.

    .venv/bin/python examples/tbe/make_psk_declarations.py > examples/tbe/psk_declarations.csv
"""

from __future__ import annotations

import csv
import random
import sys

from pldiffix.cellkey.tbe_config import generate_field_keys

BIG_N = 1766976779

FIELDS: dict[str, list[str]] = {
    "BEDROOMS": ["<0", "0", "1", "2", "3", "4", "5", "6", "7", "8", ""],
    "DWELLING": ["001", "002", "003", "999"],
    "PET": ["dog", "cat", "fish", ""],
    "AMOUNT": ["<0", "0-19.99", "20-39.99", "40-59.99", "60-79.99", "80-100.00", ">=100.01"],
}

SEED_KEYS: dict[str, dict[str, int]] = {
    "BEDROOMS": {"<0": 465455415, "0": 195061038, "1": 851514097},
    "DWELLING": {"001": 183810198, "999": 1664310739},
    "PET": {"dog": 782519905, "cat": 1609262920},
}


def main() -> None:
    rng = random.Random(20250101)
    writer = csv.writer(sys.stdout, lineterminator="\n")
    for field, labels in FIELDS.items():
        keys = generate_field_keys(BIG_N, labels, SEED_KEYS.get(field), rng.randrange)
        for label in labels:
            writer.writerow([field, label, keys[label]])


if __name__ == "__main__":
    main()
