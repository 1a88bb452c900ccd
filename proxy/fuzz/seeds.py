#!/usr/bin/env python3
"""Writes the committed seed corpora (corpus/<target>/): realistic messages, statements, COPY
data, rules files and values. Rerun after changing the fixture in src/lib.rs; fuzzing itself
never writes here (run.sh gives libFuzzer a scratch corpus under target/).

Needs the Python `cryptography` package (for the sealed values the session seeds carry).
"""

import hashlib
import os
import re
import shutil
import struct

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
MASTER_KEY = bytes(range(32))  # src/lib.rs key_ring()
CUSTOMERS_OID, ORDERS_OID, LEADS_OID = 16384, 16390, 16400
USERS = ["app", "support", "analyst", "dba", "auditor"]


# ---- wire helpers ----------------------------------------------------------------------

def msg(kind, body=b""):
    return kind + struct.pack(">i", len(body) + 4) + body


def cstr(s):
    return (s.encode() if isinstance(s, str) else s) + b"\0"


def startup(params, version=3 << 16):
    body = struct.pack(">I", version) + b"".join(cstr(k) + cstr(v) for k, v in params) + b"\0"
    return struct.pack(">I", len(body) + 4) + body


def query(sql):
    return msg(b"Q", cstr(sql))


def parse(name, sql, types=()):
    return msg(b"P", cstr(name) + cstr(sql) + struct.pack(">h", len(types))
               + b"".join(struct.pack(">I", t) for t in types))


def value(v):
    return struct.pack(">i", -1) if v is None else struct.pack(">i", len(v)) + v


def bind(portal, stmt, params, formats=(), result_formats=()):
    return msg(b"B", cstr(portal) + cstr(stmt)
               + struct.pack(">h", len(formats)) + b"".join(struct.pack(">h", f) for f in formats)
               + struct.pack(">h", len(params)) + b"".join(value(p) for p in params)
               + struct.pack(">h", len(result_formats))
               + b"".join(struct.pack(">h", f) for f in result_formats))


def describe(kind, name):
    return msg(b"D", kind + cstr(name))


def execute(portal="", max_rows=0):
    return msg(b"E", cstr(portal) + struct.pack(">i", max_rows))


SYNC = msg(b"S")


def row_description(fields):
    """fields: (name, table_oid, attnum, type_oid)"""
    body = struct.pack(">h", len(fields))
    for name, oid, attnum, type_oid in fields:
        body += cstr(name) + struct.pack(">IhIhih", oid, attnum, type_oid, -1, -1, 0)
    return msg(b"T", body)


def data_row(values):
    return msg(b"D", struct.pack(">h", len(values)) + b"".join(value(v) for v in values))


def error(fields):
    return msg(b"E", b"".join(code + cstr(v) for code, v in fields) + b"\0")


def complete(tag):
    return msg(b"C", cstr(tag))


def ready(status=b"I"):
    return msg(b"Z", status)


# ---- sealing (crypto/FORMAT.md) --------------------------------------------------------

def seal(context, canonical):
    key = HKDF(algorithm=hashes.SHA256(), length=64, salt=None,
               info=b"pgshroud/v1/column-key/" + context.encode()).derive(MASTER_KEY)
    tag = hashlib.sha256(b"pgshroud/v2/context-tag/" + context.encode()).digest()[:4]
    return b"\x02" + struct.pack(">I", 1) + tag + AESSIV(key).encrypt(canonical, [context.encode()])


def sealed_text(context, canonical):
    """As the server sends bytea in text format."""
    return b"\\x" + seal(context, canonical).hex().encode()


# ---- corpora ---------------------------------------------------------------------------

def client_messages():
    hello = startup([("user", "app"), ("database", "shop"), ("application_name", "psql")])
    return {
        "simple_query": hello + query("SELECT id, email FROM customers WHERE email = 'a@example.com'")
        + msg(b"X"),
        "multi_statement": hello + query("BEGIN; UPDATE customers SET age = 31 WHERE id = 1; COMMIT"),
        "ssl_then_startup": struct.pack(">II", 8, 80877103) + hello,
        "extended_text_params": hello
        + parse("", "SELECT email FROM customers WHERE email = $1", [25])
        + bind("", "", [b"a@example.com"]) + describe(b"P", "") + execute() + SYNC,
        "extended_binary_params": hello
        + parse("s1", "INSERT INTO customers (email, age) VALUES ($1, $2)", [0, 23])
        + describe(b"S", "s1") + SYNC
        + bind("p1", "s1", [b"b@example.com", struct.pack(">i", 42)], [0, 1], [1])
        + execute("p1", 10) + msg(b"C", b"Pp1\0") + msg(b"C", b"Ss1\0") + SYNC,
        "null_param_and_flush": hello + parse("", "UPDATE customers SET card = $1 WHERE id = $2")
        + bind("", "", [None, b"7"]) + execute() + msg(b"H") + SYNC,
        "copy_in": hello + query("COPY customers (email, age) FROM STDIN")
        + msg(b"d", b"a@example.com\t42\n") + msg(b"d", b"b@example.com\t\\N\n") + msg(b"c"),
        "copy_fail": hello + query("COPY customers FROM STDIN (FORMAT csv)")
        + msg(b"d", b'"x,y",1\n') + msg(b"f", cstr("client gave up")),
        "password_and_sasl": hello + msg(b"p", cstr("secret"))
        + msg(b"p", cstr("SCRAM-SHA-256") + struct.pack(">i", 4) + b"n,,n"),
        "function_call": hello + msg(b"F", struct.pack(">Ihhhi", 1598, 1, 0, 1, 1) + b"7"
                                     + struct.pack(">h", 0)),
        "no_startup": query("select 1") + SYNC,
    }


def server_messages():
    return {
        "login": msg(b"R", struct.pack(">i", 0))
        + msg(b"S", cstr("client_encoding") + cstr("UTF8"))
        + msg(b"S", cstr("standard_conforming_strings") + cstr("on"))
        + msg(b"K", struct.pack(">ii", 4242, 99)) + ready(),
        "sasl": msg(b"R", struct.pack(">i", 10) + cstr("SCRAM-SHA-256-PLUS") + cstr("SCRAM-SHA-256") + b"\0"),
        "select_result": row_description([("id", CUSTOMERS_OID, 1, 23), ("email", CUSTOMERS_OID, 2, 17),
                                          ("?column?", 0, 0, 25)])
        + data_row([b"1", b"\\x0200000001", None]) + data_row([b"2", b"", b"x"])
        + complete("SELECT 2") + ready(b"T"),
        "extended_answers": msg(b"1") + msg(b"t", struct.pack(">hII", 2, 17, 23)) + msg(b"n")
        + msg(b"2") + msg(b"s") + msg(b"3") + ready(),
        "error_with_context": error([(b"S", "ERROR"), (b"V", "ERROR"), (b"C", "0A000"),
                                     (b"M", "pgshroud: LIKE on customers.email is not supported"),
                                     (b"W", "PL/pgSQL function inline_code_block line 1 at RAISE"),
                                     (b"F", "pl_exec.c"), (b"L", "3911"), (b"R", "exec_stmt_raise")])
        + ready(b"E"),
        "fatal": error([(b"S", "FATAL"), (b"V", "FATAL"), (b"C", "57P01"),
                        (b"M", "terminating connection due to administrator command")]),
        "notice_and_notify": msg(b"N", b"SNOTICE\0C00000\0Mhello\0\0")
        + msg(b"A", struct.pack(">i", 7) + cstr("chan") + cstr("payload")),
        "copy_out": msg(b"H", struct.pack(">bhhh", 0, 2, 0, 0)) + msg(b"d", b"1\t\\x02\n")
        + msg(b"c") + complete("COPY 1"),
        "catalog_rows": row_description([("oid", 0, 0, 26)])
        + data_row([str(CUSTOMERS_OID).encode(), b"public", b"customers", b"2", b"email", b"bytea",
                    b"vpgshroud_guard_email CHECK (x)"]) + complete("SELECT 1") + ready(),
        "empty_data_row": msg(b"D", b"\0\0"),
    }


def startup_packet():
    return {
        "startup": startup([("user", "app"), ("database", "shop")]),
        "startup_options": startup([("user", "app"), ("options", "-c search_path=crm"),
                                    ("replication", "false"), ("_pq_.extension", "on")],
                                   version=(3 << 16) | 2),
        "protocol_2": startup([("user", "app")], version=2 << 16),
        "ssl_request": struct.pack(">II", 8, 80877103),
        "gssenc_request": struct.pack(">II", 8, 80877104),
        "cancel": struct.pack(">IIii", 16, 80877102, 4242, 99),
        "cancel_long_key": struct.pack(">III", 44, 80877102, 4242) + bytes(range(32)),
        "no_params": startup([]),
        "unterminated": struct.pack(">II", 17, 3 << 16) + b"user\0app",
    }


def sql_analyzer():
    text = open(os.path.join(REPO, "proxy/src/analyze/tests.rs")).read()
    found = []
    for m in re.finditer(r'(?:one|refused|refused_on|untouched|statements)\(\s*(?:r#"(.*?)"#|"((?:[^"\\]|\\.)*)")',
                         text, re.S):
        sql = m.group(1) if m.group(1) is not None else m.group(2).replace('\\"', '"').replace("\\\\", "\\")
        sql = re.sub(r"\\\n\s*", "", sql)
        if sql not in found:
            found.append(sql)
    extra = [
        "INSERT INTO customers (email, age, birthday, balance, profile) VALUES "
        "('a@example.com', 42, '2000-02-29', 12.50, '{\"a\": 1}')",
        "SELECT o.id FROM orders o JOIN customers c ON c.email = o.customer_email WHERE o.token = $1",
        "UPDATE crm.leads SET phone = $1, vip = true, seen = now() WHERE score = 7 RETURNING phone",
        "COPY orders (customer_email, doc) FROM STDIN WITH (FORMAT csv, HEADER true, NULL 'NULL')",
        "SELECT * FROM U&\"\\0063ustomers\"",
        "SELECT email FROM customers WHERE email = ANY($1::text[])",
    ]
    seeds = {}
    for i, sql in enumerate((found[:50] + extra)):
        seeds[f"sql_{i:02}"] = sql.encode()
    return seeds


def copy_codec():
    def header(columns, flags=0, delimiter=0, quote=0, escape=0, mask=0b10, cut=3, null=b""):
        return bytes([flags, delimiter, quote, escape, mask, columns - 1, cut, len(null)]) + null
    return {
        "text": header(3) + b"1\talice@example.com\t\\N\n2\tbob\\tby\\\\slash\t\\x41\n\\.\n",
        "text_crlf": header(2, mask=0b11) + b"a\tb\r\nc\td\r\n",
        "text_pipe_null": header(3, delimiter=ord("|"), null=b"NIL") + b"1|NIL|x\n2|y|NIL\n",
        "csv": header(3, flags=1) + b'1,"a,b",\n2,"say ""hi""",""\n',
        "csv_header": header(2, flags=3, mask=0b01) + b"email,age\n\"a@b\",4\n",
        "csv_quote_escape": header(2, flags=1, quote=ord("'"), escape=ord("\\"), mask=0b11)
        + b"'it\\'s',x\n'multi\nline',y\n",
        "csv_semicolon_null": header(3, flags=1, delimiter=ord(";"), null=b"NA") + b"NA;a;\n",
        "end_marker_then_junk": header(2) + b"x\ty\n\\.\nafter\n",
        "no_final_newline": header(3, flags=1, mask=0xff) + b"a,b,c",
    }


def rules():
    seeds = {
        "example": open(os.path.join(REPO, "rules/examples/rules.toml")).read().encode(),
        "fixture": re.search(r'pub const RULES: &str = r#"(.*?)"#;',
                             open(os.path.join(HERE, "src/lib.rs")).read(), re.S).group(1).encode(),
        "mask_partial": b"mask:partial(2,3)\nalice@example.com",
        "mask_email": b"mask:email\nalice@example.com",
        "mask_range": b"mask:range(10)\n42",
        "mask_year": b"mask:year\n2024-02-29",
        "mask_hash": b"mask:hash\n\xc3\xa9t\xc3\xa9",
        "glob": b"support_*\nsupport_alice",
        "network_v4": b"10.0.0.0/8\n",
        "network_v6": b"fd00::/8\n",
        "action": b"ciphertext\n",
    }
    for path in ["integration-tests/src/roles.rs", "integration-tests/src/protected.rs"]:
        text = open(os.path.join(REPO, path)).read()
        for i, m in enumerate(re.finditer(r'r#"(.*?)"#', text, re.S)):
            if "[[tables]]" in m.group(1) or "[[roles]]" in m.group(1):
                seeds[f"{os.path.basename(path)[:-3]}_{i}"] = m.group(1).encode()
    return seeds


# LogicalType::ALL order.
TYPES = ["text", "varchar", "int2", "int4", "int8", "bool", "numeric", "date", "timestamp",
         "timestamptz", "uuid", "bytea", "jsonb"]


def values():
    t = TYPES.index
    text, binary, canonical, other = 0, 1, 2, 3
    cases = [
        ("text", text, "caf\u00e9".encode()), ("varchar", text, b"x" * 10),
        ("int2", text, b" -007 "), ("int4", text, b"2147483647"), ("int8", text, b"-9223372036854775808"),
        ("bool", text, b"yes"), ("bool", text, b" f"),
        ("numeric", text, b"-1.50"), ("numeric", text, b"NaN"), ("numeric", text, b"1e-3"),
        ("date", text, b"2000-02-29"), ("date", text, b"infinity"), ("date", text, b"0044-03-15 BC"),
        ("timestamp", text, b"2024-01-01 12:00:00.123456"),
        ("timestamptz", text, b"2024-01-01 12:00:00+05:30"),
        ("uuid", text, b"{A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11}"),
        ("bytea", text, b"\\x0102ff"), ("bytea", text, b"a\\\\b\\001"),
        ("jsonb", text, b'{"b": [1, 2.50, null, true], "a": "\\u00e9"}'),
        ("int4", binary, struct.pack(">i", -42)), ("int8", binary, struct.pack(">q", 7)),
        ("bool", binary, b"\x01"), ("date", binary, struct.pack(">i", -730120)),
        ("timestamptz", binary, struct.pack(">q", 757382400000000)),
        ("numeric", binary, struct.pack(">hhhhhh", 2, 0, 0, 2, 12, 5000)),
        ("jsonb", binary, b'\x01{"k": 1}'), ("uuid", binary, bytes(range(16))),
        ("text", binary, "\u00e9t\u00e9".encode()),
        ("numeric", canonical, b"12.5"), ("date", canonical, struct.pack(">i", 0)),
        ("jsonb", canonical, b'{"a": 1}'),
        ("bytea", other, b'{"\\\\x0102",NULL,"\\\\x"}'),
        ("bytea", other, struct.pack(">iiIii", 1, 1, 17, 2, 1) + value(b"\x02\x00") + value(None)),
        ("bytea", other, seal("public.customers.age", struct.pack(">i", 42))),
        ("bytea", other, b"\x01\x00\x00\x00\x01" + bytes(20)),
    ]
    return {f"{ty}_{['text', 'binary', 'canonical', 'other'][mode]}_{i:02}": bytes([t(ty), mode]) + data
            for i, (ty, mode, data) in enumerate(cases)}


def protected_session():
    client = lambda m: b"\0" + m
    server = lambda m: b"\1" + m
    def user(name):
        return bytes([USERS.index(name)])
    email = sealed_text("customer_email", b"alice@example.com")
    age = sealed_text("public.customers.age", struct.pack(">i", 42))
    card = sealed_text("public.customers.card", b"4111111111111111")
    select_fields = [("id", CUSTOMERS_OID, 1, 23), ("email", CUSTOMERS_OID, 2, 17),
                     ("age", CUSTOMERS_OID, 4, 17), ("card", CUSTOMERS_OID, 6, 17)]
    rows = [server(data_row([str(i).encode(), email, age, card])) for i in range(5)]
    seeds = {
        "insert_literals": user("app")
        + client(query("INSERT INTO customers (email, age, birthday) VALUES ('a@example.com', 42, '2000-01-01')"))
        + server(complete("INSERT 0 1")) + server(ready()),
        "select_decrypt": user("app")
        + client(query("SELECT id, email, age, card FROM customers WHERE email = 'alice@example.com'"))
        + server(row_description(select_fields)) + rows[0] + rows[1]
        + server(complete("SELECT 2")) + server(ready()),
        "support_masked_max_rows": user("support")
        + client(query("SELECT id, email, age, card FROM customers"))
        + server(row_description(select_fields)) + b"".join(rows)
        + server(complete("SELECT 5")) + server(ready()),
        "extended_param": user("app")
        + client(parse("", "SELECT email FROM customers WHERE email = $1"))
        + client(bind("", "", [b"alice@example.com"])) + client(describe(b"P", ""))
        + client(execute()) + client(SYNC)
        + server(msg(b"1")) + server(msg(b"2")) + server(row_description([select_fields[1]]))
        + server(data_row([email])) + server(complete("SELECT 1")) + server(ready()),
        "extended_describe_statement_binary": user("app")
        + client(parse("s1", "INSERT INTO orders (customer_email, token, paid_at, doc) VALUES ($1, $2, $3, $4)"))
        + client(describe(b"S", "s1")) + client(SYNC)
        + server(msg(b"1")) + server(msg(b"t", struct.pack(">hIIII", 4, 17, 17, 17, 17)))
        + server(msg(b"n")) + server(ready())
        + client(bind("", "s1", [b"a@example.com", bytes(range(16)), struct.pack(">q", 0), b"\x00\x01"],
                      [0, 1, 1, 1]))
        + client(execute()) + client(SYNC)
        + server(msg(b"2")) + server(complete("INSERT 0 1")) + server(ready()),
        "any_array_param": user("app")
        + client(parse("", "SELECT id FROM customers WHERE email = ANY($1)"))
        + client(bind("", "", [b'{"a@example.com","b@example.com",NULL}'])) + client(execute())
        + client(SYNC) + server(msg(b"1")) + server(msg(b"2"))
        + server(complete("SELECT 0")) + server(ready()),
        "refused_like": user("app")
        + client(query("SELECT id FROM customers WHERE email LIKE 'a%'"))
        + server(error([(b"S", "ERROR"), (b"V", "ERROR"), (b"C", "0A000"), (b"M", "refused"),
                        (b"W", "PL/pgSQL function inline_code_block line 1 at RAISE")]))
        + server(ready()) + client(query("SELECT 1")) + server(complete("SELECT 1")) + server(ready()),
        "pipeline_error": user("app")
        + client(parse("a", "SELECT email FROM customers WHERE id = $1")) + client(bind("", "a", [b"1"]))
        + client(execute()) + client(parse("b", "SELECT 1")) + client(SYNC)
        + server(msg(b"1")) + server(error([(b"S", "ERROR"), (b"C", "42P01"), (b"M", "x")]))
        + server(ready(b"E")),
        "copy_in": user("app")
        + client(query("COPY customers (email, age) FROM STDIN"))
        + server(msg(b"G", struct.pack(">bhhh", 0, 2, 0, 0)))
        + client(msg(b"d", b"a@example.com\t42\nb@exa")) + client(msg(b"d", b"mple.com\t\\N\n"))
        + client(msg(b"c")) + server(complete("COPY 2")) + server(ready()),
        "copy_out_csv": user("app")
        + client(query("COPY customers (email, age) TO STDOUT WITH (FORMAT csv)"))
        + server(msg(b"H", struct.pack(">bhhh", 0, 2, 0, 0)))
        + server(msg(b"d", email + b"," + age + b"\n")) + server(msg(b"c"))
        + server(complete("COPY 1")) + server(ready()),
        "ddl_refreshes_catalog": user("app")
        + client(query("ALTER TABLE customers ADD COLUMN note text"))
        + server(complete("ALTER TABLE")) + server(ready())
        + server(row_description([("oid", 0, 0, 26)]))
        + server(data_row([str(CUSTOMERS_OID).encode(), b"public", b"customers", b"2", b"email",
                           b"bytea", None]))
        + server(complete("SELECT 1")) + server(ready()),
        "dba_ciphertext": user("dba")
        + client(query("SELECT email FROM customers"))
        + server(row_description([select_fields[1]])) + server(data_row([email]))
        + server(complete("SELECT 1")) + server(ready()),
        "analyst_insert_refused": user("analyst")
        + client(query("INSERT INTO crm.leads (phone) VALUES ('555')")) + server(ready()),
        "binary_results": user("app")
        + client(parse("", "SELECT email, age FROM customers")) + client(bind("", "", [], [], [1]))
        + client(execute()) + client(SYNC)
        + server(msg(b"1")) + server(msg(b"2"))
        + server(msg(b"T", struct.pack(">h", 2) + cstr("email") + struct.pack(">IhIhih", CUSTOMERS_OID, 2, 17, -1, -1, 1)
                      + cstr("age") + struct.pack(">IhIhih", CUSTOMERS_OID, 4, 17, -1, -1, 1)))
        + server(data_row([seal("customer_email", b"x@y"), seal("public.customers.age", struct.pack(">i", 1))]))
        + server(complete("SELECT 1")) + server(ready()),
    }
    return seeds


def write(target, seeds):
    out = os.path.join(HERE, "corpus", target)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    for name, data in seeds.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)


def grammar_agreement():
    """The lexical corners of PostgreSQL's scanner where another reading could differ."""
    texts = [
        "SELECT $\u00e9$; DELETE FROM customers; $\u00e9$",
        "SELECT 1 /* /* */ ; DELETE FROM customers; */ FROM customers",
        "SELECT id FROM customers WHERE email = E'a\\'; DELETE FROM customers; --'",
        "SELECT * FROM U&\"!0063ustomers\" UESCAPE '!'",
        "SELECT email FROM ONLY public.customers",
        "SELECT email FROM customers AS only",
        "WITH customers AS (SELECT 1) SELECT * FROM customers, orders",
        "DO E'BEGIN DELETE FROM \\x63ustomers; END'",
        "SELECT 'cust'\n'omers'::regclass",
        "UPDATE customers SET email = X'41' WHERE id = 1",
        "SELECT 2 */ 1 FROM \"public\".\"orders\"",
        "INSERT INTO customers (id, email) VALUES (1, 'a'), (2, $1)",
    ]
    return {"sql_%02d" % i: t.encode() for i, t in enumerate(texts)}


def shape_cache():
    """Statements with literals (the analyser's seeds and the integration tests' statements
    against the fixture's tables), each followed by a NUL and bytes choosing literal variants."""
    texts = [t.decode() for t in sql_analyzer().values()]
    pattern = re.compile(r'"((?:SELECT|INSERT|UPDATE|DELETE|select|insert|update|delete)\b'
                         r'(?:[^"\\]|\\.)*)"')
    tests = os.path.join(REPO, "integration-tests/tests")
    for name in sorted(os.listdir(tests)):
        if not name.endswith(".rs"):
            continue
        for m in pattern.finditer(open(os.path.join(tests, name)).read()):
            sql = m.group(1).replace('\\"', '"').replace("\\\\", "\\")
            if ("'" in sql or re.search(r"[=(,] *[0-9]", sql)) and sql not in texts \
                    and "{" not in sql:
                texts.append(sql)
    entropy = bytes([1, 2, 5, 9, 6, 13, 0, 4, 17, 21, 8, 3, 2, 1, 30, 7, 7, 7])
    return {"sql_%03d" % i: t.encode() + b"\0" + entropy[i % 7:] for i, t in enumerate(texts[:200])}


if __name__ == "__main__":
    for target, make in [("client_messages", client_messages), ("server_messages", server_messages),
                         ("startup_packet", startup_packet), ("sql_analyzer", sql_analyzer),
                         ("copy_codec", copy_codec), ("rules", rules), ("values", values),
                         ("protected_session", protected_session),
                         ("grammar_agreement", grammar_agreement), ("shape_cache", shape_cache)]:
        write(target, make())
