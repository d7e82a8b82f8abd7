-- Dashboard queries of the query benchmark (bench/query.rs, bench/baselines.py).
--
-- Each entry starts with `-- name:`; `-- about:` says what it stands for. The SQL after it is
-- what TimeFusion runs; a `-- <system>:` line (postgresql, duckdb, clickhouse) starts that
-- system's translation, used only where the dialect differs. Placeholders, filled from the
-- parameters the loader wrote: {table}, {project}, {hour_start}, {hour_end} (a one-hour window
-- in the middle of the data, ISO 8601 UTC), {trace_id} (a trace in that hour), {needle}.

-- name: endpoints_per_hour
-- about: requests and errors per endpoint per hour (COUNT FILTER), one project, one hour
SELECT date_trunc('hour', timestamp) AS hour, name,
       count(*) AS requests, count(*) FILTER (WHERE level = 'ERROR') AS errors
FROM {table}
WHERE project_id = '{project}' AND timestamp >= '{hour_start}' AND timestamp < '{hour_end}'
GROUP BY 1, 2 ORDER BY 1, 2
-- clickhouse:
SELECT toStartOfHour(timestamp) AS hour, name,
       count(*) AS requests, countIf(level = 'ERROR') AS errors
FROM {table}
WHERE project_id = '{project}' AND timestamp >= '{hour_start}' AND timestamp < '{hour_end}'
GROUP BY 1, 2 ORDER BY 1, 2

-- name: p95_per_5_minutes
-- about: p95 duration per 5-minute bucket (time_bucket, exact percentile), one project, one hour
SELECT time_bucket('5 minutes', timestamp) AS bucket,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY duration) AS p95
FROM {table}
WHERE project_id = '{project}' AND timestamp >= '{hour_start}' AND timestamp < '{hour_end}'
GROUP BY 1 ORDER BY 1
-- postgresql:
SELECT date_bin('5 minutes', timestamp, TIMESTAMPTZ '2000-01-03') AS bucket,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY duration) AS p95
FROM {table}
WHERE project_id = '{project}' AND timestamp >= '{hour_start}' AND timestamp < '{hour_end}'
GROUP BY 1 ORDER BY 1
-- duckdb:
SELECT time_bucket(INTERVAL '5 minutes', timestamp) AS bucket,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY duration) AS p95
FROM {table}
WHERE project_id = '{project}' AND timestamp >= '{hour_start}' AND timestamp < '{hour_end}'
GROUP BY 1 ORDER BY 1
-- clickhouse:
SELECT toStartOfFiveMinutes(timestamp) AS bucket, quantileExact(0.95)(duration) AS p95
FROM {table}
WHERE project_id = '{project}' AND timestamp >= '{hour_start}' AND timestamp < '{hour_end}'
GROUP BY 1 ORDER BY 1

-- name: trace_by_id
-- about: every span of one trace, one project, one hour
SELECT timestamp, id, parent_id, name, duration
FROM {table}
WHERE project_id = '{project}' AND timestamp >= '{hour_start}' AND timestamp < '{hour_end}'
  AND context___trace_id = '{trace_id}'
ORDER BY timestamp

-- name: trace_by_id_7_days
-- about: every span of one trace, one project, all 7 days (no time hint)
SELECT timestamp, id, parent_id, name, duration
FROM {table}
WHERE project_id = '{project}' AND context___trace_id = '{trace_id}'
ORDER BY timestamp

-- name: latest_100
-- about: the latest 100 logs of a tenant (README), whole project
SELECT timestamp, level, name, body
FROM {table}
WHERE project_id = '{project}'
ORDER BY timestamp DESC LIMIT 100

-- name: body_search
-- about: LIKE search over log bodies, one project, one hour
SELECT count(*) AS matches
FROM {table}
WHERE project_id = '{project}' AND timestamp >= '{hour_start}' AND timestamp < '{hour_end}'
  AND body LIKE '%{needle}%'

-- name: services_in_hour
-- about: the busiest services with mean and max duration, one project, one hour
SELECT resource___service___name AS service, count(*) AS spans,
       avg(duration) AS mean_duration, max(duration) AS max_duration
FROM {table}
WHERE project_id = '{project}' AND timestamp >= '{hour_start}' AND timestamp < '{hour_end}'
GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 20

-- name: tenant_7_days
-- about: whole-tenant 7-day aggregate per day: spans, errors, mean duration
SELECT date_trunc('day', timestamp) AS day, count(*) AS spans,
       count(*) FILTER (WHERE status_code = 'ERROR') AS errors, avg(duration) AS mean_duration
FROM {table}
WHERE project_id = '{project}'
GROUP BY 1 ORDER BY 1
-- clickhouse:
SELECT toStartOfDay(timestamp) AS day, count(*) AS spans,
       countIf(status_code = 'ERROR') AS errors, avg(duration) AS mean_duration
FROM {table}
WHERE project_id = '{project}'
GROUP BY 1 ORDER BY 1
