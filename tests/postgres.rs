//! PostgreSQL (issue 22): the cluster the tests of the shared state run
//! against, and the state's schema applied to it. The cluster is
//! this machine's PostgreSQL, started by the harness in
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

/// The schema's migrations, applied to a real database.
mod migrations {
    use super::Postgres;
    use stackpipe_state_postgres::{connect, latest_version, migrate, schema_version};

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
    }

    #[test]
    fn a_new_database_gets_every_table_once_even_from_processes_starting_together() {
        let pg = Postgres::shared();
        let url = pg.database("migrate");
        let rt = runtime();
        // Four clients at once: one applies each migration, the others find it applied.
        let applied: Vec<Vec<i32>> = rt.block_on(async {
            let tasks: Vec<_> = (0..4)
                .map(|_| {
                    let url = url.clone();
                    tokio::spawn(async move {
                        let mut client = connect(&url).await.expect("connects");
                        migrate(&mut client).await.expect("migrates").applied
                    })
                })
                .collect();
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.unwrap());
            }
            out
        });
        let all: Vec<i32> = applied.iter().flatten().copied().collect();
        let expected: Vec<i32> = (1..=latest_version()).collect();
        assert_eq!(all, expected, "each migration applied once in all: {applied:?}");
        let db = url.rsplit('/').next().unwrap();
        let tables = pg.psql(db, "SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables WHERE schemaname = 'public'");
        for t in ["audit", "blobs", "counters", "decisions", "executions", "job_edges", "job_queue", "jobs", "journal", "locks", "logs", "resources", "runners", "runs", "schema_migrations", "services", "snapshots", "users"] {
            assert!(tables.split(',').any(|x| x == t), "no table {t} in {tables}");
        }
        // Again: nothing to do.
        rt.block_on(async {
            let mut client = connect(&url).await.unwrap();
            let again = migrate(&mut client).await.unwrap();
            assert!(again.applied.is_empty());
            assert_eq!(schema_version(&client).await.unwrap(), latest_version());
        });
    }

    #[test]
    fn a_database_newer_than_this_stackpipe_is_refused() {
        let pg = Postgres::shared();
        let url = pg.database("newer");
        let rt = runtime();
        rt.block_on(async {
            let mut client = connect(&url).await.unwrap();
            migrate(&mut client).await.unwrap();
            client.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, 'from the future')", &[&(latest_version() + 1)]).await.unwrap();
            let err = migrate(&mut client).await.unwrap_err().to_string();
            assert!(err.contains("newer than this stackpipe knows"), "{err}");
        });
    }

    #[test]
    fn the_work_queue_refuses_what_is_not_a_job_state() {
        let pg = Postgres::shared();
        let url = pg.database("queue");
        let rt = runtime();
        rt.block_on(async {
            let mut client = connect(&url).await.unwrap();
            migrate(&mut client).await.unwrap();
            client
                .execute("INSERT INTO job_queue (run_id, environment, node, state) VALUES ('r1', 'dev', 'a', 'ready')", &[])
                .await
                .unwrap();
            let bad = client.execute("INSERT INTO job_queue (run_id, environment, node, state) VALUES ('r1', 'dev', 'b', 'maybe')", &[]).await;
            assert!(bad.is_err(), "a state outside the list was taken");
            let negative = client.execute("UPDATE job_queue SET waiting_on = -1 WHERE node = 'a'", &[]).await;
            assert!(negative.is_err(), "a negative count of jobs waited on was taken");
        });
    }
}

/// `stackpipe state migrate`: a state made by real runs, copied to
/// PostgreSQL and back, reads the same through every `--json` listing.
mod state_migrate {
    use super::Postgres;
    use crate::common::{text, Project, TEST_PLUGIN};
    use serde_json::Value;

    fn pipeline() -> String {
        format!(
            "pipeline \"demo\"\nvar token: string sensitive\n{TEST_PLUGIN}\nenvironment dev {{}}\n\
             environment prod {{ approval = true }}\n\n\
             resource a \"t.step\" {{ size = 1  password = var.token }}\n\
             resource b \"t.step\" {{ x = a.id }}\n\
             resource c \"t.step\" {{ x = b.id  fail = {{ dev = false, prod = true }}[env.name] }}\n"
        )
    }

    fn ok(p: &Project, args: &[&str]) -> String {
        let o = p.command(args).env("STACKPIPE_VAR_token", "s3cret-value").output().expect("runs");
        assert_eq!(o.status.code(), Some(0), "{args:?}\n{}\n{}", text(&o.stdout), text(&o.stderr));
        text(&o.stdout)
    }

    /// Every listing, in JSON, of the state at `state`.
    fn listings(p: &Project, state: &str) -> Vec<(String, Value)> {
        let mut out = Vec::new();
        let mut json = |args: &[&str]| {
            let mut all: Vec<&str> = args.to_vec();
            all.extend(["--json", "--state", state]);
            let o = ok(p, &all);
            let value: Value = serde_json::from_str(&o).unwrap_or_else(|e| {
                // `logs --json` is a line per entry.
                let lines: Result<Vec<Value>, _> = o.lines().map(serde_json::from_str).collect();
                Value::Array(lines.unwrap_or_else(|_| panic!("{args:?}: not JSON ({e}): {o}")))
            });
            out.push((args.join(" "), value));
        };
        json(&["state", "list"]);
        json(&["runs"]);
        for run in ["r000001", "r000002", "r000003"] {
            json(&["status", run]);
            json(&["logs", run]);
            json(&["show", run]);
        }
        for resource in ["dev/a", "dev/c", "prod/b", "prod/c"] {
            json(&["history", resource]);
        }
        json(&["outputs", "demo.pipeline"]);
        out
    }

    #[test]
    fn a_state_goes_to_postgres_and_back_and_every_listing_reads_the_same() {
        let pg = Postgres::shared();
        let p = Project::with_pipeline(&pipeline());
        // Three runs: one to dev and prod, one failing at prod's `c`, one rejected at prod's gate.
        ok(&p, &["deploy", "demo.pipeline", "--env", "dev", "--yes"]);
        let o = p.command(&["deploy", "demo.pipeline", "--yes", "--approve-env", "prod"]).env("STACKPIPE_VAR_token", "s3cret-value").output().unwrap();
        assert_eq!(o.status.code(), Some(1), "prod's c fails: {}", text(&o.stderr));
        let waiting = p
            .command(&["deploy", "demo.pipeline"])
            .env("STACKPIPE_VAR_token", "s3cret-value")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut waiting = crate::common::Running::new(waiting);
        crate::common::wait_for("prod's gate", || {
            p.run(&["reject", "r000003", "--env", "prod", "--comment", "not today"]).status.success()
        });
        let status = waiting.child().wait().unwrap();
        assert_eq!(status.code(), Some(1), "rejected at prod");
        let original = listings(&p, ".stackpipe");

        let url = pg.database("migrate");
        let said = ok(&p, &["state", "migrate", "--from", ".stackpipe", "--to", &url]);
        assert!(said.contains("read back and compared: the same"), "{said}");
        let on_postgres = listings(&p, &url);
        for ((what, a), (_, b)) in original.iter().zip(&on_postgres) {
            assert_eq!(a, b, "`{what}` on PostgreSQL");
        }
        ok(&p, &["state", "migrate", "--from", &url, "--to", "back"]);
        let back = listings(&p, "back");
        for ((what, a), (_, b)) in original.iter().zip(&back) {
            assert_eq!(a, b, "`{what}` back in a directory");
        }
        // Into a state that holds something: refused, nothing written.
        let o = p.command(&["state", "migrate", "--from", "back", "--to", &url]).output().unwrap();
        assert_eq!(o.status.code(), Some(1));
        assert!(text(&o.stderr).contains("is not empty"), "{}", text(&o.stderr));
        // A resume with the sensitive var still knows it as the same value
        // (the hashes' key came along): a rerun on PostgreSQL goes ahead.
        ok(&p, &["deploy", "demo.pipeline", "--env", "dev", "--yes", "--state", &url]);
        assert!(!format!("{original:?}").contains("s3cret-value"), "no sensitive value in any listing");
    }
}
