"""DuckDB and ClickHouse (chdb) side of the query benchmark and its report, and the ClickHouse side
of the ingest benchmark.

    baselines.py --params P --delta DIR --delta-version V --csv ROWS.csv --chdb-dir DIR --runs N --results R.jsonl
        DuckDB over the Delta table's live Parquet files (the files TimeFusion wrote; the list
        comes from the Delta log, so files a compaction replaced are not read twice), and a
        ClickHouse MergeTree ordered by (project_id, timestamp) loaded from the same rows as CSV.
        Appends one JSON line of timings per system to R.jsonl.
    baselines.py --report R.jsonl
        One table of every system's timings, the ratios and the issue's targets.
    baselines.py --ingest DIR --chdb-dir DIR --results R.jsonl
        ClickHouse INSERTs of the rows bench/ingest.rs sent to TimeFusion and PostgreSQL (its
        --clickhouse-dir, Arrow IPC files) into the same MergeTree, once with fsync on and once
        with ClickHouse's defaults (no fsync); appends one JSON line of figures to R.jsonl, which
        `ingest --report R.jsonl` prints with the other systems'.

The queries are bench/queries.sql, parsed the same way as bench/query.rs does.
"""

import argparse
import json
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

QUERIES = Path(__file__).with_name("queries.sql")

# The generator's columns (bench/gen.rs COLUMNS) with the types a ClickHouse user would pick.
CLICKHOUSE_COLUMNS = [
    ("project_id", "LowCardinality(String)"),
    ("timestamp", "DateTime64(6, 'UTC')"),
    ("id", "String"),
    ("parent_id", "String"),
    ("name", "String"),
    ("kind", "LowCardinality(String)"),
    ("status_code", "LowCardinality(String)"),
    ("level", "LowCardinality(String)"),
    ("severity___severity_text", "LowCardinality(String)"),
    ("severity___severity_number", "Int32"),
    ("body", "String"),
    ("duration", "Int64"),
    ("context___trace_id", "String"),
    ("context___span_id", "String"),
    ("attributes", "String"),
    ("attributes___http___request___method", "LowCardinality(String)"),
    ("attributes___http___response___status_code", "Int32"),
    ("attributes___url___path", "String"),
    ("resource___service___name", "LowCardinality(String)"),
    ("resource___service___version", "LowCardinality(String)"),
    ("resource___deployment___environment___name", "LowCardinality(String)"),
]

TARGETS = """targets (issue 6), one project and one hour: TimeFusion p50 <= 50 ms on buffer data,
<= 100 ms on Delta data with a warm cache, and <= 2x DuckDB over the same Parquet files."""

ONE_HOUR = {"endpoints_per_hour", "p95_per_5_minutes", "trace_by_id", "body_search", "services_in_hour"}


def parse_queries(text):
    """[(name, {system or '': sql})] from queries.sql."""
    queries = []
    current = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("-- name:"):
            current = ""
            queries.append((stripped[len("-- name:"):].strip(), {"": ""}))
        elif queries:
            rest = stripped[3:] if stripped.startswith("-- ") else None
            if rest and rest.endswith(":") and " " not in rest:
                current = rest[:-1]
                queries[-1][1][current] = ""
            elif stripped and not stripped.startswith("--"):
                queries[-1][1][current] += line + "\n"
    return queries


def fill(sql, params):
    for key in ("table", "project", "hour_start", "hour_end", "trace_id", "needle"):
        sql = sql.replace("{" + key + "}", str(params[key]))
    return sql


def time_queries(system, phase, params, runs, execute):
    """Cold (first) run and warm p50/p90 of every query; `execute(sql)` returns the row count."""
    timings = []
    for name, texts in parse_queries(QUERIES.read_text()):
        sql = fill(texts.get(system, texts[""]), params)
        started = time.perf_counter()
        rows = execute(sql)
        cold = time.perf_counter() - started
        warm = []
        for _ in range(runs):
            started = time.perf_counter()
            execute(sql)
            warm.append(time.perf_counter() - started)
        warm.sort()
        pick = lambda p: warm[round((len(warm) - 1) * p)] * 1000
        timings.append({
            "system": system, "phase": phase, "query": name, "rows": rows,
            "cold_ms": cold * 1000, "p50_ms": pick(0.5), "p90_ms": pick(0.9),
        })
        print(f"{system:<11} {phase:<8} {name:<20} {rows:>6} {cold * 1000:>10.1f} {pick(0.5):>10.1f} {pick(0.9):>10.1f}")
    return timings


def duckdb_timings(params, delta_dir, version, runs):
    import deltalake
    import duckdb

    files = deltalake.DeltaTable(delta_dir, version=version).file_uris()
    print(f"DuckDB {duckdb.__version__}: {len(files)} live Parquet files of the Delta table at version {version}")
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    listing = ", ".join("'" + f.removeprefix("file://") + "'" for f in files)
    con.execute(f"CREATE VIEW {params['table']} AS SELECT * FROM read_parquet([{listing}], hive_partitioning = true)")
    return time_queries("duckdb", "parquet", params, runs, lambda sql: con.sql(sql).to_arrow_table().num_rows)


def clickhouse_query(sess, sql):
    """Runs `sql` in the chdb session; raises with ClickHouse's message if it fails."""
    result = sess.query(sql)
    if result.has_error():
        raise SystemExit(f"ClickHouse: {result.error_message()}\n{sql[:500]}")
    return result


def clickhouse_create(sess, table, settings=""):
    """(Re)creates `table` as both benchmarks' MergeTree: the generator's columns, ordered by
    (project_id, timestamp); `settings` are extra MergeTree settings."""
    columns = ", ".join(f"{name} {ty}" for name, ty in CLICKHOUSE_COLUMNS)
    clickhouse_query(sess, f"DROP TABLE IF EXISTS {table} SYNC")
    clickhouse_query(
        sess,
        f"CREATE TABLE {table} ({columns}) ENGINE = MergeTree ORDER BY (project_id, timestamp)"
        + (f" SETTINGS {settings}" if settings else ""),
    )


def clickhouse_insert(sess, table, path, fmt):
    """One INSERT into `table` of the rows of the file(s) `path` (a glob may match several) in
    format `fmt` (CSV in COLUMNS order, or Arrow with the COLUMNS names), read as the table's types."""
    structure = ", ".join(f"{name} {ty}" for name, ty in CLICKHOUSE_COLUMNS).replace("'", "\\'")
    clickhouse_query(
        sess,
        f"INSERT INTO {table} SELECT * FROM file('{path}', '{fmt}', '{structure}') "
        "SETTINGS date_time_input_format = 'best_effort'",
    )


def clickhouse_count(sess, table):
    return int(str(sess.query(f"SELECT count() FROM {table}", "CSV")).strip())


def clickhouse_version(sess):
    import chdb

    version = str(sess.query("SELECT version()", "CSV")).strip().strip('"')
    return f"ClickHouse {version} (chdb {chdb.__version__})"


def clickhouse_timings(params, csv_path, chdb_dir, runs):
    from chdb import session

    sess = session.Session(chdb_dir)
    table = params["table"]
    clickhouse_create(sess, table)
    started = time.perf_counter()
    clickhouse_insert(sess, table, csv_path, "CSV")
    secs = time.perf_counter() - started
    loaded = clickhouse_count(sess, table)
    print(f"{clickhouse_version(sess)}: INSERT of {loaded} rows from CSV in {secs:.1f} s = {loaded / secs:,.0f} rows/s")
    sess.close()
    # A new session for the queries, so the first run of each is as cold as the others'.
    sess = session.Session(chdb_dir)

    def execute(sql):
        result = sess.query(sql, "JSONCompact")
        if result.has_error():
            raise SystemExit(f"{result.error_message()}\n{sql}")
        return json.loads(result.bytes())["rows"]

    timings = time_queries("clickhouse", "mergetree", params, runs, execute)
    # ClickHouse's query condition cache (on by default) remembers, per data part and filter,
    # which granules matched: a repeated query reads only those. The same queries again with
    # it off show what that cache is worth here ("cold" is then only the first run with it
    # off: the other caches are warm from the pass above).
    timings += time_queries(
        "clickhouse", "no-qcc", params, runs,
        lambda sql: execute(f"{sql.rstrip().rstrip(';')} SETTINGS use_query_condition_cache = 0"),
    )
    return timings


# MergeTree settings per ClickHouse "system" of the ingest report: TimeFusion and PostgreSQL ack
# a write once it is fsynced; ClickHouse by default does not fsync a new part.
CLICKHOUSE_DURABILITY = [
    ("clickhouse", "fsync_after_insert = 1, fsync_part_directory = 1"),
    ("clickhouse-nofsync", ""),
]


def arrow_rows(path):
    """Rows in an Arrow IPC file (reading it also puts it in the page cache before the timing)."""
    import pyarrow as pa

    with pa.memory_map(str(path)) as source:
        return pa.ipc.open_file(source).read_all().num_rows


def time_inserts(sess, table, system, settings, phase, streams, rows, latency=False):
    """Into a new MergeTree `table`, every stream (a list of files or globs, on its own thread,
    all streams at once) INSERTs its files one statement each. Times the INSERTs only and checks
    that the `rows` rows arrived; returns the figure in bench/ingest.rs's form."""
    inserts = sum(len(stream) for stream in streams)
    clickhouse_create(sess, table, settings)
    latencies = []

    def send(files):
        for f in files:
            started = time.perf_counter()
            clickhouse_insert(sess, table, f, "Arrow")
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    with ThreadPoolExecutor(len(streams)) as pool:
        for done in [pool.submit(send, stream) for stream in streams]:
            done.result()
    secs = time.perf_counter() - started
    loaded = clickhouse_count(sess, table)
    if loaded != rows:
        raise SystemExit(f"ClickHouse {phase}: {loaded} rows in the table, {rows} sent")
    parts = int(str(sess.query(f"SELECT count() FROM system.parts WHERE table = '{table}' AND active", "CSV")).strip())
    clickhouse_query(sess, f"DROP TABLE {table} SYNC")
    latencies.sort()
    pick = lambda p: latencies[round((len(latencies) - 1) * p)] * 1000
    figure = {
        "system": system, "phase": phase, "rows": rows, "secs": secs, "rows_per_sec": rows / secs,
        "p50_ms": pick(0.5) if latency else None, "p99_ms": pick(0.99) if latency else None,
        "batch_rows": rows // inserts, "concurrency": len(streams), "active_parts": parts,
    }
    ms = lambda v: "-" if v is None else f"{v:.2f}"
    print(
        f"{system:<18} {phase:<18} {rows:>9} {secs:>8.2f} {rows / secs:>12.0f} {ms(figure['p50_ms']):>9} "
        f"{ms(figure['p99_ms']):>9} {figure['batch_rows']:>12} {len(streams):>5}   ({parts} active parts after)"
    )
    return figure


def clickhouse_ingest(ingest_dir, chdb_dir):
    """The ClickHouse figures of the ingest benchmark, from the files bench/ingest.rs wrote:
    DIR/<phase>/c<connection>/<n>.arrow, one file per statement or batch that phase sent."""
    from chdb import session

    ingest_dir = Path(ingest_dir).resolve()
    streams = lambda phase: [sorted(c.glob("*.arrow")) for c in sorted((ingest_dir / phase).glob("c*"))]
    sess = session.Session(chdb_dir)
    table = "otel_logs_and_spans"
    print(f"{clickhouse_version(sess)}, MergeTree ORDER BY (project_id, timestamp), rows from Arrow IPC files:")
    print(f"{'system':<18} {'phase':<18} {'rows':>9} {'secs':>8} {'rows/s':>12} {'p50 ms':>9} {'p99 ms':>9} {'rows/insert':>12} {'conc':>5}")
    # (phase, directory of its rows, the files of each stream, latency figures?): all the COPY /
    # DoPut rows in one INSERT, the same rows in the batches TimeFusion got them in, the
    # multi-row INSERT rows in their statements, the single-row INSERTs.
    phases = [
        ("bulk INSERT", "bulk", [[ingest_dir / "bulk" / "*" / "*.arrow"]], False),
        ("batch INSERT", "bulk", streams("bulk"), False),
        ("statement INSERT", "multi-row", streams("multi-row"), False),
        ("single-row INSERT", "single-row", streams("single-row"), True),
    ]
    figures = []
    for phase, directory, files, latency in phases:
        rows = sum(arrow_rows(f) for stream in streams(directory) for f in stream)
        if rows == 0:
            continue
        for system, settings in CLICKHOUSE_DURABILITY:
            figures.append(time_inserts(sess, table, system, settings, phase, files, rows, latency))
    sess.close()
    return figures


def report(results_path):
    timings = []
    for line in Path(results_path).read_text().splitlines():
        if line.strip():
            timings.extend(json.loads(line))
    columns = []
    for t in timings:
        key = (t["system"], t["phase"])
        if key not in columns:
            columns.append(key)
    names = list(dict.fromkeys(t["query"] for t in timings))
    by = {(t["system"], t["phase"], t["query"]): t for t in timings}

    print("\nwarm p50 ms (cold ms in brackets), rows returned:")
    header = f"{'query':<20}" + "".join(f"{s + '/' + p:>24}" for s, p in columns)
    print(header)
    for name in names:
        cells = []
        for s, p in columns:
            t = by.get((s, p, name))
            cells.append(f"{t['p50_ms']:.1f} ({t['cold_ms']:.0f}) {t['rows']}r" if t else "-")
        print(f"{name:<20}" + "".join(f"{c:>24}" for c in cells))

    print("\nratios of warm p50, TimeFusion (Delta) / other (below 1 means TimeFusion is faster):")
    others = [c for c in columns if c[0] != "timefusion"]
    label = lambda s, p: s if sum(c[0] == s for c in others) == 1 else f"{s}/{p}"
    print(f"{'query':<20}" + "".join(f"{label(s, p):>22}" for s, p in others) + f"{'buffer/delta':>14}")
    for name in names:
        tf = by.get(("timefusion", "delta", name))
        buf = by.get(("timefusion", "buffer", name))
        cells = []
        for s, p in others:
            o = by.get((s, p, name))
            cells.append(f"{tf['p50_ms'] / o['p50_ms']:.2f}x" if tf and o else "-")
        buffer = f"{buf['p50_ms'] / tf['p50_ms']:.2f}x" if tf and buf else "-"
        print(f"{name:<20}" + "".join(f"{c:>22}" for c in cells) + f"{buffer:>14}")

    print("\n" + TARGETS)
    checks = []
    for name in names:
        if name not in ONE_HOUR:
            continue
        buf = by.get(("timefusion", "buffer", name))
        delta = by.get(("timefusion", "delta", name))
        duck = by.get(("duckdb", "parquet", name))
        check = {"query": name}
        if buf:
            check["buffer_ms"] = round(buf["p50_ms"], 1)
            check["buffer_ok"] = buf["p50_ms"] <= 50
        if delta:
            check["delta_ms"] = round(delta["p50_ms"], 1)
            check["delta_ok"] = delta["p50_ms"] <= 100
        if delta and duck:
            check["vs_duckdb"] = round(delta["p50_ms"] / duck["p50_ms"], 2)
            check["vs_duckdb_ok"] = check["vs_duckdb"] <= 2
        checks.append(check)
        text = []
        if buf:
            text.append(f"buffer {check['buffer_ms']} ms {'ok' if check['buffer_ok'] else 'MISSED'}")
        if delta:
            text.append(f"delta {check['delta_ms']} ms {'ok' if check['delta_ok'] else 'MISSED'}")
        if "vs_duckdb" in check:
            text.append(f"vs DuckDB {check['vs_duckdb']}x {'ok' if check['vs_duckdb_ok'] else 'MISSED'}")
        print(f"  {name:<20} " + "; ".join(text))

    mismatched = [
        name for name in names
        if len({by[(s, p, name)]["rows"] for s, p in columns if (s, p, name) in by}) > 1
    ]
    if mismatched:
        print(f"\nrow counts differ between systems for: {', '.join(mismatched)}")
    print(json.dumps({"targets": checks, "mismatched_row_counts": mismatched}))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params")
    parser.add_argument("--delta")
    parser.add_argument("--delta-version", type=int, help="the version holding the loaded rows (later ones add live rows)")
    parser.add_argument("--csv")
    parser.add_argument("--chdb-dir")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--results")
    parser.add_argument("--report")
    parser.add_argument("--ingest", help="the --clickhouse-dir bench/ingest.rs wrote its rows to")
    args = parser.parse_args()
    if args.report:
        report(args.report)
        return
    if args.ingest:
        figures = clickhouse_ingest(args.ingest, args.chdb_dir)
        with open(args.results, "a") as out:
            out.write(json.dumps(figures) + "\n")
        return
    params = json.loads(Path(args.params).read_text())
    print(f"{'system':<11} {'phase':<8} {'query':<20} {'rows':>6} {'cold ms':>10} {'p50 ms':>10} {'p90 ms':>10}")
    systems = []
    if args.delta:
        systems.append(lambda: duckdb_timings(params, args.delta, args.delta_version, args.runs))
    if args.csv:
        systems.append(lambda: clickhouse_timings(params, args.csv, args.chdb_dir, args.runs))
    for timings in systems:
        with open(args.results, "a") as out:
            out.write(json.dumps(timings()) + "\n")


if __name__ == "__main__":
    main()
