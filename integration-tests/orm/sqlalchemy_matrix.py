"""The ORM matrix scenario for SQLAlchemy 2 (ORM session, default settings) on psycopg 3 or
asyncpg: `python3 sqlalchemy_matrix.py psycopg|asyncpg`. Connection from the PG* variables.

The same synchronous scenario runs for both drivers: with asyncpg it runs inside
AsyncSession.run_sync, so every statement goes through the asyncpg dialect.
"""

import asyncio
import os
import sys

import sqlalchemy
from sqlalchemy import (BigInteger, Boolean, Date, DateTime, Integer, LargeBinary, Numeric,
                        SmallInteger, String, Text, Uuid, delete, func, insert, select)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from matrix_common import (BULK_ROWS, PROTECTED, SINGLE_ROWS, Report, check_unique_error,
                           mismatches, row)


class Base(DeclarativeBase):
    pass


class Item(Base):
    """orm_items as the application sees it: logical types (PostgreSQL stores bytea)."""

    __tablename__ = "orm_items"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    label: Mapped[str] = mapped_column(Text)
    v_text: Mapped[str] = mapped_column(Text, unique=True)
    v_varchar: Mapped[str] = mapped_column(String(50))
    v_int2: Mapped[int] = mapped_column(SmallInteger)
    v_int4: Mapped[int] = mapped_column(Integer)
    v_int8: Mapped[int] = mapped_column(BigInteger)
    v_bool: Mapped[bool] = mapped_column(Boolean)
    v_numeric = mapped_column(Numeric(12, 2, asdecimal=True))
    v_date = mapped_column(Date)
    v_timestamp = mapped_column(DateTime(timezone=False))
    v_timestamptz = mapped_column(DateTime(timezone=True))
    v_uuid = mapped_column(Uuid)
    v_bytea = mapped_column(LargeBinary)
    v_jsonb = mapped_column(JSONB)


def values(item: Item) -> dict:
    return {col: getattr(item, col) for col in PROTECTED}


def assert_same(expected: dict, item) -> None:
    if item is None:
        raise AssertionError("row not found")
    bad = mismatches(expected, values(item))
    if bad:
        raise AssertionError("; ".join(bad))


def error_facts(e: IntegrityError) -> tuple:
    """(SQLSTATE, message, DETAIL) from psycopg's or asyncpg's exception under SQLAlchemy's."""
    orig = e.orig
    if hasattr(orig, "diag"):  # psycopg
        return orig.sqlstate, orig.diag.message_primary or "", orig.diag.message_detail or ""
    cause = orig.__cause__  # asyncpg's own exception behind the dialect's adapter
    return orig.sqlstate, getattr(cause, "message", str(orig)), getattr(cause, "detail", "") or ""


def scenario(session: Session, report: Report) -> None:
    state = {}  # row number -> id
    a = row(0)  # row 0 as it is now (update changes it)

    def single_insert():
        for n in SINGLE_ROWS:
            item = Item(**row(n))
            session.add(item)
            session.commit()
            state[n] = item.id

    def read_by_key():
        session.expire_all()
        for n in SINGLE_ROWS:
            assert_same(row(n), session.get(Item, state[n]))

    def read_labels(labels):
        session.expire_all()
        got = session.scalars(select(Item).where(Item.label.in_(labels)).order_by(Item.id)).all()
        if [i.label for i in got] != labels:
            raise AssertionError(f"read back {[i.label for i in got]}")
        for item in got:
            assert_same(row(int(item.label.split("-")[1])), item)

    def bulk_insert():
        # add_all with server-generated keys: SQLAlchemy's "insertmanyvalues" batches the rows
        # into INSERT ... SELECT ... FROM (VALUES ...) ORDER BY sen_counter RETURNING id.
        session.add_all([Item(**row(n)) for n in BULK_ROWS])
        session.commit()
        read_labels([f"row-{n}" for n in BULK_ROWS])

    def bulk_insert_executemany():
        # insert(Item) with a list of parameter sets and no RETURNING: one multi-row VALUES.
        session.execute(insert(Item), [row(n) for n in (10, 11)])
        session.commit()
        read_labels(["row-10", "row-11"])

    def filter_eq():
        found = session.scalars(select(Item.id).where(Item.v_text == a["v_text"])).all()
        if found != [state[0]]:
            raise AssertionError(f"v_text = found {found}")
        for col in [c for c in PROTECTED if c != "v_bool"]:
            ids = session.scalars(select(Item.id).where(getattr(Item, col) == row(5)[col])).all()
            if state[5] not in ids:
                raise AssertionError(f"{col} = found {ids}")

    def filter_bool():
        # The ORM's spelling of a boolean filter: `col == True` renders `col = true`.
        for flag in (True, False):
            ids = set(session.scalars(select(Item.id).where(Item.v_bool == flag)).all())
            want = {state[n] for n in SINGLE_ROWS if row(n)["v_bool"] == flag}
            if not want <= ids:
                raise AssertionError(f"v_bool = {flag} found {ids}")

    def filter_in():
        wanted = [row(4)["v_text"], row(6)["v_text"], "nobody@example.com"]
        labels = session.scalars(select(Item.label).where(Item.v_text.in_(wanted))
                                 .order_by(Item.id)).all()
        if labels != ["row-4", "row-6"]:
            raise AssertionError(f"v_text IN found {labels}")
        labels = session.scalars(select(Item.label).where(
            Item.v_int4.in_([row(5)["v_int4"], row(6)["v_int4"]])).order_by(Item.id)).all()
        if labels != ["row-5", "row-6"]:
            raise AssertionError(f"v_int4 IN found {labels}")

    def update():
        item = session.get(Item, state[0])
        item.v_text, item.v_int4, item.v_jsonb = "changed@example.com", 7, {"changed": [1]}
        session.commit()
        a.update(v_text="changed@example.com", v_int4=7, v_jsonb={"changed": [1]})
        session.expire_all()
        assert_same(a, session.get(Item, state[0]))

    def unique_violation():
        session.add(Item(**dict(row(9), v_text=a["v_text"])))
        try:
            session.commit()
        except IntegrityError as e:
            session.rollback()
            check_unique_error(*error_facts(e), a["v_text"])
        else:
            raise AssertionError("the duplicate was accepted")
        if session.scalar(select(func.count()).select_from(Item)
                          .where(Item.v_text == a["v_text"])) != 1:
            raise AssertionError("after the error the row count is wrong")

    def delete_rows():
        session.delete(session.scalars(select(Item).where(Item.v_text == row(5)["v_text"])).one())
        session.execute(delete(Item).where(Item.v_int8 == row(6)["v_int8"]))
        session.commit()
        left = session.scalars(select(Item.label).where(Item.label.in_(["row-5", "row-6"]))).all()
        if left:
            raise AssertionError(f"still there: {left}")

    def rollback():
        session.add(Item(**row(7)))
        session.flush()
        session.rollback()
        if session.scalars(select(Item.id).where(Item.v_text == row(7)["v_text"])).all():
            raise AssertionError("the rolled back row is there")

    def numeric_scale():
        # numeric(12,2) as PostgreSQL would return it: the scale is part of the value's text.
        session.expire_all()
        value = session.get(Item, state[0]).v_numeric
        if str(value) != "12.50":
            raise AssertionError(f"wrote Decimal('12.50'), read {value!r}")

    def next_statement():
        if session.scalar(select(sqlalchemy.literal(1))) != 1:
            raise AssertionError("SELECT 1")

    for name, fn in [("single_insert", single_insert), ("read_by_key", read_by_key),
                     ("bulk_insert", bulk_insert),
                     ("bulk_insert_executemany", bulk_insert_executemany),
                     ("filter_eq", filter_eq), ("filter_bool", filter_bool),
                     ("filter_in", filter_in), ("update", update),
                     ("unique_violation", unique_violation), ("delete", delete_rows),
                     ("rollback", rollback), ("numeric_scale", numeric_scale),
                     ("next_statement", next_statement)]:
        report.run(name, fn)
        if session.in_transaction() and not report.ops[name]["ok"]:
            session.rollback()


def url(driver: str) -> str:
    env = os.environ
    return sqlalchemy.URL.create(
        f"postgresql+{driver}", username=env["PGUSER"], password=env["PGPASSWORD"],
        host=env["PGHOST"], port=int(env["PGPORT"]), database=env["PGDATABASE"])


def main() -> None:
    driver = sys.argv[1]
    report = Report(f"sqlalchemy-{driver}", sqlalchemy.__version__)
    # One pooled connection, so every operation (and the statement after an error) uses the
    # same session with the proxy.
    if driver == "psycopg":
        engine = sqlalchemy.create_engine(url(driver), pool_size=1, max_overflow=0)
        with Session(engine) as session:
            scenario(session, report)
        engine.dispose()
    else:
        from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

        async def run():
            engine = create_async_engine(url(driver), pool_size=1, max_overflow=0)
            async with AsyncSession(engine) as session:
                await session.run_sync(scenario, report)
            await engine.dispose()

        asyncio.run(run())
    report.print()


if __name__ == "__main__":
    main()
