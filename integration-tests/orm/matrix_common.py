"""What the Python ORM scenarios of the matrix share: the values written (one of every logical
type pgshroud protects), the check that they come back exactly, and the report format.

Each scenario runs a fixed list of operations, each on its own (a failure is recorded and the
next operation still runs), and prints one JSON line: {"orm": ..., "version": ...,
"ops": {name: {"ok": bool, "error": str}}}. integration-tests/tests/orm_matrix.rs reads it.
"""

import datetime
import decimal
import json
import re
import sys
import traceback
import uuid

UTC = datetime.timezone.utc


def row(n: int) -> dict:
    """Row `n`: distinct values in every protected column, with edge cases (extreme integers,
    non-ASCII text, a NUL byte, a leap day, microseconds, nested JSON)."""
    return {
        "label": f"row-{n}",
        "v_text": f"user{n}@example.com",
        "v_varchar": f"Zoë ✓ {n}",
        "v_int2": -32768 + n,
        "v_int4": 2147483647 - n,
        "v_int8": -9223372036854775808 + n,
        "v_bool": n % 2 == 0,
        "v_numeric": decimal.Decimal(f"{n}12.50"),
        "v_date": datetime.date(2024, 2, 29) + datetime.timedelta(days=n),
        "v_timestamp": datetime.datetime(2024, 2, 29, 13, 45, 30, 123456)
        + datetime.timedelta(hours=n),
        "v_timestamptz": datetime.datetime(2024, 2, 29, 13, 45, 30, 654321, tzinfo=UTC)
        + datetime.timedelta(minutes=n),
        "v_uuid": uuid.UUID(int=0x1234_5678_9ABC_DEF0_0FED_CBA9_8765_4321 + n),
        "v_bytea": bytes([0, 1, 254, 255, n % 256]),
        "v_jsonb": {"n": n, "list": [1, "two", None, 1.5], "nested": {"ü": True}},
    }


PROTECTED = [k for k in row(0) if k.startswith("v_")]

# Which rows each operation writes, so that no operation depends on another one's shape:
# single_insert writes SINGLE_ROWS one statement each (the filters, update and delete use
# them); bulk_insert writes BULK_ROWS in the ORM's bulk path and reads them back.
SINGLE_ROWS = (0, 4, 5, 6)
BULK_ROWS = (1, 2, 3)


def mismatches(expected: dict, got: dict, naive_as_utc: tuple = ()) -> list:
    """Columns whose value differs. `naive_as_utc` names columns an ORM hands back naive where
    it wrote aware (or the reverse) by its own design: those are compared as UTC instants."""
    bad = []
    for col in PROTECTED:
        want, have = expected[col], got.get(col)
        if col in naive_as_utc and isinstance(want, datetime.datetime) and have is not None:
            want, have = as_utc(want), as_utc(have)
        if isinstance(have, memoryview):
            have = bytes(have)
        if isinstance(have, str) and isinstance(want, dict):
            have = json.loads(have)
        # isinstance: drivers may return a subclass (asyncpg's UUID); a bool must stay a bool.
        if want is None and have is None:
            continue
        if want != have or not isinstance(have, type(want)):
            bad.append(f"{col}: wrote {want!r}, read {have!r}")
    return bad


def as_utc(value: datetime.datetime) -> datetime.datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# Ciphertext in an error's text: the bytea hex of a pgshroud envelope (format 2 starts 0x02)
# or any long run of hex digits.
CIPHERTEXT = re.compile(r"\\x0[12][0-9a-f]{16,}|[0-9a-f]{40,}", re.IGNORECASE)


def check_unique_error(sqlstate: str, message: str, detail: str, value: str) -> None:
    """The duplicate `value` of v_text is refused by PostgreSQL's unique index (23505), no
    ciphertext in the message or DETAIL, and the DETAIL names the key as the app role sees it
    (as PostgreSQL would without the proxy)."""
    if sqlstate != "23505":
        raise AssertionError(f"expected SQLSTATE 23505, got {sqlstate}: {message}")
    for text in (message, detail or ""):
        if CIPHERTEXT.search(text):
            raise AssertionError(f"ciphertext in the error: {text!r}")
    if detail != unique_detail(value):
        raise AssertionError(f"DETAIL {detail!r}, expected {unique_detail(value)!r}")


def unique_detail(value: str) -> str:
    return f"Key (v_text)=({value}) already exists."


class Report:
    def __init__(self, orm: str, version: str):
        self.orm, self.version, self.ops = orm, version, {}

    def run(self, name: str, fn, *args) -> None:
        """Runs one operation; an exception (or failed check) is recorded, not raised."""
        try:
            fn(*args)
            self.ops[name] = {"ok": True, "error": ""}
        except BaseException as e:  # noqa: BLE001 - every failure is a result here
            text = f"{type(e).__name__}: {e}".strip()
            self.ops[name] = {"ok": False, "error": text[:600]}
            traceback.print_exc(file=sys.stderr)

    def print(self) -> None:
        print(json.dumps({"orm": self.orm, "version": self.version, "ops": self.ops}))
