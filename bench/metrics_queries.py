"""Metric queries over otel_metrics against DuckDB and ClickHouse (chdb) on the same points.

`bench/run_metrics.sh` runs it: `metrics_queries.py load PORT END` writes 100 counters x 20
series, a point every 30 s over the 12 hours before END (2.88 M points) as InfluxDB line
protocol; after a restart has flushed them to Delta, `metrics_queries.py timefusion DIR`
(psycopg, over pgwire), `duckdb DIR` and `clickhouse DIR` (in-process, on the same Parquet files
under DIR, ClickHouse as a MergeTree sorted by metric, label set, time) run the same three
queries (a counter's rate per 5-minute bucket: one metric over 1 h and 12 h, all series; one
series over 12 h), 12 times each, and print the median of the last 10 and a checksum of the
one-series answer, which must agree.
"""

import random
import statistics
import sys
import time
import urllib.request


def load(port, end):
    """100 counters x 20 series, a point every 30 s over 12 hours, with rare resets."""
    random.seed(7)
    start = end - 12 * 3600
    values = {}

    def post(lines):
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/v2/write?precision=s&bucket=p",
            data="\n".join(lines).encode(),
            method="POST",
        )
        with urllib.request.urlopen(req) as r:
            assert r.status == 204

    lines, sent, t0 = [], 0, time.time()
    for t in range(start, end, 30):
        for m in range(100):
            for s in range(20):
                v = values.get((m, s), 0) + random.randint(0, 100)
                if random.random() < 0.0005:
                    v = random.randint(0, 10)
                values[(m, s)] = v
                lines.append(f"http_requests,svc=s{s},route=/r{s % 5} m{m}={v}i {t}")
        if len(lines) >= 100_000:
            post(lines)
            sent, lines = sent + len(lines), []
    if lines:
        post(lines)
        sent += len(lines)
    print(f"loaded {sent} points by line protocol in {time.time() - t0:.1f} s")


def queries(end):
    window = lambda hours: f"timestamp >= to_timestamp({end - hours * 3600}) AND timestamp < to_timestamp({end})"
    one = """attributes = '{"route":"/r1","svc":"s1"}'"""
    base = "FROM otel_metrics WHERE project_id = 'p' AND metric_name = 'http_requests_m42'"
    return {
        "rate_1h_all_series": (1, False, f"SELECT time_bucket(INTERVAL '5 minutes', timestamp), attributes, rate(value, timestamp) {base} AND {window(1)} GROUP BY 1, 2"),
        "rate_12h_all_series": (12, False, f"SELECT time_bucket(INTERVAL '5 minutes', timestamp), attributes, rate(value, timestamp) {base} AND {window(12)} GROUP BY 1, 2"),
        "rate_12h_one_series": (12, True, f"SELECT time_bucket(INTERVAL '5 minutes', timestamp), rate(value, timestamp) {base} AND {one} AND {window(12)} GROUP BY 1"),
    }


def duckdb_sql(end, hours, one):
    """rate as TimeFusion computes it: the sum of increases (a drop counts the new value)
    over the span between the bucket's first and last point."""
    where = f"metric_name = 'http_requests_m42' AND timestamp >= to_timestamp({end - hours * 3600}) AND timestamp < to_timestamp({end})"
    if one:
        where += """ AND attributes = '{"route":"/r1","svc":"s1"}'"""
    keys = "b" if one else "b, attributes"
    return f"""WITH d AS (SELECT time_bucket(INTERVAL '5 minutes', timestamp) AS b, attributes, timestamp, value,
      value - lag(value) OVER (PARTITION BY attributes, time_bucket(INTERVAL '5 minutes', timestamp) ORDER BY timestamp) AS delta
      FROM m WHERE {where})
    SELECT {keys}, sum(CASE WHEN delta >= 0 THEN delta WHEN delta < 0 THEN value END) / nullif(epoch(max(timestamp)) - epoch(min(timestamp)), 0) FROM d GROUP BY {keys}"""


def clickhouse_sql(end, hours, one):
    where = f"metric_name = 'http_requests_m42' AND timestamp >= toDateTime64({end - hours * 3600}, 6, 'UTC') AND timestamp < toDateTime64({end}, 6, 'UTC')"
    if one:
        where += """ AND attributes = '{"route":"/r1","svc":"s1"}'"""
    keys = "b" if one else "b, attributes"
    return f"""SELECT {keys}, sum(if(n = 1, 0, if(delta >= 0, delta, value))) / nullIf(toUnixTimestamp64Micro(max(timestamp)) - toUnixTimestamp64Micro(min(timestamp)), 0) * 1e6
    FROM (SELECT toStartOfInterval(timestamp, INTERVAL 5 MINUTE) AS b, attributes, timestamp, value,
            value - lagInFrame(value) OVER (PARTITION BY attributes, b ORDER BY timestamp ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS delta,
            row_number() OVER (PARTITION BY attributes, b ORDER BY timestamp) AS n
          FROM b.m WHERE {where})
    GROUP BY {keys}"""


def timed(run):
    times, rows = [], None
    for _ in range(12):
        t = time.perf_counter()
        rows = run()
        times.append(time.perf_counter() - t)
    return statistics.median(times[2:]) * 1000, rows


def report(system, name, ms, rows, one):
    check = ""
    if one:
        missing = (None, "\\N", "nan")
        total = sum(float(r[-1]) for r in rows if r[-1] not in missing)
        check = f", checksum {round(total, 6)}"
    print(f"{system:10} {name:20} {ms:7.1f} ms, {len(rows)} rows{check}")


def main():
    what = sys.argv[1]
    if what == "load":
        return load(int(sys.argv[2]), int(sys.argv[3]))
    end = int(sys.argv[3])
    if what == "timefusion":
        import psycopg

        c = psycopg.connect(f"host=127.0.0.1 port={sys.argv[2]} user=postgres password=postgres dbname=postgres", autocommit=True)
        for name, (_, one, sql) in queries(end).items():
            ms, rows = timed(lambda: c.execute(sql).fetchall())
            report("timefusion", name, ms, rows, one)
    elif what == "duckdb":
        import duckdb

        d = duckdb.connect()
        d.execute(f"CREATE VIEW m AS SELECT * FROM read_parquet('{sys.argv[2]}/**/*.parquet', hive_partitioning=true)")
        for name, (hours, one, _) in queries(end).items():
            sql = duckdb_sql(end, hours, one)
            ms, rows = timed(lambda: d.execute(sql).fetchall())
            report("duckdb", name, ms, rows, one)
    elif what == "clickhouse":
        from chdb import session

        s = session.Session()
        s.query("CREATE DATABASE IF NOT EXISTS b")
        s.query(f"""CREATE TABLE b.m ENGINE = MergeTree ORDER BY (metric_name, attributes, timestamp) AS
          SELECT assumeNotNull(metric_name) AS metric_name, assumeNotNull(attributes) AS attributes, timestamp, value
          FROM file('{sys.argv[2]}/*/*/*.parquet', Parquet)""")
        for name, (hours, one, _) in queries(end).items():
            sql = clickhouse_sql(end, hours, one)
            ms, out = timed(lambda: str(s.query(sql, "CSV")).strip().split("\n"))
            report("clickhouse", name, ms, [line.split(",") for line in out], one)


main()
