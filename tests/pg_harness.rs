//! The throwaway PostgreSQL of tests/common/postgres.rs: it starts, stores, stops (its port
//! then refuses connections), restarts on the same port with the data intact, and leaves no
//! server or directory behind.

#[path = "common/postgres.rs"]
mod postgres;

use postgres::Postgres;

#[tokio::test(flavor = "multi_thread")]
async fn starts_stops_and_restarts_with_data_intact() {
    let Some(pg) = Postgres::start().await else {
        return;
    };
    let port = pg.port();
    assert_eq!(
        pg.url(),
        format!("postgres://keyway@127.0.0.1:{port}/keyway")
    );
    assert!(postgres::accepts(port), "nothing listens on {port}");
    assert_eq!(
        pg.psql("SELECT current_database() || '|' || current_user"),
        "keyway|keyway"
    );

    pg.psql("CREATE TABLE t(x int); INSERT INTO t VALUES (1);");
    assert_eq!(pg.psql("SELECT x FROM t"), "1");

    pg.stop().await;
    assert!(
        !postgres::accepts(port),
        "127.0.0.1:{port} still accepts connections after stop"
    );
    pg.stop().await; // idempotent

    pg.restart().await;
    assert_eq!(pg.port(), port, "restart moved to another port");
    assert!(
        postgres::accepts(port),
        "nothing listens on {port} after restart"
    );
    assert_eq!(pg.psql("SELECT x FROM t"), "1");

    // A second restart while running stops it first.
    pg.restart().await;
    assert_eq!(pg.psql("SELECT count(*) FROM t"), "1");

    // A failing statement panics with psql's error (the default hook, which would print the
    // expected panic and its backtrace, is set aside meanwhile: this is the binary's only test).
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        pg.psql("SELECT * FROM missing_table")
    }));
    std::panic::set_hook(hook);
    let err = err.expect_err("psql of a bad statement did not panic");
    let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        msg.contains("missing_table"),
        "unexpected panic message: {msg}"
    );

    drop(pg);
    assert!(
        !postgres::accepts(port),
        "127.0.0.1:{port} still accepts connections after drop"
    );
    let leftover: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&format!("keyway-pg-{}-", std::process::id())))
        .collect();
    assert!(leftover.is_empty(), "directories left behind: {leftover:?}");
}
