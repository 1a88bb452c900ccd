"""Runs a fixed scenario through psycopg 3 (text and binary formats) and prints one JSON line
with what it saw. Connection settings come from the standard PG* environment variables."""
import json
import os

import psycopg


def main():
    table = os.environ.get("TABLE", "driver_check")
    out = {}
    with psycopg.connect(autocommit=True) as c:
        if os.environ.get("PROTECTED") == "1":
            c.execute(f"INSERT INTO {table} (email, age, note) VALUES (%s, %s, %s)",
                      ("py@example.com", 44, "from python"))
            for binary in (False, True):
                row = c.execute(f"SELECT email, age, note FROM {table} WHERE email = %s",
                                ("py@example.com",), binary=binary).fetchone()
                out["binary" if binary else "text"] = list(row)
            # Binary parameters (%b) and a batch through executemany.
            row = c.execute(f"SELECT age FROM {table} WHERE email = %b", ("py@example.com",)).fetchone()
            out["binary_param"] = row[0]
            with c.cursor() as cur:
                cur.executemany(f"INSERT INTO {table} (email, age) VALUES (%s, %s)",
                                [(f"batch{i}@example.com", i) for i in range(500)])
            out["any"] = c.execute(f"SELECT count(*) FROM {table} WHERE email = ANY(%s)",
                                   (["py@example.com", "batch7@example.com", "nobody"],)).fetchone()[0]
            # py (44), batch1, batch2 and batch44.
            out["in"] = c.execute(f"SELECT count(*) FROM {table} WHERE age IN (%s, %s, %s)",
                                  (1, 2, 44)).fetchone()[0]
            try:
                c.execute(f"SELECT * FROM {table} WHERE email LIKE %s", ("p%",))
                out["like"] = "accepted"
            except psycopg.Error as e:
                out["like"] = e.sqlstate
            # A refusal inside a transaction aborts it; nothing of it is written.
            c.autocommit = False
            try:
                c.execute(f"INSERT INTO {table} (email) VALUES (%s)", ("tx@example.com",))
                c.execute(f"SELECT * FROM {table} WHERE age > %s", (3,))
                out["tx"] = "accepted"
            except psycopg.Error as e:
                out["tx"] = e.sqlstate
                c.rollback()
            c.autocommit = True
            out["tx_rows"] = c.execute(f"SELECT count(*) FROM {table} WHERE email = %s",
                                       ("tx@example.com",)).fetchone()[0]
        else:
            for binary in (False, True):
                row = c.execute("SELECT %s::int8 * 2, %s::text", (21, "x"), binary=binary).fetchone()
                out["binary" if binary else "text"] = list(row)
        try:
            c.execute("SELECT 1/0")
        except psycopg.Error as e:
            out["error"] = e.sqlstate
        out["after"] = c.execute("SELECT 1").fetchone()[0]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
