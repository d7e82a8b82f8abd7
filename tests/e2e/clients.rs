//! What Postgres clients and tools rely on beyond plain SQL: psql's backslash commands, the
//! catalog functions tools call on connect, several statements in one simple query, session
//! commands, transactions and typed parameters — each against the real server.

use crate::common::*;
use tokio_postgres::SimpleQueryMessage;
use tokio_postgres::types::Type;

fn psql(server: &TestServer, command: &str) -> String {
    let out = psql_command(&server.url(), &["-c", command])
        .output()
        .expect("run psql (install postgresql-client)");
    assert!(
        out.status.success(),
        "psql {command} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[tokio::test]
async fn psql_backslash_commands_describe_the_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path(), &[]);
    let tables = psql(&server, "\\dt");
    assert!(tables.contains(TABLE), "\\dt lists the table:\n{tables}");
    let columns = psql(&server, &format!("\\d {TABLE}"));
    for column in ["project_id", "timestamp", "attributes", "duration"] {
        assert!(
            columns.contains(column),
            "\\d shows column {column}:\n{columns}"
        );
    }
    let schemas = psql(&server, "\\dn");
    assert!(schemas.contains("public"), "\\dn lists public:\n{schemas}");
    let databases = psql(&server, "\\l");
    assert!(
        databases.contains("postgres") && !databases.contains("datafusion"),
        "\\l lists the one database, postgres:\n{databases}"
    );
    let database = psql(&server, "SELECT current_database(), current_catalog");
    assert!(
        database.contains(" postgres         | postgres"),
        "current_database() is the database \\l lists:\n{database}"
    );
}

#[tokio::test]
async fn catalog_functions_and_session_commands() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path(), &[]);
    let client = server.client().await;

    let version: String = client
        .query_one("SELECT version()", &[])
        .await
        .expect("version()")
        .get(0);
    assert!(
        version.starts_with("PostgreSQL 1"),
        "tools parse version() as 'PostgreSQL X.Y …': {version}"
    );
    let row = client
        .query_one("SELECT current_schema(), current_database()", &[])
        .await
        .expect("current_schema");
    assert_eq!(row.get::<_, String>(0), "public");
    assert!(!row.get::<_, String>(1).is_empty());

    let columns = client
        .query(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = $1 ORDER BY ordinal_position",
            &[&TABLE],
        )
        .await
        .expect("information_schema.columns");
    assert!(columns.len() > 50, "{} columns", columns.len());
    assert_eq!(columns[1].get::<_, String>(0), "timestamp");

    // Grafana sends settings and its query in one simple query.
    let messages = client
        .simple_query("SET application_name = 'grafana'; SELECT 1 AS one; SELECT 'two' AS two")
        .await
        .expect("several statements");
    assert_eq!(
        rows(&messages),
        vec![vec![Some("1".to_string())], vec![Some("two".to_string())]]
    );
    let messages = client.simple_query("").await.expect("empty query");
    assert!(rows(&messages).is_empty());

    client
        .batch_execute("SET statement_timeout = 0")
        .await
        .expect("SET");
    let shown = client
        .simple_query("SHOW application_name")
        .await
        .expect("SHOW");
    assert_eq!(rows(&shown), vec![vec![Some("grafana".to_string())]]);

    client.batch_execute("BEGIN").await.expect("BEGIN");
    client
        .execute(&insert_sql("tx", &ids("tx", 3), past_micros(1)), &[])
        .await
        .expect("insert in a transaction");
    client.batch_execute("COMMIT").await.expect("COMMIT");
    client.batch_execute("BEGIN").await.expect("BEGIN");
    client.batch_execute("ROLLBACK").await.expect("ROLLBACK");
    assert_eq!(count(&client, "WHERE project_id = 'tx'").await, 3);
}

/// After a statement fails inside a transaction block, PostgreSQL refuses everything but the
/// block's end with 25P02: an INSERT sent then is not written, in either protocol.
#[tokio::test]
async fn a_failed_transaction_block_refuses_statements_until_it_ends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path(), &[]);
    let client = server.client().await;
    let aborted = (
        "25P02".to_string(),
        "current transaction is aborted, commands ignored until end of transaction block"
            .to_string(),
    );
    client.batch_execute("BEGIN").await.expect("BEGIN");
    client
        .batch_execute(&insert_sql("tx", &ids("before", 1), past_micros(1)))
        .await
        .expect("insert before the failure");
    assert_eq!(
        db_error(
            client
                .batch_execute("SELECT no_such_column FROM nowhere")
                .await
        )
        .0,
        "42P01"
    );
    let insert = insert_sql("tx", &ids("after", 2), past_micros(1));
    assert_eq!(db_error(client.batch_execute(&insert).await), aborted);
    assert_eq!(
        db_error(client.execute(&insert, &[]).await),
        aborted,
        "extended protocol"
    );
    assert_eq!(
        db_error(client.batch_execute("SET statement_timeout = 5").await),
        aborted
    );
    assert_eq!(
        db_error(client.batch_execute("SHOW statement_timeout").await),
        aborted
    );
    assert_eq!(db_error(client.batch_execute("SELECT 1").await), aborted);
    client
        .batch_execute("ROLLBACK")
        .await
        .expect("ROLLBACK ends the block");
    // Writes are durable when acknowledged, so the one before the failure stays.
    assert_eq!(count(&client, "WHERE project_id = 'tx'").await, 1);
    let shown = client
        .simple_query("SHOW statement_timeout")
        .await
        .expect("SHOW after the block");
    assert_eq!(rows(&shown), vec![vec![Some("0".to_string())]]);
}

/// The SQLSTATE and message of `result`'s error.
fn db_error<T: std::fmt::Debug>(result: Result<T, tokio_postgres::Error>) -> (String, String) {
    let error = result.expect_err("an error");
    let db = error.as_db_error().expect("a server error");
    (db.code().code().to_string(), db.message().to_string())
}

/// `SET`, `RESET` and `SHOW` take PostgreSQL 15's parameter names, and answer any other name
/// as PostgreSQL does, in both protocols.
#[tokio::test]
async fn settings_take_postgres_parameter_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path(), &[]);
    let client = server.client().await;
    let unknown = (
        "42704".to_string(),
        "unrecognized configuration parameter \"some_unknown_name\"".to_string(),
    );
    for statement in [
        "RESET some_unknown_name",
        "SET some_unknown_name = 1",
        "SHOW some_unknown_name",
    ] {
        assert_eq!(
            db_error(client.batch_execute(statement).await),
            unknown,
            "{statement}"
        );
        assert_eq!(
            db_error(client.execute(statement, &[]).await),
            unknown,
            "{statement} (extended protocol)"
        );
    }
    assert_eq!(
        db_error(client.batch_execute("RESET server_version").await),
        (
            "55P02".to_string(),
            "parameter \"server_version\" cannot be changed".to_string()
        )
    );

    // Tools parse SHOW server_version as PostgreSQL's, on either protocol.
    for name in ["server_version", "server_version_num"] {
        let simple = client
            .simple_query(&format!("SHOW {name}"))
            .await
            .unwrap_or_else(|e| panic!("SHOW {name}: {e}"));
        let extended: String = client
            .query_one(&format!("SHOW {name}"), &[])
            .await
            .unwrap_or_else(|e| panic!("SHOW {name} (extended protocol): {e}"))
            .get(0);
        assert_eq!(rows(&simple), vec![vec![Some(extended.clone())]], "{name}");
        let expected = if name == "server_version" {
            "15.0 (TimeFusion)"
        } else {
            "150000"
        };
        assert_eq!(extended, expected, "{name}");
    }

    // Whatever SET takes, RESET takes too.
    for (name, value) in [
        ("statement_timeout", "5s"),
        ("application_name", "tool"),
        ("search_path", "public"),
        ("DateStyle", "ISO, MDY"),
        ("\"TimeZone\"", "UTC"),
        ("work_mem", "64MB"),
        ("myapp.tenant", "acme"),
    ] {
        client
            .batch_execute(&format!("SET {name} = '{value}'; RESET {name}"))
            .await
            .unwrap_or_else(|e| panic!("SET and RESET {name}: {e}"));
        client
            .execute(&format!("RESET {name}"), &[])
            .await
            .unwrap_or_else(|e| panic!("RESET {name} (extended protocol): {e}"));
    }
    client
        .batch_execute("SET application_name = 'tool'")
        .await
        .expect("SET");
    client
        .batch_execute("RESET application_name")
        .await
        .expect("RESET");
    let shown = client
        .simple_query("SHOW application_name")
        .await
        .expect("SHOW");
    assert_ne!(rows(&shown), vec![vec![Some("tool".to_string())]]);
    client.batch_execute("RESET ALL").await.expect("RESET ALL");

    // SHOW ALL: name, setting, description of what the session has, in both protocols.
    client
        .batch_execute(
            "SET TIME ZONE 'Asia/Tokyo'; SET statement_timeout = '5s'; SET myapp.tenant = 'acme'",
        )
        .await
        .expect("SET");
    let all = rows(&client.simple_query("SHOW ALL").await.expect("SHOW ALL"));
    let setting = |name: &str| {
        all.iter()
            .find(|row| row[0].as_deref() == Some(name))
            .and_then(|row| row[1].clone())
    };
    assert_eq!(
        setting("TimeZone").as_deref(),
        Some("Asia/Tokyo"),
        "{all:?}"
    );
    assert_eq!(setting("statement_timeout").as_deref(), Some("5s"));
    assert_eq!(setting("myapp.tenant").as_deref(), Some("acme"));
    assert_eq!(
        setting("server_version").as_deref(),
        Some("15.0 (TimeFusion)")
    );
    let names: Vec<String> = all.iter().filter_map(|row| row[0].clone()).collect();
    let mut sorted = names.clone();
    sorted.sort_by_key(|name| name.to_lowercase());
    assert_eq!(names, sorted, "sorted by name");
    let extended = client
        .query("SHOW ALL", &[])
        .await
        .expect("SHOW ALL (extended)");
    let columns: Vec<&str> = extended[0].columns().iter().map(|c| c.name()).collect();
    assert_eq!(columns, ["name", "setting", "description"]);
    assert_eq!(extended.len(), all.len());
    client.batch_execute("RESET ALL").await.expect("RESET ALL");
}

/// A `SET` stays in its session: DataFusion's configuration is shared by every connection,
/// so a setting sent on to it (as `SET timezone` was) changed every other session's answers.
/// `SHOW` answers the session's value, or PostgreSQL's default, in both protocols.
#[tokio::test]
async fn settings_stay_in_their_session() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path(), &[]);
    let setter = server.client().await;
    let other = server.client().await;
    let text = |messages: Vec<SimpleQueryMessage>| rows(&messages)[0][0].clone().expect("a value");
    let now_text = "SELECT now()::text";
    let before = text(other.simple_query(now_text).await.expect("now"));
    setter
        .batch_execute(
            "SET timezone = 'Europe/Berlin'; SET datafusion.execution.batch_size = 3; SET myapp.tenant = acme",
        )
        .await
        .expect("SET");
    for (client, tz) in [(&setter, "Europe/Berlin"), (&other, "UTC")] {
        for show in ["SHOW timezone", "SHOW TIME ZONE", "SHOW \"TimeZone\""] {
            assert_eq!(
                text(client.simple_query(show).await.expect("SHOW")),
                tz,
                "{show}"
            );
            let extended: String = client.query_one(show, &[]).await.expect("SHOW").get(0);
            assert_eq!(extended, tz, "{show} (extended protocol)");
        }
    }
    assert_eq!(
        text(
            setter
                .simple_query("SHOW myapp.tenant")
                .await
                .expect("SHOW")
        ),
        "acme"
    );
    assert_eq!(
        text(
            setter
                .simple_query("SHOW datafusion.execution.batch_size")
                .await
                .expect("SHOW")
        ),
        "3"
    );
    assert_eq!(
        text(
            other
                .simple_query("SHOW client_encoding")
                .await
                .expect("SHOW")
        ),
        "UTF8"
    );
    // The other session's clock still reads in UTC, as before the SET.
    let after = text(other.simple_query(now_text).await.expect("now"));
    assert_eq!(
        after.contains('+'),
        before.contains('+'),
        "{before} then {after}"
    );
    setter
        .batch_execute("SET TIME ZONE DEFAULT")
        .await
        .expect("SET TIME ZONE DEFAULT");
    assert_eq!(
        text(setter.simple_query("SHOW TIME ZONE").await.expect("SHOW")),
        "UTC"
    );
    setter
        .batch_execute("SET TIME ZONE 'Asia/Tokyo'")
        .await
        .expect("SET TIME ZONE");
    assert_eq!(
        text(setter.simple_query("SHOW timezone").await.expect("SHOW")),
        "Asia/Tokyo"
    );
    setter.batch_execute("RESET timezone").await.expect("RESET");
    assert_eq!(
        text(setter.simple_query("SHOW timezone").await.expect("SHOW")),
        "UTC"
    );
    // `RESET TIME ZONE`, which sqlparser cannot parse, in both protocols.
    setter
        .batch_execute("SET TIME ZONE 'Asia/Tokyo'; reset time  zone")
        .await
        .expect("RESET TIME ZONE (simple protocol)");
    assert_eq!(
        text(setter.simple_query("SHOW timezone").await.expect("SHOW")),
        "UTC"
    );
    setter
        .batch_execute("SET TIME ZONE 'Asia/Tokyo'")
        .await
        .expect("SET TIME ZONE");
    setter
        .execute("RESET TIME ZONE", &[])
        .await
        .expect("RESET TIME ZONE (extended protocol)");
    assert_eq!(
        text(setter.simple_query("SHOW timezone").await.expect("SHOW")),
        "UTC"
    );

    // SET LOCAL lasts until its transaction ends (behind a transaction-pooling proxy the next
    // transaction may be another client's), and outside a transaction does nothing.
    let show = |sql: &'static str| {
        let setter = &setter;
        async move { text(setter.simple_query(sql).await.expect("SHOW")) }
    };
    setter
        .batch_execute("SET LOCAL myapp.tenant = 'outside'")
        .await
        .expect("SET LOCAL outside a transaction");
    assert_eq!(show("SHOW myapp.tenant").await, "acme");
    setter.batch_execute("BEGIN").await.expect("BEGIN");
    setter
        .batch_execute("SET LOCAL myapp.tenant = 'inside'; SET LOCAL TIME ZONE 'Asia/Tokyo'")
        .await
        .expect("SET LOCAL");
    assert_eq!(show("SHOW myapp.tenant").await, "inside");
    assert_eq!(show("SHOW TIME ZONE").await, "Asia/Tokyo");
    setter.batch_execute("COMMIT").await.expect("COMMIT");
    assert_eq!(show("SHOW myapp.tenant").await, "acme");
    assert_eq!(show("SHOW TIME ZONE").await, "UTC");
    setter.batch_execute("BEGIN").await.expect("BEGIN");
    setter
        .execute("SET LOCAL myapp.tenant = 'again'", &[])
        .await
        .expect("SET LOCAL (extended protocol)");
    assert_eq!(show("SHOW myapp.tenant").await, "again");
    setter.batch_execute("ROLLBACK").await.expect("ROLLBACK");
    assert_eq!(show("SHOW myapp.tenant").await, "acme");
    // A plain SET after a SET LOCAL outlives the transaction, as in PostgreSQL.
    setter.batch_execute("BEGIN").await.expect("BEGIN");
    setter
        .batch_execute("SET LOCAL myapp.tenant = 'local'; SET myapp.tenant = 'kept'")
        .await
        .expect("SET LOCAL, then SET");
    setter.batch_execute("COMMIT").await.expect("COMMIT");
    assert_eq!(show("SHOW myapp.tenant").await, "kept");
}

#[tokio::test]
async fn typed_parameters_in_binary_format() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path(), &[]);
    let client = server.client().await;
    let now = chrono::Utc::now();
    let insert = client
        .prepare_typed(
            &format!(
                "INSERT INTO {TABLE} (project_id, timestamp, id, duration, context___is_remote) VALUES ($1, $2, $3, $4, $5)"
            ),
            &[Type::TEXT, Type::TIMESTAMPTZ, Type::TEXT, Type::INT8, Type::BOOL],
        )
        .await
        .expect("prepare insert");
    for i in 0..5i64 {
        client
            .execute(
                &insert,
                &[
                    &"bin",
                    &(now - chrono::Duration::seconds(i)),
                    &format!("b-{i}"),
                    &(i * 1000),
                    &(i % 2 == 0),
                ],
            )
            .await
            .expect("insert with binary parameters");
    }
    let row = client
        .query_one(
            &format!(
                "SELECT count(*), sum(duration), max(timestamp) FROM {TABLE} WHERE project_id = $1 AND timestamp > $2 AND context___is_remote = $3"
            ),
            &[&"bin", &(now - chrono::Duration::hours(1)), &true],
        )
        .await
        .expect("query with binary parameters");
    assert_eq!(row.get::<_, i64>(0), 3);
    assert_eq!(row.get::<_, i64>(1), 6000);
    let latest: chrono::DateTime<chrono::Utc> = row.get(2);
    assert_eq!(latest.timestamp_micros(), now.timestamp_micros());

    // Parameters inside select-list subqueries, over a derived table and correlated: each
    // keeps its place and its value (the compatibility parser made these NULL).
    let rows = client
        .query(
            &format!(
                "SELECT o.id, (SELECT max(q.d) + $1 FROM (SELECT duration AS d FROM {TABLE} WHERE project_id = $2) q), \
                 (SELECT count(*) FROM {TABLE} c WHERE c.project_id = $2 AND c.id = o.id) \
                 FROM {TABLE} o WHERE o.project_id = $2 ORDER BY o.id"
            ),
            &[&1i64, &"bin"],
        )
        .await
        .expect("subqueries with parameters");
    let got: Vec<(String, i64, i64)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let expected: Vec<(String, i64, i64)> =
        (0..5i64).map(|i| (format!("b-{i}"), 4001, 1)).collect();
    assert_eq!(got, expected);
}

/// Result columns carry PostgreSQL's names (`count`, `max`, `?column?`, the cast's type), not
/// DataFusion's expression text, in both protocols: drivers read rows by these names.
#[tokio::test]
async fn result_columns_are_named_as_postgres_names_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path(), &[]);
    let client = server.client().await;
    let query = format!(
        "SELECT count(*), max(duration), project_id, 1 + 1, now()::text, '1'::int, \
         (name), attributes->>'a', count(id) AS spans FROM {TABLE} \
         GROUP BY project_id, name, attributes"
    );
    let postgres = [
        "count",
        "max",
        "project_id",
        "?column?",
        "now",
        "int4",
        "name",
        "?column?",
        "spans",
    ];
    let simple = client.simple_query(&query).await.expect("simple query");
    let Some(SimpleQueryMessage::RowDescription(columns)) = simple.first() else {
        panic!("no RowDescription first: {simple:?}");
    };
    let names: Vec<&str> = columns.iter().map(|c| c.name()).collect();
    assert_eq!(names, postgres, "simple protocol");
    let prepared = client.prepare(&query).await.expect("prepare");
    let names: Vec<&str> = prepared.columns().iter().map(|c| c.name()).collect();
    assert_eq!(names, postgres, "extended protocol (Describe)");

    // Two columns may share a name, as in PostgreSQL; the row is read by the first.
    client
        .batch_execute(&format!(
            "INSERT INTO {TABLE} (project_id, timestamp, id, name) VALUES ('p', now(), 'a', 'n')"
        ))
        .await
        .expect("insert");
    let row = client
        .query_one(
            &format!(
                "SELECT count(*), count(name), n.* FROM {TABLE}, (SELECT 7 AS k) n GROUP BY n.k"
            ),
            &[],
        )
        .await
        .expect("query");
    let names: Vec<&str> = row.columns().iter().map(|c| c.name()).collect();
    assert_eq!(names, ["count", "count", "k"]);
    assert_eq!(row.get::<_, i64>("count"), 1);
    assert_eq!(row.get::<_, i64>("k"), 7);

    // A select list may repeat a name, even where DataFusion's names collide (a column and a
    // cast of it, two equal constants), in both protocols.
    let query = format!("SELECT name, name::text, 1, 1, timestamp::date FROM {TABLE}");
    let simple = client
        .simple_query(&query)
        .await
        .expect("repeated names, simple");
    let cells = rows(&simple);
    assert_eq!(cells.len(), 1, "{cells:?}");
    assert_eq!(
        cells[0][..4],
        [Some("n"), Some("n"), Some("1"), Some("1")].map(|c| c.map(String::from))
    );
    assert!(cells[0][4].is_some(), "{cells:?}");
    let row = client
        .query_one(&query, &[])
        .await
        .expect("repeated names, extended");
    let names: Vec<&str> = row.columns().iter().map(|c| c.name()).collect();
    assert_eq!(names, ["name", "name", "?column?", "?column?", "timestamp"]);
    assert_eq!(row.get::<_, &str>(1), "n");
    assert_eq!(row.get::<_, i64>(3), 1);
    let query = format!("SELECT *, timestamp::date, upper(name), upper(name::text) FROM {TABLE}");
    let row = client
        .query_one(&query, &[])
        .await
        .expect("a wildcard and a cast column");
    let names: Vec<&str> = row.columns().iter().map(|c| c.name()).collect();
    assert_eq!(names[names.len() - 3..], ["timestamp", "upper", "upper"]);
    assert_eq!(names.iter().filter(|n| **n == "timestamp").count(), 2);
    // Aggregates and window functions that differ only in casts, which DataFusion names
    // alike inside their own plan nodes; HAVING and ORDER BY refer to the same aggregates.
    client
        .batch_execute(&format!(
            "INSERT INTO {TABLE} (project_id, timestamp, id, name, duration) \
             VALUES ('q', now(), 'q-1', 'n', 7)"
        ))
        .await
        .expect("insert");
    let query = format!(
        "SELECT name, max(duration), max(duration::float8), sum(duration::float8), \
         lag(duration::text) OVER (ORDER BY name), lag(duration) OVER (ORDER BY name) \
         FROM {TABLE} WHERE project_id = 'q' GROUP BY name, duration \
         HAVING max(duration::float8) > 0 ORDER BY max(duration::float8) DESC"
    );
    for protocol in ["simple", "extended"] {
        let (names, cells) = if protocol == "simple" {
            let simple = client.simple_query(&query).await.expect("cast aggregates");
            let Some(SimpleQueryMessage::RowDescription(columns)) = simple.first() else {
                panic!("no RowDescription first: {simple:?}");
            };
            let names: Vec<String> = columns.iter().map(|c| c.name().to_string()).collect();
            let cells = rows(&simple).remove(0);
            (
                names,
                cells.into_iter().map(Option::unwrap_or_default).collect(),
            )
        } else {
            let row = client
                .query_one(&query, &[])
                .await
                .expect("cast aggregates");
            let names = row.columns().iter().map(|c| c.name().to_string()).collect();
            let cells = vec![
                row.get::<_, String>(0),
                row.get::<_, i64>(1).to_string(),
                row.get::<_, f64>(2).to_string(),
                row.get::<_, f64>(3).to_string(),
                row.get::<_, Option<String>>(4).unwrap_or_default(),
                row.get::<_, Option<i64>>(5)
                    .map(|v| v.to_string())
                    .unwrap_or_default(),
            ];
            (names, cells)
        };
        assert_eq!(
            names,
            ["name", "max", "max", "sum", "lag", "lag"],
            "{protocol}"
        );
        assert_eq!(
            cells[..4],
            ["n", "7", "7", "7"].map(String::from),
            "{protocol}"
        );
    }
    // Names come from the client's text in the extended protocol too, not from the
    // compatibility parser's rewrite (`current_user` becomes a `session_user` call there).
    let prepared = client
        .prepare("SELECT current_user, current_catalog, current_schema")
        .await
        .expect("prepare");
    let names: Vec<&str> = prepared.columns().iter().map(|c| c.name()).collect();
    assert_eq!(names, ["current_user", "current_catalog", "current_schema"]);

    let out = psql(
        &server,
        &format!("SELECT max(name), upper(min(name)) FROM {TABLE}"),
    );
    let header: Vec<&str> = out
        .lines()
        .next()
        .unwrap_or("")
        .split('|')
        .map(str::trim)
        .collect();
    assert_eq!(header, ["max", "upper"], "psql: {out}");
}

#[tokio::test]
async fn timestamps_and_floats_in_text_results_read_as_postgres_writes_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path(), &[]);
    let client = server.client().await;
    let query = "SELECT timestamptz '2026-11-23 10:00:00+00', timestamptz '2026-11-23 10:00:00.5+00', \
                 timestamp '2026-11-23 10:00:00.000120', NULL::timestamptz, 'x.000000'";
    let expected = vec![vec![
        Some("2026-11-23 10:00:00+00".to_string()),
        Some("2026-11-23 10:00:00.5+00".to_string()),
        Some("2026-11-23 10:00:00.00012".to_string()),
        None,
        Some("x.000000".to_string()),
    ]];
    let simple = client.simple_query(query).await.expect("simple query");
    assert_eq!(rows(&simple), expected);
    let shown = psql(&server, query);
    assert!(
        shown.contains(
            "2026-11-23 10:00:00+00 | 2026-11-23 10:00:00.5+00 | 2026-11-23 10:00:00.00012"
        ),
        "psql shows PostgreSQL's text: {shown}"
    );
    // Floats in float8out's form, not Ryu's (`7.0`, `1e20`, `1.5e-7`, `inf`).
    let floats = "SELECT 7::float8, 1e20::float8, 1.5e-7::float8, 'inf'::float8, 2.5::float4, \
                  1234567::float4, avg(x) FROM (VALUES (1), (2)) t(x)";
    let simple = client.simple_query(floats).await.expect("floats");
    assert_eq!(
        rows(&simple),
        vec![
            [
                "7",
                "1e+20",
                "1.5e-07",
                "Infinity",
                "2.5",
                "1.234567e+06",
                "1.5"
            ]
            .map(|c| Some(c.to_string()))
            .to_vec()
        ]
    );
}

/// pgAdmin's role lookup once overflowed the stack (unbounded recursion in
/// datafusion-pg-catalog's role provider for an `Arc`) and aborted the whole server: it
/// answers now, in both protocols, and the server goes on serving.
#[tokio::test]
async fn role_queries_answer_and_the_server_stays_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path(), &[]);
    let client = server.client().await;
    let sql = "SELECT rolname FROM pg_catalog.pg_roles WHERE rolname = 'postgres'";
    let simple = client.simple_query(sql).await.expect("simple protocol");
    let names: Vec<&str> = simple
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => row.get(0),
            _ => None,
        })
        .collect();
    assert_eq!(names, ["postgres"]);
    let rows = client.query(sql, &[]).await.expect("extended protocol");
    assert_eq!(rows.len(), 1);
    let other = server.client().await;
    let one: i64 = other
        .query_one("SELECT 1", &[])
        .await
        .expect("alive")
        .get(0);
    assert_eq!(one, 1);
}

/// `x = ANY($1)` / `x <> ALL($1)` with a list: `Describe` says the parameter is an array of
/// `x`'s type (PostgreSQL's answer), so drivers that encode by the server's types
/// (tokio-postgres here, asyncpg, pgx) send the list; before, it was `text` and they refused.
#[tokio::test]
async fn a_function_argument_parameter_takes_the_signatures_type() {
    // DataFusion infers no parameter type from a function's signature: `pg_cancel_backend($1)`
    // was described as unknown, and tokio-postgres refused to bind an i32 to it.
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path(), &[]);
    let client = server.client().await;
    let statement = client
        .prepare("SELECT pg_cancel_backend($1), to_number($2, '999')::text")
        .await
        .expect("prepare");
    assert_eq!(statement.params(), &[Type::INT4, Type::TEXT]);
    let row = client
        .query_one(&statement, &[&0i32, &"123"])
        .await
        .expect("bind an i32 and a str");
    assert!(!row.get::<_, bool>(0), "no session has pid 0");
    assert_eq!(row.get::<_, String>(1), "123");
}

#[tokio::test]
async fn an_array_parameter_of_any_and_all_takes_the_other_sides_type() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start(dir.path(), &[]);
    let client = server.client().await;
    let ids = ids("any", 4);
    client
        .batch_execute(&insert_sql("any1", &ids, past_micros(0)))
        .await
        .expect("insert");

    let by_id = client
        .prepare(&format!(
            "SELECT id FROM {TABLE} WHERE project_id = $1 AND id = ANY($2) ORDER BY id"
        ))
        .await
        .expect("prepare");
    assert_eq!(by_id.params(), &[Type::TEXT, Type::TEXT_ARRAY]);
    let wanted = vec![ids[1].clone(), ids[3].clone(), "no-such-id".to_string()];
    let rows = client
        .query(&by_id, &[&"any1", &wanted])
        .await
        .expect("= ANY");
    let found: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(found, [ids[1].clone(), ids[3].clone()]);

    let by_duration = client
        .prepare(&format!(
            "SELECT count(*) FROM {TABLE} WHERE project_id = 'any1' AND duration = ANY($1)"
        ))
        .await
        .expect("prepare");
    assert_eq!(by_duration.params(), &[Type::INT8_ARRAY]);
    let matched: i64 = client
        .query_one(&by_duration, &[&vec![0i64, 2, 7]])
        .await
        .expect("int8 = ANY")
        .get(0);
    assert_eq!(matched, 2);

    let others: i64 = client
        .query_one(
            &format!("SELECT count(*) FROM {TABLE} WHERE project_id = 'any1' AND id <> ALL($1)"),
            &[&vec![ids[0].clone()]],
        )
        .await
        .expect("<> ALL")
        .get(0);
    assert_eq!(others, 3);
    let none: i64 = client
        .query_one(
            &format!("SELECT count(*) FROM {TABLE} WHERE id = ANY($1)"),
            &[&Vec::<String>::new()],
        )
        .await
        .expect("an empty list")
        .get(0);
    assert_eq!(none, 0);

    // The same in UPDATE and DELETE (issue 21's enrichment and erasure by id lists).
    let updated = client
        .execute(
            &format!(
                "UPDATE {TABLE} SET name = 'renamed' WHERE project_id = 'any1' AND id = ANY($1)"
            ),
            &[&vec![ids[1].clone(), ids[2].clone()]],
        )
        .await
        .expect("UPDATE … = ANY($1)");
    assert_eq!(updated, 2);
    let deleted = client
        .execute(
            &format!("DELETE FROM {TABLE} WHERE project_id = 'any1' AND id = ANY($1)"),
            &[&vec![ids[0].clone()]],
        )
        .await
        .expect("DELETE … = ANY($1)");
    assert_eq!(deleted, 1);
    let renamed: i64 = client
        .query_one(
            &format!("SELECT count(*) FROM {TABLE} WHERE project_id = 'any1' AND name = 'renamed'"),
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(renamed, 2);
    assert_eq!(count(&client, "WHERE project_id = 'any1'").await, 3);
}
