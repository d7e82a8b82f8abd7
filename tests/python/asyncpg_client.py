"""asyncpg (the driver of FastAPI and other asyncio services) against TimeFusion: its binary
protocol throughout (parameters, results, arrays of text and of numbers, timestamps), executemany, binary COPY of
records, a prepared statement, a transaction block and a SQLSTATE.

Usage: asyncpg_client.py DSN. Prints one JSON object with what the client saw; the Rust test
(tests/e2e/external/asyncpg.rs) asserts on it.
"""
import asyncio
import datetime
import json
import sys

import asyncpg


async def main(dsn):
    out = {"asyncpg": asyncpg.__version__}
    conn = await asyncpg.connect(dsn)
    out["server_major"] = conn.get_server_version().major
    start = datetime.datetime(2026, 11, 23, 10, 0, tzinfo=datetime.timezone.utc)
    await conn.executemany(
        "INSERT INTO otel_logs_and_spans (project_id, timestamp, id, name, duration, hashes) "
        "VALUES ($1, $2, $3, $4, $5, $6)",
        [
            ("apg", start + datetime.timedelta(seconds=i), f"apg-{i}", "GET /a", i, [f"h{i}", "x"])
            for i in range(20)
        ],
    )
    await conn.copy_records_to_table(
        "otel_logs_and_spans",
        records=[("apg", start, f"apg-copy-{i}", "copied") for i in range(30)],
        columns=["project_id", "timestamp", "id", "name"],
    )
    out["count"] = await conn.fetchval(
        "SELECT count(*) FROM otel_logs_and_spans WHERE project_id = $1", "apg"
    )
    row = await conn.fetchrow(
        "SELECT id, hashes, timestamp, duration FROM otel_logs_and_spans "
        "WHERE project_id = $1 AND id = $2",
        "apg",
        "apg-3",
    )
    out["row"] = [row["id"], row["hashes"], row["timestamp"].isoformat(), row["duration"]]
    statement = await conn.prepare(
        "SELECT count(*) FROM otel_logs_and_spans WHERE project_id = $1 AND duration >= $2"
    )
    out["prepared"] = [await statement.fetchval("apg", 10), await statement.fetchval("apg", 15)]
    out["subquery"] = await conn.fetchval(
        "SELECT (SELECT max(q.d) + $2 FROM (SELECT duration AS d FROM otel_logs_and_spans "
        "WHERE project_id = $1) q)",
        "apg",
        1,
    )
    # Arrays of types asyncpg introspects (not text[] / oid[]): it asks the server with a query
    # that binds `$1::oid[]` and returns an `array_agg` of oids, which must be described as
    # oid[] or the introspection introspects itself without end.
    out["int_any"] = await conn.fetchval(
        "SELECT count(*) FROM otel_logs_and_spans WHERE project_id = $1 AND duration = ANY($2)",
        "apg",
        [3, 4, 99],
    )
    out["int_array"] = await conn.fetchval("SELECT $1::int8[]", [1, None, 3])
    out["float_array"] = await conn.fetchval("SELECT ARRAY[1.5, 2.5]::float8[]")
    try:
        await conn.fetchval("SELECT * FROM no_such_table")
    except asyncpg.PostgresError as e:
        out["missing_table"] = e.sqlstate
    async with conn.transaction():
        out["in_transaction"] = await conn.fetchval("SELECT 1")
    await conn.close()
    print(json.dumps(out), flush=True)


asyncio.run(main(sys.argv[1]))
