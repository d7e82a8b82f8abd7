"""psycopg 3 against TimeFusion: server-side parameter binding, executemany, COPY FROM STDIN
(text, CSV and binary through the copy API), typed results, SQLSTATEs; then SQLAlchemy (on
psycopg) connecting and inspecting the schema as Superset and other Python tools do.

Usage: pg_clients.py DSN. Prints one JSON object with what the client saw; the Rust test
(tests/psycopg.rs) asserts on it.
"""
import datetime
import json
import os
import sys

import psycopg

dsn = sys.argv[1]
out = {}
now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=123456)

with psycopg.connect(dsn, autocommit=True) as conn:
    out["server_version"] = conn.info.server_version
    with conn.cursor() as cur:
        # Server-side binding (extended protocol), typed parameters.
        cur.execute(
            "INSERT INTO otel_logs_and_spans (project_id, timestamp, id, name, duration) "
            "VALUES (%s, %s, %s, %s, %s)",
            ("psy", now, "psy-0", "GET /one", 1500),
        )
        cur.executemany(
            "INSERT INTO otel_logs_and_spans (project_id, timestamp, id, name, duration) "
            "VALUES (%s, %s, %s, %s, %s)",
            [("psy", now, f"psy-{i}", "GET /many", i) for i in range(1, 50)],
        )
        with cur.copy(
            "COPY otel_logs_and_spans (project_id, timestamp, id, name) FROM STDIN"
        ) as copy:
            for i in range(500):
                copy.write_row(("psy", now, f"copy-{i}", "copied"))
        with cur.copy(
            "COPY otel_logs_and_spans (project_id, timestamp, id, body) FROM STDIN (FORMAT csv)"
        ) as copy:
            copy.write('psy,2024-03-10 10:00:00+00,csv-1,"{""a"": ""x,y""}"\n')
        # Binary COPY: psycopg sends binary rows because the server announced FORMAT binary.
        binary_rows = [
            (
                "psy-bin",
                now + datetime.timedelta(microseconds=i),
                f"bin-{i}",
                None if i % 3 == 0 else f"name {i} ✓",
                {"i": i, "s": "x,y"},
                [] if i % 4 == 0 else [f"h{i}", None, "a b"],
                i * 1_000_000_007,
                i % 2 == 0,
            )
            for i in range(300)
        ]
        with cur.copy(
            "COPY otel_logs_and_spans (project_id, timestamp, id, name, attributes, hashes, "
            "duration, context___is_remote) FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(
                ["text", "timestamptz", "text", "text", "jsonb", "text[]", "int8", "bool"]
            )
            for row in binary_rows:
                copy.write_row(row)
        out["binary_rowcount"] = cur.rowcount
        cur.execute(
            "SELECT project_id, timestamp, id, name, attributes, hashes, duration, "
            "context___is_remote FROM otel_logs_and_spans WHERE project_id = %s ORDER BY timestamp",
            ("psy-bin",),
        )
        read = [
            (p, t, i, n, json.loads(a), h or [], d, r)
            for (p, t, i, n, a, h, d, r) in cur.fetchall()
        ]
        out["binary_count"] = len(read)
        out["binary_mismatches"] = [
            [repr(a), repr(b)] for a, b in zip(read, binary_rows) if a != b
        ][:3]
        out["binary_row_1"] = [read[1][2], read[1][3], read[1][4], read[1][5], read[1][6]]
        cur.execute(
            "SELECT count(*), sum(duration), max(timestamp) FROM otel_logs_and_spans WHERE project_id = %s",
            ("psy",),
        )
        count, total, latest = cur.fetchone()
        out["count"] = count
        out["sum"] = int(total)
        out["latest_matches"] = latest == now
        # The text PostgreSQL sends for timestamps and times (extended protocol, text format).
        with conn.cursor() as raw:
            from psycopg.types.string import TextLoader

            for name in ("timestamptz", "timestamp", "float8"):
                raw.adapters.register_loader(name, TextLoader)
            raw.execute(
                "SELECT %s::timestamptz, %s::timestamptz, %s::timestamp, 7::float8",
                ("2026-11-23 10:00:00+00", "2026-11-23 10:00:00.25+00",
                 "2026-11-23 10:00:00.000001"),
            )
            out["timestamp_texts"] = list(raw.fetchone())
        cur.execute("SELECT body FROM otel_logs_and_spans WHERE id = %s", ("csv-1",))
        out["csv_body"] = cur.fetchone()[0]
        cur.execute(
            "SELECT name, count(*) AS n FROM otel_logs_and_spans WHERE project_id = %s "
            "GROUP BY name ORDER BY name",
            ("psy",),
        )
        out["names"] = [[r[0], r[1]] for r in cur.fetchall()]
        out["columns"] = [d.name for d in cur.description]
        try:
            cur.execute("SELECT * FROM no_such_table")
        except psycopg.Error as e:
            out["unknown_table"] = e.sqlstate
        try:
            cur.execute(
                "INSERT INTO otel_logs_and_spans (project_id, timestamp, id, duration) "
                "VALUES (%s, %s, %s, %s)",
                ("psy", now, "bad", "slow"),
            )
        except psycopg.Error as e:
            out["bad_value"] = e.sqlstate
        cur.execute("SELECT 1")
        out["still_works"] = cur.fetchone()[0]

# SET TIME ZONE is reported with ParameterStatus, as PostgreSQL does.
with psycopg.connect(dsn, autocommit=True) as zoned:
    zoned.execute("SET TIME ZONE 'Asia/Tokyo'")
    out["tz_after_set"] = zoned.info.parameter_status("TimeZone")
    zoned.execute("RESET timezone")
    out["tz_after_reset"] = zoned.info.parameter_status("TimeZone")

from sqlalchemy import create_engine, inspect, text

engine = create_engine(dsn.replace("postgresql://", "postgresql+psycopg://", 1))
with engine.connect() as conn:
    out["sa_count"] = conn.execute(
        text("SELECT count(*) FROM otel_logs_and_spans WHERE project_id = :p"), {"p": "psy"}
    ).scalar()
inspector = inspect(engine)
out["sa_tables"] = inspector.get_table_names()
out["sa_has_table"] = inspector.has_table("otel_logs_and_spans")
# Superset's column list: a query whose correlated subqueries bind parameters.
columns = inspector.get_columns("otel_logs_and_spans")
out["sa_columns"] = [(c["name"], str(c["type"]), c["nullable"]) for c in columns[:3]]
out["sa_column_count"] = len(columns)

print(json.dumps(out), flush=True)
os._exit(0)
