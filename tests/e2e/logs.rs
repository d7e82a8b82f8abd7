//! The log a person reads: with the default filter, TimeFusion's own events are there and the
//! libraries' per-query chatter is not.

use clap::CommandFactory;
use timefusion::config::Config;

use crate::common::*;

/// Lines at INFO from a target outside TimeFusion (delta-kernel logs one per scan).
fn library_info_lines(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter(|l| l.contains(" INFO ") && !l.contains("timefusion"))
        .cloned()
        .collect()
}

#[tokio::test]
async fn the_default_log_shows_server_events_not_library_chatter() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The declared default, whatever TIMEFUSION_LOG this test process runs with.
    let default = Config::command()
        .get_arguments()
        .find(|a| a.get_id() == "log")
        .and_then(|a| a.get_default_values().first())
        .and_then(|v| v.to_str())
        .expect("TIMEFUSION_LOG has a default")
        .to_string();
    let env = [("TIMEFUSION_LOG", default.as_str())];
    let server = TestServer::start(dir.path(), &env);
    let client = server.client().await;
    client
        .batch_execute(&insert_sql("p", &ids("a", 10), past_micros(2)))
        .await
        .expect("insert");
    // A graceful stop flushes the rows to Delta, so the next server's queries scan it.
    assert!(server.terminate().success());
    let server = TestServer::start(dir.path(), &env);
    let client = server.client().await;
    for _ in 0..3 {
        assert_eq!(count(&client, "WHERE project_id = 'p'").await, 10);
    }
    // The log is read as the server writes it: once the line of a VACUUM run after the
    // queries is in, every line the queries wrote is too.
    client.batch_execute("VACUUM").await.expect("vacuum");
    eventually(
        std::time::Duration::from_secs(10),
        "the maintenance line",
        || {
            let done = server.logged("maintenance done") > 0;
            async move { done }
        },
    )
    .await;
    let lines = server.log_lines();
    assert!(
        lines.iter().any(|l| l.contains("recovered")),
        "the server's own start-up events are logged: {lines:#?}"
    );
    assert!(
        !lines.iter().any(|l| l.contains('\u{1b}')),
        "no colour codes when stderr is not a terminal"
    );
    let chatter = library_info_lines(&lines);
    assert!(
        chatter.is_empty(),
        "{} INFO lines from libraries, the first: {:.300}",
        chatter.len(),
        chatter[0]
    );
}

#[tokio::test]
async fn info_everywhere_is_one_setting_away() {
    let dir = tempfile::tempdir().expect("tempdir");
    let env = [("TIMEFUSION_LOG", "info")];
    let server = TestServer::start(dir.path(), &env);
    let client = server.client().await;
    client
        .batch_execute(&insert_sql("p", &ids("a", 10), past_micros(2)))
        .await
        .expect("insert");
    assert!(server.terminate().success());
    let server = TestServer::start(dir.path(), &env);
    let client = server.client().await;
    assert_eq!(count(&client, "WHERE project_id = 'p'").await, 10);
    eventually(
        std::time::Duration::from_secs(10),
        "a library INFO line",
        || {
            let found = !library_info_lines(&server.log_lines()).is_empty();
            async move { found }
        },
    )
    .await;
}
