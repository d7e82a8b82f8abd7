"""UPDATE and DELETE as applications send them, side by side with PostgreSQL.

    python bench/mutations.py --target postgresql=DSN --target timefusion=DSN \\
        --results FILE.jsonl [--day-rows 100000] [--updates 1000] [--old-updates 100]
        [--small-updates 10000]
    python bench/mutations.py --report FILE.jsonl

Needs psycopg 3. Rows come from bench/write_shapes.py's generator (16 columns, arrays and JSON
filled, seeded), the same for every target. Per target, in the order given:

1. load (COPY): --day-rows rows of project A spread over yesterday, --day-rows // 24 rows of A
   in the last hour, and --day-rows rows of project B over yesterday. PostgreSQL gets
   write_shapes.py's table plus an index on (project_id, id), as an application that updates
   by id would have. TimeFusion: the script waits for yesterday's buckets to flush
   (run the server with TIMEFUSION_FLUSH_INTERVAL_SECS=1) and runs VACUUM, so yesterday is one
   compacted file per partition, as after a maintenance pass; the last hour stays mostly
   buffered.
2. queries_before: three dashboard queries over A (counts by level in the last hour, the
   latest 100 rows, yesterday by status), each run 5 times; the median of each is recorded.
3. update_by_id: --updates one-row `UPDATE … SET status_code = 'ERROR', … WHERE project_id = %s
   AND id = %s` (autocommit, parameters) of distinct rows in A's last hour: the enrichment
   pattern. Ack latency p50 / p99 and statements/s.
3b. update_fresh_by_id: --updates one-row updates, the same statement, of rows COPYed just
   before the step with timestamps in the last 30 seconds: spans enriched soon after they
   arrived, which TimeFusion still holds in its buffer (its default flush interval is 5 min
   and buckets are 10 min; this bench's 1 s interval flushes every earlier bucket of the
   hour at once, so update_by_id mostly rewrites Delta files). Then --updates // 10 one-row
   `DELETE … WHERE project_id = %s AND id = %s` of other fresh rows (delete_fresh_by_id).
4. update_in_list: the same change to --updates other rows of the hour as one statement
   (`id IN (%s, …)`): its latency.
5. update_old_by_id: --old-updates one-row updates of yesterday's rows (a compacted file).
6. small_updates: --small-updates more one-row updates in A's last hour (ids drawn with
   replacement); statements/s.
7. queries_after: the queries of step 2 again.
8. delete_day: `DELETE … WHERE project_id = B AND timestamp >= yesterday AND timestamp < today`
   (one statement): its latency. Every step checks the rows it changed (the command's row
   count) and the final counts; a mismatch makes the line say VERIFY FAILED.

--report FILE.jsonl prints each step with each target's figures and the ratio TimeFusion /
PostgreSQL of latency (> 1: TimeFusion is slower).
"""
import argparse
import datetime
import json
import os
import random
import sys
import time

import psycopg

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from write_shapes import COLUMNS, PG_DDL, TABLE, gen_rows, is_postgres, percentile  # noqa: E402

QUERIES = {
    "levels_last_hour": f"SELECT level, count(*) FROM {TABLE} WHERE project_id = %(p)s "
                        f"AND timestamp >= %(hour)s GROUP BY level ORDER BY level",
    "latest_100": f"SELECT id, timestamp, name, status_code FROM {TABLE} WHERE project_id = %(p)s "
                  f"ORDER BY timestamp DESC LIMIT 100",
    "yesterday_by_status": f"SELECT status_code, count(*) FROM {TABLE} WHERE project_id = %(p)s "
                           f"AND timestamp >= %(y0)s AND timestamp < %(y1)s GROUP BY status_code "
                           f"ORDER BY status_code",
}
UPDATE = (f"UPDATE {TABLE} SET status_code = 'ERROR', "
          f"attributes___http___response___status_code = 500 WHERE project_id = %s AND id = %s")

DELETE_BY_ID = f"DELETE FROM {TABLE} WHERE project_id = %s AND id = %s"


def rows_between(rng, n, project, start, end):
    """`n` generated rows of `project` with timestamps spread over [start, end)."""
    rows = gen_rows(rng, n, "mutations", "x", end)
    span = (end - start).total_seconds()
    out = []
    for r in rows:
        r = list(r)
        r[0] = project
        r[1] = start + datetime.timedelta(seconds=rng.random() * span)
        out.append(tuple(r))
    return out


def copy_rows(conn, rows):
    with conn.cursor() as cur:
        with cur.copy(f"COPY {TABLE} ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)


def timed(conn, sql, params):
    started = time.perf_counter()
    with conn.cursor() as cur:
        cur.execute(sql, params)
        if cur.description:
            cur.fetchall()
        changed = cur.rowcount
    return time.perf_counter() - started, changed


def queries(conn, params):
    out = {}
    for name, sql in QUERIES.items():
        times = sorted(timed(conn, sql, params)[0] for _ in range(5))
        out[name] = round(times[2] * 1000, 2)
    return out


def updates(conn, project, ids, sql=None):
    """One statement per id (`UPDATE` unless `sql` says otherwise), each expected to change
    one row: throughput and ack latency."""
    sql = sql or UPDATE
    latencies = []
    ok = True
    started = time.perf_counter()
    for i in ids:
        elapsed, changed = timed(conn, sql, (project, i))
        latencies.append(elapsed)
        ok = ok and changed == 1
    total = time.perf_counter() - started
    latencies.sort()
    return {
        "statements": len(ids),
        "per_s": round(len(ids) / total, 1),
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 2),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
        "verified": ok,
    }


def count(conn, project):
    with conn.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {TABLE} WHERE project_id = %s", (project,))
        return cur.fetchone()[0]


def run_target(name, dsn, args, data, emit):
    conn = psycopg.connect(dsn, autocommit=True)
    if is_postgres(name):
        conn.execute(PG_DDL)
        conn.execute(f"CREATE INDEX ON {TABLE} (project_id, id)")
    a, b = data["a"], data["b"]
    started = time.perf_counter()
    copy_rows(conn, data["a_day"] + data["a_hour"] + data["b_day"])
    loaded = time.perf_counter() - started
    if not is_postgres(name):
        time.sleep(3)  # the flusher takes yesterday's sealed buckets (flush interval 1 s)
        conn.execute("VACUUM")
    emit(name, "load", {"rows": data["total"], "s": round(loaded, 2),
                        "verified": count(conn, a) + count(conn, b) == data["total"]})
    params = {"p": a, "hour": data["hour"], "y0": data["y0"], "y1": data["y1"]}
    emit(name, "queries_before", {"median_ms": queries(conn, params), "verified": True})
    emit(name, "update_by_id", updates(conn, a, data["hour_ids"]))
    # Fresh rows: the same for every target, stamped when this target's step starts.
    fresh_rng = random.Random(7)
    now = datetime.datetime.now(datetime.timezone.utc)
    fresh = rows_between(fresh_rng, 2 * args.updates, a, now - datetime.timedelta(seconds=30), now)
    copy_rows(conn, fresh)
    fresh_ids = [r[2] for r in fresh]
    emit(name, "update_fresh_by_id", updates(conn, a, fresh_ids[:args.updates]))
    deleted = fresh_ids[args.updates:args.updates + max(args.updates // 10, 1)]
    emit(name, "delete_fresh_by_id", updates(conn, a, deleted, DELETE_BY_ID))
    in_list = data["list_ids"]
    elapsed, changed = timed(
        conn,
        UPDATE.replace("AND id = %s", f"AND id IN ({', '.join(['%s'] * len(in_list))})"),
        (a, *in_list))
    emit(name, "update_in_list", {"ms": round(elapsed * 1000, 2), "rows": changed,
                                  "verified": changed == len(in_list)})
    if data["old_ids"]:
        emit(name, "update_old_by_id", updates(conn, a, data["old_ids"]))
    if data["small_ids"]:
        emit(name, "small_updates", updates(conn, a, data["small_ids"]))
    emit(name, "queries_after", {"median_ms": queries(conn, params), "verified": True})
    elapsed, changed = timed(
        conn,
        f"DELETE FROM {TABLE} WHERE project_id = %s AND timestamp >= %s AND timestamp < %s",
        (b, data["y0"], data["y1"]))
    emit(name, "delete_day", {"ms": round(elapsed * 1000, 2), "rows": changed,
                              "verified": changed == len(data["b_day"]) and count(conn, b) == 0})
    conn.close()


def run(args):
    rng = random.Random(42)
    token = "%06x" % random.getrandbits(24)
    now = datetime.datetime.now(datetime.timezone.utc)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    y0 = today - datetime.timedelta(days=1)
    a, b = f"bench-mut-{token}-a", f"bench-mut-{token}-b"
    hour = now - datetime.timedelta(hours=1)
    data = {
        "a": a, "b": b, "y0": y0, "y1": today, "hour": hour,
        "a_day": rows_between(rng, args.day_rows, a, y0, today),
        "a_hour": rows_between(rng, max(args.day_rows // 24, 2 * args.updates), a, hour, now),
        "b_day": rows_between(rng, args.day_rows, b, y0, today),
    }
    data["total"] = len(data["a_day"]) + len(data["a_hour"]) + len(data["b_day"])
    picked = [r[2] for r in rng.sample(data["a_hour"], 2 * args.updates)]
    data["hour_ids"], data["list_ids"] = picked[:args.updates], picked[args.updates:]
    data["old_ids"] = [r[2] for r in rng.sample(data["a_day"], args.old_updates)]
    data["small_ids"] = [rng.choice(data["a_hour"])[2] for _ in range(args.small_updates)]
    failed = False

    def emit(target, step, figures):
        nonlocal failed
        rec = {"target": target, "step": step, **figures,
               "at": datetime.datetime.now(datetime.timezone.utc).isoformat()}
        failed = failed or not figures.get("verified", True)
        print(json.dumps(rec), flush=True)
        with open(args.results, "a") as f:
            f.write(json.dumps(rec) + "\n")

    for target in args.target:
        name, dsn = target.split("=", 1)
        try:
            run_target(name, dsn, args, data, emit)
        except Exception as e:  # noqa: BLE001 - recorded, the other targets still run
            emit(name, "error", {"error": str(e), "verified": False})
    return 1 if failed else 0


def report(path):
    recs = {}
    for line in open(path):
        rec = json.loads(line)
        recs[(rec["target"], rec["step"])] = rec
    targets = sorted({t for t, _ in recs}, key=lambda t: (not is_postgres(t), t))
    pg = next((t for t in targets if is_postgres(t)), None)
    tf = next((t for t in targets if not is_postgres(t)), None)
    for step in ["load", "update_by_id", "update_fresh_by_id", "delete_fresh_by_id",
                 "update_in_list", "update_old_by_id", "small_updates", "delete_day"]:
        cells = []
        for t in targets:
            r = recs.get((t, step))
            if not r:
                continue
            if "p50_ms" in r:
                cells.append(f"{t}: {r['per_s']}/s p50 {r['p50_ms']} ms p99 {r['p99_ms']} ms")
            elif "ms" in r:
                cells.append(f"{t}: {r['ms']} ms ({r['rows']} rows)")
            else:
                cells.append(f"{t}: {r['s']} s ({r['rows']} rows)")
            if not r.get("verified", True):
                cells[-1] += " VERIFY FAILED"
        ratio = ""
        p, f = recs.get((pg, step)), recs.get((tf, step))
        if p and f:
            key = "p50_ms" if "p50_ms" in p else "ms" if "ms" in p else "s"
            if p.get(key) and f.get(key):
                ratio = f"  ratio TF/PG latency x{f[key] / p[key]:.2f}"
        print(f"{step:14} " + " | ".join(cells) + ratio)
    for step in ["queries_before", "queries_after"]:
        for q in QUERIES:
            cells = [f"{t}: {recs[(t, step)]['median_ms'][q]} ms" for t in targets if (t, step) in recs]
            print(f"{step:14} {q:20} " + " | ".join(cells))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", action="append", default=[])
    parser.add_argument("--results")
    parser.add_argument("--day-rows", type=int, default=100_000)
    parser.add_argument("--updates", type=int, default=1000)
    parser.add_argument("--old-updates", type=int, default=100)
    parser.add_argument("--small-updates", type=int, default=10_000)
    parser.add_argument("--report")
    args = parser.parse_args()
    if args.report:
        report(args.report)
        return 0
    if not args.target or not args.results:
        parser.error("--target and --results are needed (or --report)")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
