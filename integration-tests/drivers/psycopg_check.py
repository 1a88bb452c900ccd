"""Runs a fixed scenario through psycopg 3 (text and binary formats) and prints one JSON line
with what it saw. Connection settings come from the standard PG* environment variables."""
import json
import os
import threading

import psycopg


def backend_pid():
    """The pid in BackendKeyData is the backend's: pg_backend_pid(), notifications, cancel and
    pg_terminate_backend all agree with it."""
    out = {}
    with psycopg.connect(autocommit=True) as c, psycopg.connect(autocommit=True) as other:
        pid = c.info.backend_pid
        out["pid_is_backend_pid"] = pid == c.execute("SELECT pg_backend_pid()").fetchone()[0]
        out["pid_in_activity"] = other.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()[0]
        c.execute("LISTEN compat_pid")
        other.execute("NOTIFY compat_pid, 'hi'")
        c.execute("NOTIFY compat_pid, 'self'")
        seen = [(n.payload, n.pid) for n in c.notifies(timeout=30, stop_after=2)]
        out["notify_pids"] = [[p, n == (other.info.backend_pid if p == "hi" else pid)]
                              for p, n in sorted(seen)]

        def cancel_when_running():
            # Cancel only once the sleep runs (a cancel of an idle backend does nothing).
            while not other.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid = %s AND state = 'active'"
                    " AND query LIKE 'SELECT pg_sleep%%'", (pid,)).fetchone()[0]:
                pass
            c.cancel_safe()

        t = threading.Thread(target=cancel_when_running)
        t.start()
        try:
            c.execute("SELECT pg_sleep(60)")
            out["cancel"] = "not cancelled"
        except psycopg.Error as e:
            out["cancel"] = e.sqlstate
        t.join()
        out["after_cancel"] = c.execute("SELECT 1").fetchone()[0]
        out["terminated"] = other.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0]
        while other.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s",
                            (pid,)).fetchone()[0]:
            pass
        try:
            c.execute("SELECT 1")
            out["after_terminate"] = "still open"
        except psycopg.Error as e:
            out["after_terminate"] = e.sqlstate
        out["closed"] = c.closed
    print(json.dumps(out))


def named_cursors():
    """Server-side cursors (conn.cursor("name")): DECLARE, then Describe of the cursor's
    portal, then FETCH, in text and binary, scrollable and WITH HOLD; each outcome is the rows
    seen or the SQLSTATE, followed by a plain statement on the same connection."""
    query = os.environ["CURSOR_QUERY"]

    def rows(c, name, **options):
        try:
            with c.cursor(name, **options) as cur:
                cur.execute(query)
                first = cur.fetchmany(1)
                if options.get("scrollable"):
                    cur.scroll(0, mode="absolute")
                rest = cur.fetchall()
                if options.get("withhold"):
                    c.commit()
                return [[v if v is None or isinstance(v, (int, str)) else str(v) for v in r]
                        for r in first + rest]
        except psycopg.Error as e:
            c.rollback()
            return e.sqlstate

    out = {}
    with psycopg.connect() as c:
        out["text"] = rows(c, "text_cur")
        out["binary"] = rows(c, "binary_cur", binary=True)
        out["scrollable"] = rows(c, "scroll_cur", scrollable=True)
        out["withhold"] = rows(c, "hold_cur", withhold=True)
        out["after"] = c.execute("SELECT 1").fetchone()[0]
    with psycopg.connect(autocommit=True) as c:
        out["autocommit_withhold"] = rows(c, "auto_cur", withhold=True)
        out["autocommit_after"] = c.execute("SELECT 1").fetchone()[0]
    print(json.dumps(out))


def main():
    if os.environ.get("SCENARIO") == "backend_pid":
        return backend_pid()
    if os.environ.get("SCENARIO") == "named_cursors":
        return named_cursors()
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
