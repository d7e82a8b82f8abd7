"""Write shapes: the way applications really write to a Postgres-wire server, side by side.

    python bench/write_shapes.py --target postgresql=DSN --target timefusion=DSN \\
        --results FILE.jsonl [--rows 2000] [--single 2000] [--writers 1,8,32] [--shapes ...]
    python bench/write_shapes.py --report FILE.jsonl

Needs psycopg 3 (tests/requirements.txt). For each target, in the order given, runs each shape,
prints one table line as the shape ends and appends one JSON line per (target, shape) to
--results. A target named `postgresql` (or any name starting with `postgres`) gets the table
created by this script (DROP IF EXISTS + CREATE, 16 columns, index on (project_id, timestamp))
and TRUNCATEd before every shape; any other target (TimeFusion) must already have
otel_logs_and_spans and is never truncated.

Shapes (rows/s over the whole shape, commit included; single-row shapes also the ack latency
p50 / p99 of one statement; every shape also the client's CPU a row, all of this process's
threads, which bounds what any server can reach with this client on a shared machine):

- executemany_arrays: one connection, psycopg's default transaction, `cur.executemany` of
  --rows rows with all 16 columns (a Python list for the text[] `hashes`, JSON as text), then
  COMMIT. psycopg 3 with libpq >= 14 pipelines executemany: one Parse, then Bind/Execute per row.
- executemany_scalars: the same without `hashes` (15 columns).
- executemany_autocommit: executemany_arrays on an autocommit connection.
- single_param_w{N}, N in --writers: N threads, each with its own autocommit connection, each
  sending --single // N one-row parameterized INSERTs back to back (`cur.execute(sql, row)`;
  psycopg prepares it server-side once it has run 5 times with the same parameter types).
- literal_arrays: --literal-threads threads each sending --literal-statements multi-row INSERTs
  of --literal-rows rows as literal SQL (`ARRAY['a','b']::text[]`, `'…+00'::timestamptz`),
  through a psycopg.ClientCursor: the simple query protocol, no parameters.
- copy_arrays: one connection, `COPY … FROM STDIN` (text format) with `copy.write_row` of
  --rows * 5 rows, all 16 columns.

After a PostgreSQL target's shapes, the script runs `CHECKPOINT` and waits (up to 120 s) until
no autovacuum worker runs, so PostgreSQL's writeback and the ANALYZE of the rows just inserted
do not run on the cores during the next target's shapes.

Every shape's rows carry their own project ids, `bench-<shape>-<run>-<k>` (k in 0..7, `_` in
the shape name written `-`), and after the shape `SELECT count(*) … WHERE project_id LIKE
'bench-<shape>-<run>-%'` must equal the rows sent (on PostgreSQL the whole table's count too),
else the line says VERIFY FAILED and the JSON line has "verified": false. A shape that raises
is recorded with its error text and the other shapes and targets still run; the exit status is
1 if any shape failed or did not verify.

Rows are generated once, before any target runs (seeded random.Random(42)), so every target
gets the same rows; only the timestamps (the 10 minutes before the run) and the run token in the
project ids depend on when the script runs.

--report FILE.jsonl prints every shape with each target's rows/s, p50 / p99 and the ratio
TimeFusion / PostgreSQL of rows/s (the last line per (target, shape) in the file counts).
"""
import argparse
import datetime
import gc
import json
import os
import platform
import random
import socket
import sys
import threading
import time
import uuid

import psycopg

TABLE = "otel_logs_and_spans"
COLUMNS = [
    "project_id",
    "timestamp",
    "id",
    "name",
    "kind",
    "status_code",
    "level",
    "severity___severity_text",
    "duration",
    "context___trace_id",
    "context___span_id",
    "hashes",
    "body",
    "attributes",
    "resource___service___name",
    "attributes___http___response___status_code",
]
HASHES = COLUMNS.index("hashes")
TIMESTAMP = COLUMNS.index("timestamp")
PG_DDL = f"""
DROP TABLE IF EXISTS {TABLE};
CREATE TABLE {TABLE} (
    project_id text NOT NULL,
    timestamp timestamptz NOT NULL,
    id text NOT NULL,
    name text,
    kind text,
    status_code text,
    level text,
    severity___severity_text text,
    duration bigint,
    context___trace_id text,
    context___span_id text,
    hashes text[],
    body text,
    attributes text,
    resource___service___name text,
    attributes___http___response___status_code int
);
CREATE INDEX ON {TABLE} (project_id, timestamp);
"""
ALL_SHAPES = [
    "executemany_arrays",
    "executemany_scalars",
    "executemany_autocommit",
    "single_param",  # expands to single_param_w{N} for N in --writers
    "literal_arrays",
    "copy_arrays",
]

METHODS = ["GET", "GET", "GET", "POST", "PUT", "DELETE", "PATCH"]
RESOURCES = [
    "users", "orders", "items", "carts", "payments", "invoices", "sessions", "search",
    "products", "reviews", "auth/login", "auth/refresh", "notifications", "settings",
]
ENDPOINTS = [f"{METHODS[i % len(METHODS)]} /api/v{1 + i % 2}/{RESOURCES[i % len(RESOURCES)]}"
             + ("/{id}" if i % 3 == 0 else "") for i in range(50)]
SERVICES = ["api-gateway", "checkout", "inventory", "auth", "billing", "search", "notifier",
            "frontend", "worker", "scheduler", "catalog", "recommendations"]
KINDS = ["SERVER", "CLIENT", "INTERNAL", "PRODUCER", "CONSUMER"]
STATUS = ["OK", "OK", "OK", "OK", "UNSET", "ERROR"]
LEVELS = [("INFO", "INFO"), ("INFO", "INFO"), ("DEBUG", "DEBUG"), ("WARN", "WARNING"), ("ERROR", "ERROR")]
HTTP_CODES = [200, 200, 200, 200, 201, 204, 301, 400, 401, 403, 404, 409, 429, 500, 502, 503]
HASH_WORDS = ["err", "slow", "auth", "db", "cache", "retry", "n+1", "4xx", "5xx", "ext", "q", "io"]
HOSTS = ["10.0.1.12", "10.0.1.47", "10.0.2.3", "10.0.3.91", "172.16.0.5"]
AGENTS = ["Mozilla/5.0 (X11; Linux x86_64)", "okhttp/4.12.0", "python-requests/2.32.3",
          "Go-http-client/1.1", "curl/8.5.0"]


def shape_tag(shape):
    return shape.replace("_", "-")


def gen_rows(rng, n, shape, run, now):
    """`n` rows of telemetry for `shape`, 16 columns in COLUMNS order."""
    tag = shape_tag(shape)
    rows = []
    for _ in range(n):
        k = min(int(rng.expovariate(0.6)), 7)  # a few big tenants, a long tail
        endpoint = rng.choice(ENDPOINTS)
        method, path = endpoint.split(" ", 1)
        service = rng.choice(SERVICES)
        level, severity = rng.choice(LEVELS)
        code = rng.choice(HTTP_CODES)
        status = "ERROR" if code >= 500 else rng.choice(STATUS[:5])
        duration = int(10 ** rng.uniform(4, 10))  # 10 µs to 10 s, in ns
        ts = now - datetime.timedelta(microseconds=rng.randrange(600_000_000))
        trace_id = "%032x" % rng.getrandbits(128)
        span_id = "%016x" % rng.getrandbits(64)
        hashes = rng.sample(HASH_WORDS, rng.randint(1, 3))
        item = rng.randrange(100_000)
        body = json.dumps({
            "message": f"{method} {path.replace('{id}', str(item))} -> {code}",
            "request": {"method": method, "path": path, "bytes": rng.randrange(50, 20000)},
            "response": {"status": code, "bytes": rng.randrange(50, 200000)},
            "user": {"id": f"u-{rng.randrange(10000)}", "tier": rng.choice(["free", "pro", "team"])},
        })
        attributes = json.dumps({
            "http.request.method": method,
            "http.route": path,
            "http.response.status_code": code,
            "server.address": rng.choice(HOSTS),
            "user_agent.original": rng.choice(AGENTS),
            "db.statement.count": rng.randrange(0, 12),
        })
        rows.append((
            f"bench-{tag}-{run}-{k}",
            ts,
            str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            endpoint,
            rng.choice(KINDS),
            status,
            level,
            severity,
            duration,
            trace_id,
            span_id,
            hashes,
            body,
            attributes,
            service,
            code,
        ))
    return rows


def insert_sql(columns):
    return (f"INSERT INTO {TABLE} ({', '.join(columns)}) "
            f"VALUES ({', '.join(['%s'] * len(columns))})")


def quote(value):
    """`value` as a SQL literal (standard_conforming_strings: only ' needs doubling)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, datetime.datetime):
        utc = value.astimezone(datetime.timezone.utc)
        return f"'{utc.strftime('%Y-%m-%d %H:%M:%S.%f')}+00'::timestamptz"
    if isinstance(value, list):
        return f"ARRAY[{','.join(quote(v) for v in value)}]::text[]"
    return "'" + str(value).replace("'", "''") + "'"


def literal_insert(rows):
    values = ",\n".join("(" + ", ".join(quote(v) for v in row) + ")" for row in rows)
    return f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) VALUES\n{values}"


def percentile(sorted_values, p):
    if not sorted_values:
        return None
    return sorted_values[round((len(sorted_values) - 1) * p)]


class Watchdog:
    """Cuts the shape's connections if it runs longer than `seconds`: a cancel request first,
    then, 10 s later, the sockets shut down (a server that ignores cancel cannot hang the run)."""

    def __init__(self, seconds):
        self.seconds = seconds
        self.conns = []
        self.fired = False
        self.lock = threading.Lock()
        self.timer = threading.Timer(seconds, self._fire)
        self.timer.daemon = True

    def add(self, conn):
        with self.lock:
            self.conns.append(conn)
        return conn

    def __enter__(self):
        self.timer.start()
        return self

    def __exit__(self, *exc):
        self.timer.cancel()

    def _fire(self):
        self.fired = True
        with self.lock:
            conns = list(self.conns)
        for conn in conns:
            try:
                conn.cancel()
            except Exception:
                pass
        time.sleep(10)
        for conn in conns:
            try:
                if not conn.closed:
                    socket.socket(fileno=os.dup(conn.pgconn.socket)).shutdown(socket.SHUT_RDWR)
            except Exception:
                pass


def connect(dsn, watchdog, autocommit):
    return watchdog.add(psycopg.connect(dsn, autocommit=autocommit, connect_timeout=30))


def run_threads(conns, work):
    """Runs work(i, conn) on each connection in its own thread, all starting together; returns
    (seconds from the first start to the last finish, every statement latency in ms, sorted),
    re-raising the first exception."""
    n = len(conns)
    barrier = threading.Barrier(n)
    spans = [None] * n
    lats = [[] for _ in range(n)]
    errors = []

    def target(i):
        try:
            barrier.wait()
            start = time.perf_counter()
            work(i, conns[i], lats[i])
            spans[i] = (start, time.perf_counter())
        except BaseException as e:  # noqa: BLE001 - reported to the caller
            errors.append(e)
            barrier.abort()  # no thread waits for one that failed

    threads = [threading.Thread(target=target, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    elapsed = max(e for _, e in spans) - min(s for s, _ in spans)
    return elapsed, sorted(x for l in lats for x in l)


def shape_executemany(dsn, rows, watchdog, columns, autocommit):
    sql = insert_sql(columns)
    if len(columns) != len(COLUMNS):
        rows = [tuple(v for i, v in enumerate(row) if i != HASHES) for row in rows]
    with connect(dsn, watchdog, autocommit) as conn:
        start = time.perf_counter()
        with conn.cursor() as cur:
            cur.executemany(sql, rows)
        if not autocommit:
            conn.commit()
        elapsed = time.perf_counter() - start
    return {"seconds": elapsed, "connections": 1, "statements": len(rows)}


def shape_single(dsn, rows, watchdog, writers):
    sql = insert_sql(COLUMNS)
    per = len(rows) // writers

    def work(i, conn, lat):
        with conn.cursor() as cur:
            for row in rows[i * per:(i + 1) * per]:
                t0 = time.perf_counter()
                cur.execute(sql, row)
                lat.append((time.perf_counter() - t0) * 1000)

    conns = []
    try:
        conns.extend(connect(dsn, watchdog, True) for _ in range(writers))
        elapsed, lat = run_threads(conns, work)
    finally:
        for c in conns:
            c.close()
    return {"seconds": elapsed, "connections": writers, "statements": len(lat),
            "p50_ms": percentile(lat, 0.5), "p99_ms": percentile(lat, 0.99)}


def shape_literal(dsn, rows, watchdog, threads, statements, per_statement):
    sqls = [[literal_insert(rows[(t * statements + s) * per_statement:(t * statements + s + 1) * per_statement])
             for s in range(statements)] for t in range(threads)]

    def work(i, conn, lat):
        # ClientCursor: the statement goes out as literal SQL over the simple query protocol.
        with psycopg.ClientCursor(conn) as cur:
            for sql in sqls[i]:
                t0 = time.perf_counter()
                cur.execute(sql)
                lat.append((time.perf_counter() - t0) * 1000)

    conns = []
    try:
        conns.extend(connect(dsn, watchdog, True) for _ in range(threads))
        elapsed, lat = run_threads(conns, work)
    finally:
        for c in conns:
            c.close()
    return {"seconds": elapsed, "connections": threads, "statements": len(lat),
            "p50_ms": percentile(lat, 0.5), "p99_ms": percentile(lat, 0.99),
            "sql_bytes": sum(len(s) for ss in sqls for s in ss)}


def shape_copy(dsn, rows, watchdog):
    with connect(dsn, watchdog, True) as conn:
        start = time.perf_counter()
        with conn.cursor() as cur:
            with cur.copy(f"COPY {TABLE} ({', '.join(COLUMNS)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        elapsed = time.perf_counter() - start
    return {"seconds": elapsed, "connections": 1, "statements": 1}


def is_postgres(name):
    return name.lower().startswith("postgres")


def admin(dsn):
    return psycopg.connect(dsn, autocommit=True, connect_timeout=30)


def settle_postgres(dsn, limit=120):
    """Waits until PostgreSQL's background work after the shapes is done (a CHECKPOINT, and
    autovacuum's ANALYZE / VACUUM of the rows just inserted), so that it does not take the
    cores from the next target's shapes."""
    start = time.perf_counter()
    with admin(dsn) as conn:
        conn.execute("CHECKPOINT")
        while time.perf_counter() - start < limit:
            busy = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'"
            ).fetchone()[0]
            if not busy:
                break
            time.sleep(0.5)
    print(f"(PostgreSQL settled in {time.perf_counter() - start:.1f} s: CHECKPOINT, autovacuum idle)")


def count(dsn, where=None):
    sql = f"SELECT count(*) FROM {TABLE}" + (f" WHERE {where}" if where else "")
    with admin(dsn) as conn:
        return conn.execute(sql).fetchone()[0]


def fmt(v, spec):
    """`v` formatted by `spec`, or a dash in the same width when there is no value."""
    if v is None:
        width = "".join(c for c in spec.split(".")[0] if c.isdigit())
        return format("-", ">" + width)
    return format(v, spec)


HEADER = (f"{'target':<12} {'shape':<24} {'rows':>7} {'conns':>5} {'seconds':>8} {'rows/s':>10} "
          f"{'p50 ms':>8} {'p99 ms':>8} {'client µs/row':>13}  check")


def line(rec):
    check = ("ERROR: " + rec["error"].splitlines()[0][:160]) if rec.get("error") else (
        "ok" if rec["verified"] else f"VERIFY FAILED (counted {rec['counted']})")
    return (f"{rec['target']:<12} {rec['shape']:<24} {rec['rows']:>7} {fmt(rec.get('connections'), '>5')} "
            f"{fmt(rec.get('seconds'), '>8.2f')} {fmt(rec.get('rows_per_s'), '>10,.0f')} "
            f"{fmt(rec.get('p50_ms'), '>8.2f')} {fmt(rec.get('p99_ms'), '>8.2f')} "
            f"{fmt(rec.get('client_us_per_row'), '>13.1f')}  {check}")


def run(args):
    writers = [int(w) for w in args.writers.split(",") if w]
    wanted = args.shapes or ALL_SHAPES
    shapes = []
    for s in wanted:
        if s == "single_param":
            shapes += [f"single_param_w{n}" for n in writers]
        elif s in ALL_SHAPES or s.startswith("single_param_w"):
            shapes.append(s)
        else:
            sys.exit(f"unknown shape {s!r}; shapes: {', '.join(ALL_SHAPES)} (single_param_wN)")
    targets = []
    for t in args.target:
        name, sep, dsn = t.partition("=")
        if not sep:
            sys.exit(f"--target wants NAME=DSN, got {t!r}")
        targets.append((name, dsn))

    now = datetime.datetime.now(datetime.timezone.utc)
    run_id = now.strftime("%Y%m%d%H%M%S")
    rng = random.Random(42)
    lit_n = args.literal_threads * args.literal_statements * args.literal_rows
    sizes = {
        "executemany_arrays": args.rows,
        "executemany_scalars": args.rows,
        "executemany_autocommit": args.rows,
        "literal_arrays": lit_n,
        "copy_arrays": args.rows * 5,
    }
    data = {}
    for s in shapes:  # every target gets the same rows
        if s.startswith("single_param_w"):
            n = int(s[len("single_param_w"):])
            data[s] = gen_rows(rng, (args.single // n) * n, s, run_id, now)
        else:
            data[s] = gen_rows(rng, sizes[s], s, run_id, now)
    # Untimed rows each target takes first, so the first timed shape does not pay for a cold
    # server (fresh WAL segment, first allocations, page faults) and the ratios compare like
    # with like; PostgreSQL's TRUNCATE removes them, TimeFusion keeps them.
    warmup = gen_rows(rng, args.warmup, "warmup", run_id, now) if args.warmup else []
    # The rows of every shape live until the end: out of the collector's reach, a full
    # collection triggered inside one target's shape does not walk all of them (it did, at
    # ~10 us a row of client CPU, in whichever shape it fell).
    gc.freeze()

    failed = 0
    print(f"psycopg {psycopg.__version__} ({psycopg.pq.__impl__}), libpq {psycopg.pq.version()}; "
          f"run {run_id}; shapes: {', '.join(shapes)}")
    for name, dsn in targets:
        print(f"\n== {name}")
        try:
            with admin(dsn) as conn:
                server_version = conn.execute("SHOW server_version").fetchone()[0]
                if is_postgres(name):
                    conn.execute(PG_DDL)
        except Exception as e:  # noqa: BLE001
            print(f"ERROR: {name}: cannot set up: {e}", file=sys.stderr)
            for s in shapes:
                rec = {"target": name, "shape": s, "rows": len(data[s]), "verified": False,
                       "error": f"setup: {type(e).__name__}: {e}"}
                append(args.results, rec)
            failed += len(shapes)
            continue
        print(f"server_version {server_version}")
        if warmup:
            with Watchdog(args.shape_timeout) as dog:
                shape_executemany(dsn, warmup, dog, COLUMNS, True)
        print(HEADER)
        for s in shapes:
            rows = data[s]
            tag = f"bench-{shape_tag(s)}-{run_id}-"
            rec = {"target": name, "shape": s, "rows": len(rows), "server_version": server_version,
                   "run": run_id, "time": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                   "verified": False, "error": None}
            try:
                if is_postgres(name):
                    with admin(dsn) as conn:
                        conn.execute(f"TRUNCATE {TABLE}")
                # The client's CPU (every thread of this process) over the shape: where it
                # nears the shape's seconds a core, the client, not the server, sets the rate.
                cpu0 = time.process_time()
                with Watchdog(args.shape_timeout) as dog:
                    try:
                        if s == "executemany_arrays":
                            r = shape_executemany(dsn, rows, dog, COLUMNS, False)
                        elif s == "executemany_scalars":
                            r = shape_executemany(dsn, rows, dog, [c for c in COLUMNS if c != "hashes"], False)
                        elif s == "executemany_autocommit":
                            r = shape_executemany(dsn, rows, dog, COLUMNS, True)
                        elif s.startswith("single_param_w"):
                            r = shape_single(dsn, rows, dog, int(s[len("single_param_w"):]))
                        elif s == "literal_arrays":
                            r = shape_literal(dsn, rows, dog, args.literal_threads,
                                              args.literal_statements, args.literal_rows)
                        elif s == "copy_arrays":
                            r = shape_copy(dsn, rows, dog)
                    except Exception:
                        if dog.fired:
                            raise TimeoutError(f"shape ran over --shape-timeout {args.shape_timeout} s")
                        raise
                rec.update(r)
                rec["client_cpu_s"] = time.process_time() - cpu0
                rec["client_us_per_row"] = rec["client_cpu_s"] * 1e6 / len(rows)
                rec["rows_per_s"] = len(rows) / r["seconds"]
                counted = count(dsn, f"project_id LIKE '{tag}%'")
                rec["counted"] = counted
                ok = counted == len(rows)
                if is_postgres(name):
                    total = count(dsn)
                    rec["table_count"] = total
                    ok = ok and total == len(rows)
                rec["verified"] = ok
                if not ok:
                    failed += 1
                    print(f"!!!!! VERIFY FAILED: {name} {s}: sent {len(rows)} rows, "
                          f"counted {counted} with project_id LIKE '{tag}%'"
                          + (f", table holds {rec['table_count']}" if "table_count" in rec else ""),
                          file=sys.stderr)
            except Exception as e:  # noqa: BLE001
                failed += 1
                rec["error"] = f"{type(e).__name__}: {e}".strip()
                print(f"!!!!! ERROR: {name} {s}: {rec['error']}", file=sys.stderr)
            append(args.results, rec)
            print(line(rec), flush=True)
        if is_postgres(name):
            settle_postgres(dsn)
    if failed:
        print(f"\n{failed} (target, shape) runs failed or did not verify", file=sys.stderr)
    return 1 if failed else 0


def append(path, rec):
    with open(path, "a") as f:
        f.write(json.dumps(rec, default=str) + "\n")


def report(path):
    recs = {}
    order = []
    targets = []
    for text in open(path):
        if not text.strip():
            continue
        rec = json.loads(text)
        key = (rec["target"], rec["shape"])
        if rec["shape"] not in order:
            order.append(rec["shape"])
        if rec["target"] not in targets:
            targets.append(rec["target"])
        recs[key] = rec
    pg = next((t for t in targets if is_postgres(t)), None)
    tf = next((t for t in targets if t.lower().startswith("timefusion")), None)

    def cell(rec):
        if rec is None:
            return f"{'':>10} {'':>8} {'':>8}"
        if rec.get("error"):
            return f"{'ERROR':>10} {'-':>8} {'-':>8}"
        mark = "" if rec.get("verified") else "!"
        return (f"{fmt(rec.get('rows_per_s'), ',.0f') + mark:>10} {fmt(rec.get('p50_ms'), '>8.2f')} "
                f"{fmt(rec.get('p99_ms'), '>8.2f')}")

    head = f"{'shape':<24} {'rows':>6}"
    sub = f"{'':<24} {'':>6}"
    for t in targets:
        head += f" | {t:^28}"
        sub += f" | {'rows/s':>10} {'p50 ms':>8} {'p99 ms':>8}"
    if pg and tf:
        head += f" | {tf + '/' + pg:>22}"
        sub += f" | {'rows/s':>10} {'p50':>11}"
    print(head)
    print(sub)
    for s in order:
        rows = next((recs[(t, s)]["rows"] for t in targets if (t, s) in recs), 0)
        out = f"{s:<24} {rows:>6}"
        for t in targets:
            out += " | " + cell(recs.get((t, s)))
        if pg and tf:
            a, b = recs.get((tf, s)), recs.get((pg, s))
            ratio = p50 = "-"
            if a and b and not a.get("error") and not b.get("error"):
                ratio = f"{a['rows_per_s'] / b['rows_per_s']:.2f}x"
                if a.get("p50_ms") and b.get("p50_ms"):
                    p50 = f"{a['p50_ms'] / b['p50_ms']:.2f}x"
            out += f" | {ratio:>10} {p50:>11}"
        print(out)
    errors = [r for r in recs.values() if r.get("error")]
    unverified = [r for r in recs.values() if not r.get("error") and not r.get("verified")]
    if unverified:
        print("\n! = row count did not verify: " + "; ".join(
            f"{r['target']} {r['shape']} sent {r['rows']} counted {r.get('counted')}" for r in unverified))
    for r in errors:
        print(f"\nERROR {r['target']} {r['shape']}: {r['error']}")
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--target", action="append", default=[], metavar="NAME=DSN")
    p.add_argument("--results", metavar="FILE.jsonl")
    p.add_argument("--report", metavar="FILE.jsonl")
    p.add_argument("--rows", type=int, default=2000, help="rows per executemany shape (COPY: 5x)")
    p.add_argument("--single", type=int, default=2000, help="single-row INSERTs per single_param shape")
    p.add_argument("--writers", default="1,8,32", help="connections of the single_param shapes")
    p.add_argument("--warmup", type=int, default=4000,
                   help="untimed rows each target takes by executemany first (0: none)")
    p.add_argument("--literal-threads", type=int, default=4)
    p.add_argument("--literal-statements", type=int, default=5)
    p.add_argument("--literal-rows", type=int, default=1000)
    p.add_argument("--shape-timeout", type=float, default=900,
                   help="seconds before a shape's connections are cancelled and cut")
    p.add_argument("--shapes", nargs="+", metavar="SHAPE",
                   help=f"default: all ({', '.join(ALL_SHAPES)}); single_param is every --writers")
    args = p.parse_args()
    if args.report:
        sys.exit(report(args.report))
    if not args.target or not args.results:
        p.error("--target NAME=DSN (one or more) and --results FILE.jsonl are needed (or --report)")
    print(f"python {platform.python_version()}")
    sys.exit(run(args))


if __name__ == "__main__":
    main()
