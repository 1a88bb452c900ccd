"""Runs a fixed scenario through asyncpg (binary format, prepared statements, its own type
introspection) and prints one JSON line with what it saw. Connection settings come from the
standard PG* environment variables."""
import asyncio
import json
import os

import asyncpg


async def main():
    table = os.environ.get("TABLE", "driver_check")
    out = {}
    c = await asyncpg.connect(ssl=False)
    try:
        await c.executemany(f"INSERT INTO {table} (email, age, note) VALUES ($1, $2, $3)",
                            [(f"apg{i}@example.com", 50 + i, "from asyncpg") for i in range(5)])
        row = await c.fetchrow(f"SELECT email, age, note FROM {table} WHERE email = $1", "apg2@example.com")
        out["row"] = [row["email"], row["age"], row["note"]]
        out["any"] = await c.fetchval(f"SELECT count(*) FROM {table} WHERE email = ANY($1)",
                                      ["apg1@example.com", "apg4@example.com", "nobody"])
        try:
            async with c.transaction():
                await c.fetch(f"SELECT * FROM {table} WHERE age > $1", 3)
            out["range"] = "accepted"
        except asyncpg.PostgresError as e:
            out["range"] = e.sqlstate
        out["after"] = await c.fetchval("SELECT 1")
    finally:
        await c.close()
    print(json.dumps(out))


asyncio.run(main())
