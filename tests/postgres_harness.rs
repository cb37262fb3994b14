//! The PostgreSQL the tests of the shared state run against (issue 22):
//! a real cluster of this machine's PostgreSQL, started by the harness in
//! `tests/common/postgres.rs`, reachable on loopback only, with a database
//! per test.

mod common;

use common::postgres::Postgres;

#[test]
fn a_cluster_of_its_own_serves_a_database_per_test_on_loopback_only() {
    let pg = Postgres::shared();
    let version: u32 = pg.psql("postgres", "SHOW server_version_num").parse().expect("a version number");
    assert!(version >= 150_000, "PostgreSQL 15 or newer, got {version}");
    assert_eq!(pg.psql("postgres", "SHOW listen_addresses"), "127.0.0.1");
    let a = pg.database("harness");
    let b = pg.database("harness");
    assert_ne!(a, b);
    let db = |url: &str| url.rsplit('/').next().unwrap().to_string();
    pg.psql(&db(&a), "CREATE TABLE t (n int); INSERT INTO t VALUES (1), (2)");
    assert_eq!(pg.psql(&db(&a), "SELECT sum(n) FROM t"), "3");
    // Databases are apart: the other one has no such table.
    assert_eq!(pg.psql(&db(&b), "SELECT count(*) FROM pg_tables WHERE tablename = 't'"), "0");
}
