"""COPY FROM STDIN rows/s, CSV against binary, for the same rows.

    python bench/copy_formats.py DSN ROWS RUNS [SERVER_PID]

Needs psycopg (tests/requirements.txt). Builds both payloads before timing, so only the
COPY is timed: sending, parsing, coercion, the WAL append with its fsync and the buffer
insert. Alternates the formats RUNS times, each COPY in its own project, and prints the
median per format. With SERVER_PID (a server on this machine) it also prints the server's
CPU time per COPY, which varies much less between runs than wall time on a small VM.

Rows: 10 columns of otel_logs_and_spans (text, timestamptz, JSON text, a 2-element text[],
int8, int4), about 180 bytes of CSV each.
"""
import csv
import datetime
import io
import json
import os
import statistics
import struct
import sys
import time

import psycopg

dsn, n, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
server_pid = sys.argv[4] if len(sys.argv) > 4 else None
COLUMNS = (
    "project_id, timestamp, id, name, level, body, hashes, duration, "
    "attributes___client___port, resource___service___name"
)
base = datetime.datetime.now(datetime.timezone.utc)
PG_EPOCH = datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc)


def server_cpu():
    """User + system seconds of the server process so far (0 without SERVER_PID)."""
    if server_pid is None:
        return 0.0
    fields = open(f"/proc/{server_pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rows(project):
    for i in range(n):
        yield (
            project,
            base + datetime.timedelta(microseconds=i),
            f"{project}-{i}",
            f"GET /api/v1/items/{i % 100}",
            "INFO",
            json.dumps({"message": f"hello {i}", "status": 200, "bytes": i * 7}),
            [f"h{i % 13}", "trace"],
            i * 1000 + 7,
            8000 + i % 100,
            f"svc-{i % 3}",
        )


def csv_payload(project):
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for p, ts, id_, name, level, body, hashes, duration, port, service in rows(project):
        array = "{" + ",".join(hashes) + "}"
        writer.writerow([p, ts.isoformat(), id_, name, level, body, array, duration, port, service])
    return out.getvalue().encode()


def field(value):
    return struct.pack("!i", len(value)) + value


def text_array(items):
    # ndim 1, no NULLs, element type text (25), size, lower bound 1, then the elements.
    header = struct.pack("!iiiii", 1, 0, 25, len(items), 1)
    return header + b"".join(field(item.encode()) for item in items)


def binary_payload(project):
    out = [b"PGCOPY\n\xff\r\n\0" + struct.pack("!ii", 0, 0)]
    for p, ts, id_, name, level, body, hashes, duration, port, service in rows(project):
        micros = (ts - PG_EPOCH) // datetime.timedelta(microseconds=1)
        out.append(
            struct.pack("!h", 10)
            + field(p.encode())
            + field(struct.pack("!q", micros))
            + field(id_.encode())
            + field(name.encode())
            + field(level.encode())
            + field(body.encode())
            + field(text_array(hashes))
            + field(struct.pack("!q", duration))
            + field(struct.pack("!i", port))
            + field(service.encode())
        )
    out.append(struct.pack("!h", -1))
    return b"".join(out)


def copy(conn, fmt, payload):
    """Seconds of wall time and of server CPU for one COPY of `payload`."""
    with conn.cursor() as cur:
        cpu = server_cpu()
        start = time.perf_counter()
        with cur.copy(f"COPY otel_logs_and_spans ({COLUMNS}) FROM STDIN (FORMAT {fmt})") as c:
            for i in range(0, len(payload), 1 << 16):
                c.write(payload[i : i + (1 << 16)])
        elapsed = time.perf_counter() - start
        assert cur.rowcount == n, cur.rowcount
        return elapsed, server_cpu() - cpu


with psycopg.connect(dsn, autocommit=True) as conn:
    walls = {"csv": [], "binary": []}
    cpus = {"csv": [], "binary": []}
    sizes = {}
    for run in range(runs):
        for fmt, build in (("csv", csv_payload), ("binary", binary_payload)):
            payload = build(f"bench-{fmt}-{run}-{base.timestamp():.0f}")
            sizes[fmt] = len(payload)
            wall, cpu = copy(conn, fmt, payload)
            walls[fmt].append(wall)
            cpus[fmt].append(cpu)
    for fmt in walls:
        median = statistics.median(walls[fmt])
        line = (
            f"COPY {fmt:6} {n} rows x {runs}, {sizes[fmt] / 1e6:.1f} MB: median {median * 1000:.0f} ms"
            f" = {n / median:,.0f} rows/s (runs: {', '.join(f'{w * 1000:.0f}' for w in walls[fmt])} ms)"
        )
        if server_pid is not None:
            line += f"; server CPU median {statistics.median(cpus[fmt]) * 1000:.0f} ms"
        print(line)
