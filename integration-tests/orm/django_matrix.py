"""The ORM matrix scenario for Django 5.2 (its PostgreSQL backend on psycopg 3, default
settings: client-side parameter binding, USE_TZ = True). Connection from the PG* variables.

Django's DateTimeField is a timestamptz by design: a naive datetime written to the logical
`timestamp` column is taken as UTC, and read back naive, so that one column is compared as a
UTC instant.
"""

import os

import django
from django.conf import settings

settings.configure(
    DATABASES={
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ["PGDATABASE"],
            "USER": os.environ["PGUSER"],
            "PASSWORD": os.environ["PGPASSWORD"],
            "HOST": os.environ["PGHOST"],
            "PORT": os.environ["PGPORT"],
            "OPTIONS": {"sslmode": "disable"},
        }
    },
    INSTALLED_APPS=[],
    USE_TZ=True,
    TIME_ZONE="UTC",
)
django.setup()

from django.db import IntegrityError, connection, models, transaction  # noqa: E402

from matrix_common import (BULK_ROWS, PROTECTED, SINGLE_ROWS, Report,  # noqa: E402
                           check_unique_error, mismatches, row)


class ItemFields(models.Model):
    """The columns of orm_items as the application sees them (PostgreSQL stores bytea)."""

    label = models.TextField()
    v_text = models.TextField(unique=True)
    v_varchar = models.CharField(max_length=50)
    v_int2 = models.SmallIntegerField()
    v_int4 = models.IntegerField()
    v_int8 = models.BigIntegerField()
    v_bool = models.BooleanField()
    v_numeric = models.DecimalField(max_digits=12, decimal_places=2)
    v_date = models.DateField()
    v_timestamp = models.DateTimeField()
    v_timestamptz = models.DateTimeField()
    v_uuid = models.UUIDField()
    v_jsonb = models.JSONField()

    class Meta:
        abstract = True


class Item(ItemFields):
    """orm_items with every column; the table is created by the test."""

    v_bytea = models.BinaryField()

    class Meta:
        app_label = "orm_matrix"
        db_table = "orm_items"
        managed = False


class ItemWithoutBinary(ItemFields):
    """The same table through a model without a BinaryField (its v_bytea stays NULL): Django's
    bulk_create takes its UNNEST form only then."""

    class Meta:
        app_label = "orm_matrix"
        db_table = "orm_items"
        managed = False


def values(item) -> dict:
    return {col: getattr(item, col, None) for col in PROTECTED}


def assert_same(expected: dict, item) -> None:
    bad = mismatches(expected, values(item), naive_as_utc=("v_timestamp",))
    if bad:
        raise AssertionError("; ".join(bad))


def django_row(n: int) -> dict:
    """row(n), with the naive timestamp made aware (UTC) as Django expects under USE_TZ."""
    r = row(n)
    r["v_timestamp"] = r["v_timestamp"].replace(tzinfo=row(0)["v_timestamptz"].tzinfo)
    return r


def scenario(report: Report) -> None:
    state = {}  # row number -> id
    a = django_row(0)  # row 0 as it is now (update changes it)

    def single_insert():
        for n in SINGLE_ROWS:
            state[n] = Item.objects.create(**django_row(n)).id

    def read_by_key():
        for n in SINGLE_ROWS:
            assert_same(django_row(n), Item.objects.get(pk=state[n]))

    def bulk_insert():
        # A BinaryField has its own placeholder, so Django 5.2 falls back from UNNEST to one
        # multi-row INSERT ... VALUES (...), (...) RETURNING for this model.
        Item.objects.bulk_create([Item(**django_row(n)) for n in BULK_ROWS])
        labels = [f"row-{n}" for n in BULK_ROWS]
        got = list(Item.objects.filter(label__in=labels).order_by("id"))
        if [i.label for i in got] != labels:
            raise AssertionError(f"read back {[i.label for i in got]}")
        for n, item in zip(BULK_ROWS, got):
            assert_same(django_row(n), item)

    def bulk_insert_unnest():
        # Without a BinaryField (most models), Django 5.2's bulk_create on PostgreSQL is
        # INSERT ... SELECT * FROM UNNEST((%s)::text[], (%s)::smallint[], ...) RETURNING id.
        rows = [django_row(n) for n in (20, 21)]
        for r in rows:
            del r["v_bytea"]
        ItemWithoutBinary.objects.bulk_create([ItemWithoutBinary(**r) for r in rows])
        got = list(ItemWithoutBinary.objects.filter(label__in=["row-20", "row-21"])
                   .order_by("id"))
        if [i.label for i in got] != ["row-20", "row-21"]:
            raise AssertionError(f"read back {[i.label for i in got]}")
        for r, item in zip(rows, got):
            bad = mismatches(dict(r, v_bytea=None), dict(values(item), v_bytea=None),
                             naive_as_utc=("v_timestamp",))
            if bad:
                raise AssertionError("; ".join(bad))

    def filter_eq():
        found = list(Item.objects.filter(v_text=a["v_text"]).values_list("id", flat=True))
        if found != [state[0]]:
            raise AssertionError(f"v_text = found {found}")
        r = django_row(5)
        for col in [c for c in PROTECTED if c != "v_bool"]:
            ids = list(Item.objects.filter(**{col: r[col]}).values_list("id", flat=True))
            if state[5] not in ids:
                raise AssertionError(f"{col} = found {ids}")

    def filter_bool():
        # Django renders filter(flag=True) as WHERE "flag" and filter(flag=False) as
        # WHERE NOT "flag": a boolean condition, not a comparison.
        for flag in (True, False):
            ids = set(Item.objects.filter(v_bool=flag).values_list("id", flat=True))
            want = {state[n] for n in SINGLE_ROWS if row(n)["v_bool"] == flag}
            if not want <= ids:
                raise AssertionError(f"v_bool = {flag} found {ids}")

    def filter_in():
        wanted = [row(4)["v_text"], row(6)["v_text"], "nobody@example.com"]
        labels = list(Item.objects.filter(v_text__in=wanted).order_by("id")
                      .values_list("label", flat=True))
        if labels != ["row-4", "row-6"]:
            raise AssertionError(f"v_text IN found {labels}")
        labels = list(Item.objects.filter(v_int4__in=[row(5)["v_int4"], row(6)["v_int4"]])
                      .order_by("id").values_list("label", flat=True))
        if labels != ["row-5", "row-6"]:
            raise AssertionError(f"v_int4 IN found {labels}")

    def update():
        item = Item.objects.get(pk=state[0])
        item.v_text, item.v_jsonb = "changed@example.com", {"changed": [1]}
        item.save()  # UPDATE of every column by primary key
        Item.objects.filter(v_text="changed@example.com").update(v_int4=7)
        a.update(v_text="changed@example.com", v_int4=7, v_jsonb={"changed": [1]})
        assert_same(a, Item.objects.get(pk=state[0]))

    def unique_violation():
        try:
            with transaction.atomic():
                Item.objects.create(**dict(django_row(9), v_text=a["v_text"]))
        except IntegrityError as e:
            cause = e.__cause__
            check_unique_error(cause.sqlstate, cause.diag.message_primary or "",
                               cause.diag.message_detail or "", a["v_text"])
        else:
            raise AssertionError("the duplicate was accepted")
        if Item.objects.filter(v_text=a["v_text"]).count() != 1:
            raise AssertionError("after the error the row count is wrong")

    def delete_rows():
        Item.objects.get(v_text=row(5)["v_text"]).delete()
        Item.objects.filter(v_int8=row(6)["v_int8"]).delete()
        left = list(Item.objects.filter(label__in=["row-5", "row-6"]))
        if left:
            raise AssertionError(f"still there: {left}")

    def rollback():
        try:
            with transaction.atomic():
                Item.objects.create(**django_row(7))
                raise RuntimeError("roll back")
        except RuntimeError:
            pass
        if Item.objects.filter(v_text=row(7)["v_text"]).exists():
            raise AssertionError("the rolled back row is there")

    def numeric_scale():
        # DecimalField(12, 2) quantizes in Python, so Django itself hides a lost scale: read the
        # value as the driver returns it.
        with connection.cursor() as cursor:
            cursor.execute("SELECT v_numeric FROM orm_items WHERE id = %s", [state[0]])
            value = cursor.fetchone()[0]
        if str(value) != "12.50":
            raise AssertionError(f"wrote Decimal('12.50'), read {value!r}")

    def next_statement():
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            if cursor.fetchone()[0] != 1:
                raise AssertionError("SELECT 1")

    for name, fn in [("single_insert", single_insert), ("read_by_key", read_by_key),
                     ("bulk_insert", bulk_insert), ("bulk_insert_unnest", bulk_insert_unnest),
                     ("filter_eq", filter_eq), ("filter_bool", filter_bool),
                     ("filter_in", filter_in), ("update", update),
                     ("unique_violation", unique_violation), ("delete", delete_rows),
                     ("rollback", rollback), ("numeric_scale", numeric_scale),
                     ("next_statement", next_statement)]:
        report.run(name, fn)


if __name__ == "__main__":
    report = Report("django", django.get_version())
    scenario(report)
    report.print()
