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
        for t in ["audit", "blobs", "counters", "decisions", "executions", "gate_requests", "job_edges", "job_queue", "jobs", "journal", "locks", "logs", "queue_cancels", "queue_environments", "resources", "run_leases", "run_requests", "runners", "runs", "schema_migrations", "services", "snapshots", "store_keys", "users"] {
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

/// The work queue runners take stack jobs from: the DAG advancing in the
/// database, claims, leases.
mod job_queue {
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::Postgres;
    use stackpipe_state_postgres::{JobKey, JobOutcome, JobQueue, PostgresStore, QueueError, QueuedEnvironment};

    /// One environment, without approval.
    fn one(name: &str, nodes: &[(String, Vec<String>)]) -> Vec<QueuedEnvironment> {
        vec![QueuedEnvironment { name: name.into(), approval: false, parallelism: 0, nodes: nodes.to_vec() }]
    }

    fn queue(name: &str) -> (PostgresStore, JobQueue) {
        let url = Postgres::shared().database(name);
        // The store brings the schema up to date.
        let store = PostgresStore::connect(&url).expect("connects");
        (store, JobQueue::connect(&url).expect("a queue"))
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
    }

    /// A layered DAG of `n` nodes, each after the first layer needing 1 to 3 earlier ones.
    fn dag(n: usize) -> Vec<(String, Vec<String>)> {
        (0..n)
            .map(|i| {
                let needs: BTreeSet<usize> = if i < 5 { BTreeSet::new() } else { [(i * 7) % i, (i * 13) % i, i - 1].into_iter().collect() };
                (format!("n{i:02}"), needs.into_iter().map(|d| format!("n{d:02}")).collect())
            })
            .collect()
    }

    const LEASE: Duration = Duration::from_secs(30);

    #[test]
    fn four_runners_run_every_job_of_a_dag_once_and_never_before_what_it_needs() {
        let (_store, q) = queue("jobs");
        let rt = runtime();
        let nodes = dag(40);
        rt.block_on(q.enqueue_run("r1", &one("dev", &nodes))).unwrap();
        let done: Arc<Mutex<Vec<String>>> = Arc::default();
        rt.block_on(async {
            let runners: Vec<_> = (0..4)
                .map(|r| {
                    let (q, done) = (q.clone(), done.clone());
                    tokio::spawn(async move {
                        let name = format!("runner-{r}");
                        loop {
                            let claimed = q.claim(&name, 3, LEASE).await.unwrap();
                            if claimed.is_empty() {
                                if q.counts("r1", None).await.unwrap().all_ended() {
                                    break;
                                }
                                tokio::time::sleep(Duration::from_millis(2)).await;
                                continue;
                            }
                            for c in claimed {
                                assert_eq!(c.attempt, 1);
                                done.lock().unwrap().push(c.job.node.clone());
                                q.complete(&name, &c.job, JobOutcome::Succeeded).await.unwrap();
                            }
                        }
                    })
                })
                .collect();
            for r in runners {
                r.await.unwrap();
            }
        });
        let done = done.lock().unwrap().clone();
        assert_eq!(done.len(), 40, "every job once: {done:?}");
        assert_eq!(done.iter().collect::<BTreeSet<_>>().len(), 40);
        let at: BTreeMap<&str, usize> = done.iter().enumerate().map(|(i, n)| (n.as_str(), i)).collect();
        for (node, needs) in &nodes {
            for need in needs {
                assert!(at[need.as_str()] < at[node.as_str()], "{node} ran before {need}, which it needs");
            }
        }
        assert_eq!(rt.block_on(q.counts("r1", None)).unwrap().succeeded, 40);
    }

    #[test]
    fn a_failure_cancels_what_needs_it_and_a_rejection_skips_it_and_the_rest_runs() {
        let (_store, q) = queue("fail");
        let rt = runtime();
        let nodes: Vec<(String, Vec<String>)> = [("a", vec![]), ("b", vec!["a"]), ("c", vec!["b"]), ("d", vec![]), ("e", vec!["d"]), ("f", vec!["e", "a"])]
            .into_iter()
            .map(|(n, d)| (n.to_string(), d.into_iter().map(String::from).collect()))
            .collect();
        rt.block_on(async {
            q.enqueue_run("r1", &one("dev", &nodes)).await.unwrap();
            let first: Vec<String> = q.claim("x", 10, LEASE).await.unwrap().into_iter().map(|c| c.job.node).collect();
            assert_eq!(first, ["a", "d"], "only what needs nothing is ready");
            q.complete("x", &JobKey::new("r1", "dev", "a"), JobOutcome::Failed { stop_all: false }).await.unwrap();
            q.complete("x", &JobKey::new("r1", "dev", "d"), JobOutcome::Succeeded).await.unwrap();
            let next: Vec<String> = q.claim("x", 10, LEASE).await.unwrap().into_iter().map(|c| c.job.node).collect();
            assert_eq!(next, ["e"]);
            q.complete("x", &JobKey::new("r1", "dev", "e"), JobOutcome::Rejected).await.unwrap();
            let states = q.states("r1", "dev").await.unwrap();
            let states: Vec<(&str, &str)> = states.iter().map(|(n, s)| (n.as_str(), s.as_str())).collect();
            assert_eq!(
                states,
                [("a", "failed"), ("b", "cancelled"), ("c", "cancelled"), ("d", "succeeded"), ("e", "rejected"), ("f", "cancelled")]
            );
            assert!(q.counts("r1", Some("dev")).await.unwrap().all_ended());
        });
    }

    fn nodes(list: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
        list.iter().map(|(n, d)| (n.to_string(), d.iter().map(|x| x.to_string()).collect())).collect()
    }

    #[test]
    fn environments_open_in_order_wait_for_approval_and_stop_all_cancels_what_has_not_started() {
        let (_store, q) = queue("envs");
        let rt = runtime();
        let envs = vec![
            QueuedEnvironment { name: "dev".into(), approval: false, parallelism: 0, nodes: nodes(&[("a", &[]), ("b", &["a"])]) },
            QueuedEnvironment { name: "staging".into(), approval: false, parallelism: 0, nodes: nodes(&[("a", &[])]) },
            QueuedEnvironment { name: "prod".into(), approval: true, parallelism: 0, nodes: nodes(&[("a", &[]), ("b", &[]), ("c", &["a"])]) },
        ];
        rt.block_on(async {
            let started = q.enqueue_run("r1", &envs).await.unwrap();
            assert_eq!((started.ended.len(), started.waiting, started.run_ended), (0, None, false));
            let take = |n: usize| {
                let q = q.clone();
                async move { q.claim("x", n, LEASE).await.unwrap().into_iter().map(|c| c.job).collect::<Vec<_>>() }
            };
            let ok = |job: JobKey| {
                let q = q.clone();
                async move { q.complete("x", &job, JobOutcome::Succeeded).await.unwrap() }
            };
            let dev: Vec<String> = take(10).await.iter().map(|j| format!("{}/{}", j.environment, j.node)).collect();
            assert_eq!(dev, ["dev/a"], "only dev is open");
            ok(JobKey::new("r1", "dev", "a")).await;
            assert_eq!(take(10).await, vec![JobKey::new("r1", "dev", "b")]);
            let moved = ok(JobKey::new("r1", "dev", "b")).await;
            assert_eq!(moved.ended, [("dev".to_string(), "succeeded".to_string())], "its last job ends dev, and staging opens");
            assert_eq!(take(10).await, vec![JobKey::new("r1", "staging", "a")]);
            let moved = ok(JobKey::new("r1", "staging", "a")).await;
            assert_eq!(moved.waiting.as_deref(), Some("prod"), "prod waits for approval");
            assert_eq!(take(10).await, Vec::new());
            assert!(matches!(q.decide("r1", "staging", true).await, Err(QueueError::NotWaiting { .. })));
            q.decide("r1", "prod", true).await.unwrap();
            let prod = take(1).await;
            assert_eq!(prod, vec![JobKey::new("r1", "prod", "a")]);
            let moved = q.complete("x", &prod[0], JobOutcome::Failed { stop_all: true }).await.unwrap();
            assert_eq!(moved.ended, [("prod".to_string(), "failed".to_string())]);
            assert!(moved.run_ended);
            let states = q.states("r1", "prod").await.unwrap();
            assert_eq!(states, [("a".into(), "failed".into()), ("b".into(), "cancelled".into()), ("c".into(), "cancelled".into())]);
            let all: Vec<(String, String)> = q.environments("r1").await.unwrap();
            assert_eq!(all, [("dev".into(), "succeeded".into()), ("staging".into(), "succeeded".into()), ("prod".into(), "failed".into())]);

            // A rejection skips the environment and every later one; a failure, every later one.
            let envs2 = vec![
                QueuedEnvironment { name: "dev".into(), approval: true, parallelism: 0, nodes: nodes(&[("a", &[])]) },
                QueuedEnvironment { name: "prod".into(), approval: false, parallelism: 0, nodes: nodes(&[("a", &[])]) },
            ];
            assert_eq!(q.enqueue_run("r2", &envs2).await.unwrap().waiting.as_deref(), Some("dev"));
            let moved = q.decide("r2", "dev", false).await.unwrap();
            assert!(moved.run_ended, "{moved:?}");
            assert_eq!(q.environments("r2").await.unwrap(), [("dev".into(), "skipped".into()), ("prod".into(), "skipped".into())]);
            assert!(q.counts("r2", None).await.unwrap().all_ended());
            let envs3 = vec![
                QueuedEnvironment { name: "dev".into(), approval: false, parallelism: 0, nodes: nodes(&[("a", &[])]) },
                QueuedEnvironment { name: "prod".into(), approval: false, parallelism: 0, nodes: nodes(&[("a", &[])]) },
            ];
            q.enqueue_run("r3", &envs3).await.unwrap();
            let job = q.claim("x", 1, LEASE).await.unwrap().remove(0).job;
            assert_eq!(job, JobKey::new("r3", "dev", "a"));
            let moved = q.complete("x", &job, JobOutcome::Failed { stop_all: false }).await.unwrap();
            assert_eq!(moved.ended, [("dev".to_string(), "failed".to_string()), ("prod".to_string(), "skipped".to_string())]);
            assert!(moved.run_ended);
            // A need that is not a node of the environment is refused.
            let bad = q.enqueue_run("r4", &one("dev", &nodes(&[("a", &["zz"])]))).await;
            assert!(matches!(bad, Err(QueueError::UnknownNeed { .. })), "{bad:?}");
        });
    }

    #[test]
    fn a_gate_after_a_job_holds_what_needs_it_until_a_person_decides() {
        let (_store, q) = queue("gated");
        let rt = runtime();
        rt.block_on(async {
            let env = one("dev", &nodes(&[("db", &[]), ("app", &["db"]), ("web", &["app"]), ("cache", &[])]));
            q.enqueue_run("r1", &env).await.unwrap();
            let first: Vec<String> = q.claim("x", 10, LEASE).await.unwrap().into_iter().map(|c| c.job.node).collect();
            assert_eq!(first, ["cache", "db"]);
            q.complete("x", &JobKey::new("r1", "dev", "cache"), JobOutcome::Succeeded).await.unwrap();
            let moved = q.complete("x", &JobKey::new("r1", "dev", "db"), JobOutcome::Gated).await.unwrap();
            assert!(moved.ended.is_empty(), "a gated job keeps its environment open");
            assert_eq!(q.claim("x", 10, LEASE).await.unwrap(), Vec::new(), "app waits for db's gate");
            assert_eq!(q.counts("r1", None).await.unwrap().gated, 1);
            q.decide_node(&JobKey::new("r1", "dev", "db"), true).await.unwrap();
            let next = q.claim("x", 10, LEASE).await.unwrap();
            assert_eq!(next[0].job.node, "app");
            q.complete("x", &next[0].job, JobOutcome::Gated).await.unwrap();
            let moved = q.decide_node(&JobKey::new("r1", "dev", "app"), false).await.unwrap();
            assert_eq!(moved.ended, [("dev".to_string(), "failed".to_string())], "a rejection fails the environment");
            let states = q.states("r1", "dev").await.unwrap();
            assert_eq!(
                states,
                [("app".into(), "rejected".into()), ("cache".into(), "succeeded".into()), ("db".into(), "succeeded".into()), ("web".into(), "skipped".into())]
            );
            assert!(q.decide_node(&JobKey::new("r1", "dev", "app"), true).await.is_err(), "decided once");
        });
    }

    #[test]
    fn a_lease_that_runs_out_puts_the_job_back_and_its_old_runner_cannot_complete_it() {
        let (_store, q) = queue("lease");
        let rt = runtime();
        rt.block_on(async {
            q.enqueue_run("r1", &one("dev", &nodes(&[("a", &[]), ("b", &["a"])]))).await.unwrap();
            q.heartbeat("dead", 10).await.unwrap();
            // Short leases, long enough for a loaded machine to make the
            // next few calls within one.
            let short = Duration::from_millis(1500);
            let taken = q.claim("dead", 10, short).await.unwrap();
            assert_eq!(taken.len(), 1);
            // Renewed while alive; then the runner stops renewing.
            assert_eq!(q.renew("dead", short).await.unwrap(), 1);
            assert_eq!(q.claim("other", 10, LEASE).await.unwrap(), Vec::new(), "held under a lease");
            assert_eq!(q.reap().await.unwrap(), Vec::new(), "not run out yet");
            tokio::time::sleep(short + Duration::from_millis(300)).await;
            assert_eq!(q.renew("dead", LEASE).await.unwrap(), 0, "a lease that ran out is not renewed");
            assert_eq!(q.reap().await.unwrap(), vec![JobKey::new("r1", "dev", "a")]);
            let again = q.claim("other", 10, LEASE).await.unwrap();
            assert_eq!((again[0].job.node.as_str(), again[0].attempt), ("a", 2), "taken again, and it says so");
            let late = q.complete("dead", &JobKey::new("r1", "dev", "a"), JobOutcome::Succeeded).await;
            assert!(matches!(late, Err(QueueError::LeaseLost(_))), "{late:?}");
            q.complete("other", &JobKey::new("r1", "dev", "a"), JobOutcome::Succeeded).await.unwrap();
            assert_eq!(q.claim("other", 10, LEASE).await.unwrap()[0].job.node, "b");
            let runners = q.runners(Duration::from_secs(60)).await.unwrap();
            assert_eq!(runners, [("dead".to_string(), 10, 0)]);
            assert_eq!(q.cancel_run("r1").await.unwrap(), 0, "b is claimed: it runs to its end");
        });
    }
}

/// A write the database refuses mid-run: the run ends failed at once,
/// saying why, never as a success; `resume` then finishes it with every
/// resource applied once.
mod failed_writes {
    use std::time::{Duration, Instant};

    use super::Postgres;
    use crate::common::{text, Project};

    #[test]
    fn a_write_postgres_refuses_fails_the_run_and_resume_finishes_it() {
        let pg = Postgres::shared();
        let url = pg.database("refuse");
        let db = url.rsplit('/').next().unwrap().to_string();
        let n = 60;
        let p = Project::new(&(0..n).map(|i| format!("resource r{i} \"t.step\" {{ delay_ms = 100 }}\n")).collect::<String>());
        let child = p
            .command(&["deploy", "demo.pipeline", "--state", &url, "--parallelism", "2"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("deploys");
        // Once a few resources are applied, the journal refuses every new
        // row (the run has about 3 s to go: it cannot end first).
        let started = Instant::now();
        while p.ledger().len() < 4 {
            assert!(started.elapsed() < Duration::from_secs(60), "the deploy never started applying");
            std::thread::sleep(Duration::from_millis(10));
        }
        pg.psql(&db, "ALTER TABLE journal ADD CONSTRAINT refused CHECK (false) NOT VALID");
        let o = child.wait_with_output().expect("ends");
        let (out, err) = (text(&o.stdout), text(&o.stderr));
        assert_eq!(o.status.code(), Some(1), "stdout: {out}\nstderr: {err}");
        assert!(err.contains("cannot write the state database postgres://") && err.contains("refused"), "{err}");
        assert!(!out.contains("[dev] succeeded") && !out.contains("run r000001 succeeded"), "a false success: {out}");
        assert!(p.ledger().len() < n, "the run stopped starting work");

        pg.psql(&db, "ALTER TABLE journal DROP CONSTRAINT refused");
        let runs = text(&p.run(&["runs", "--state", &url]).stdout);
        assert!(runs.contains("interrupted") || runs.contains("failed"), "{runs}");
        let o = p.run(&["resume", "r000001", "--state", &url]);
        assert_eq!(o.status.code(), Some(0), "{}\n{}", text(&o.stdout), text(&o.stderr));
        let ledger = p.ledger();
        for i in 0..n {
            let count = ledger.iter().filter(|l| **l == format!("apply demo/dev/r{i}")).count();
            assert_eq!(count, 1, "r{i} applied {count} times");
        }
    }
}

/// The database reached over TLS: verified against a private CA given by
/// `sslrootcert`, refused without it when TLS is required.
mod tls {
    use super::Postgres;
    use stackpipe_state_postgres::{connect, PostgresStore};

    #[test]
    fn a_server_with_a_private_ca_is_reached_over_verified_tls() {
        // A cluster of its own: the shared one stays plain for the others.
        let pg = Postgres::start();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, "stackpipe test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let server_key = rcgen::KeyPair::generate().unwrap();
        let server = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap()
            .signed_by(&server_key, &ca, &ca_key)
            .unwrap();
        let (crt, key) = (pg.path().join("server.crt"), pg.path().join("server.key"));
        std::fs::write(&crt, server.pem()).unwrap();
        std::fs::write(&key, server_key.serialize_pem()).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        if unsafe { libc::geteuid() } == 0 {
            for f in [&crt, &key] {
                assert!(std::process::Command::new("chown").arg("postgres:postgres").arg(f).status().unwrap().success());
            }
        }
        for sql in [
            format!("ALTER SYSTEM SET ssl_cert_file = '{}'", crt.display()),
            format!("ALTER SYSTEM SET ssl_key_file = '{}'", key.display()),
            "ALTER SYSTEM SET ssl = on".to_string(),
            "SELECT pg_reload_conf()".to_string(),
        ] {
            pg.psql("postgres", &sql);
        }
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca.pem()).unwrap();
        let base = pg.url("postgres");
        let verified = format!("{base}?sslmode=require&sslrootcert={}", ca_file.display());

        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        // Reloading takes a moment to reach new connections.
        let ssl = rt.block_on(async {
            for _ in 0..100 {
                if let Ok(client) = connect(&verified).await {
                    let row = client.query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[]).await.unwrap();
                    return row.get::<_, bool>(0);
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            panic!("never connected over TLS");
        });
        assert!(ssl, "the connection is encrypted");
        // The store works over it.
        let store = PostgresStore::connect(&verified).expect("connects over TLS");
        drop(store);
        // Without the CA, the certificate is not trusted, and TLS is required: refused.
        let e = PostgresStore::connect(&format!("{base}?sslmode=require")).unwrap_err().to_string();
        assert!(e.contains("certificate"), "says why: {e}");
    }
}

/// `stackpipe serve` on a PostgreSQL state: its users, audit log and runs
/// in the database, its own files in `--data-dir`.
mod server {
    use serde_json::json;

    use super::Postgres;
    use crate::common::server::{command, ended, TestServer};
    use crate::common::{text, TEST_PLUGIN};

    #[test]
    fn a_server_keeps_its_users_audit_log_and_runs_in_the_database() {
        let url = Postgres::shared().database("serve");
        let pipeline = format!("pipeline \"free\"\n\n{TEST_PLUGIN}\nenvironment dev {{}}\n\nresource a \"t.step\" {{}}\nresource b \"t.step\" {{ x = a.id }}\n");
        let dir = TestServer::prepare(&[("free", &pipeline)]);
        let ada = TestServer::add_user_at(dir.path(), &url, "ada", "admin", &[]);
        let vera = TestServer::add_user_at(dir.path(), &url, "vera", "viewer", &[]);
        let s = TestServer::start_at(dir, &url, &["--data-dir", "server-files"], &[]);
        let run = s.start_run(&ada, json!({ "pipeline": "free" }));
        let doc = s.wait_run(&run, &vera, "the run to end", ended);
        assert_eq!(doc["status"], "succeeded", "{doc:#}");
        assert_eq!(s.ledger().iter().filter(|l| l.starts_with("apply")).count(), 2);
        // A viewer may not start runs; no token is no one.
        assert_eq!(s.post("/api/v1/runs", Some(&vera), &json!({ "pipeline": "free" })).status, 403);
        assert_eq!(s.get("/api/v1/runs", None).status, 401);

        // Nothing of it in a state directory: the run, the users and the audit log are in the database.
        assert!(!s.path().join(".stackpipe").exists() && !s.path().join("state").exists());
        assert!(s.path().join("server-files").is_dir());
        let runs = text(&command(s.path()).args(["runs", "--json", "--state", &url]).output().unwrap().stdout);
        assert!(runs.contains(&run), "{runs}");
        let users = text(&command(s.path()).args(["user", "list", "--state", &url]).output().unwrap().stdout);
        assert!(users.contains("ada") && users.contains("vera"), "{users}");
        let audit = text(&command(s.path()).args(["audit", "--json", "--state", &url]).output().unwrap().stdout);
        assert!(audit.contains("\"user\":\"ada\"") && audit.contains("/api/v1/runs"), "{audit}");
        assert!(!audit.contains(&ada) && !audit.contains(&vera), "no token in the audit log");

        // A user added while the server runs can use it within a moment; one removed, no longer.
        let otto = TestServer::add_user_at(s.path(), &url, "otto", "operator", &[]);
        crate::common::wait_for("the new user to be known", || s.get("/api/v1/runs", Some(&otto)).status == 200);
        let o = command(s.path()).args(["user", "remove", "vera", "--state", &url]).output().unwrap();
        assert!(o.status.success(), "{}", text(&o.stderr));
        crate::common::wait_for("the removed user to be refused", || s.get("/api/v1/runs", Some(&vera)).status == 401);
        // Two users added at once from two processes: both are kept.
        let (a, b) = std::thread::scope(|scope| {
            let a = scope.spawn(|| TestServer::add_user_at(s.path(), &url, "amy", "viewer", &[]));
            let b = scope.spawn(|| TestServer::add_user_at(s.path(), &url, "bob", "viewer", &[]));
            (a.join().unwrap(), b.join().unwrap())
        });
        assert_ne!(a, b);
        let users = text(&command(s.path()).args(["user", "list", "--state", &url]).output().unwrap().stdout);
        assert!(users.contains("amy") && users.contains("bob") && !users.contains("vera"), "{users}");
    }
}

/// Two servers and three runners on one database: the servers are front
/// ends, the runners do the work, and either server shows every run.
mod fleet {
    use std::process::Stdio;

    use serde_json::json;

    use super::Postgres;
    use crate::common::server::{command, ended, TestServer};
    use crate::common::{text, Running, TEST_PLUGIN};

    #[test]
    fn two_servers_and_three_runners_on_one_database_work_together() {
        let pg = Postgres::shared();
        let url = pg.database("fleet");
        let db = url.rsplit('/').next().unwrap().to_string();
        let pipeline = |name: &str| {
            let resources: String = (0..12)
                .map(|i| {
                    let from = if i >= 3 { format!(" from = r{}.id", i - 3) } else { String::new() };
                    format!("resource r{i} \"t.step\" {{ delay_ms = 50{from} }}\n")
                })
                .collect();
            format!("pipeline \"{name}\"\n\n{TEST_PLUGIN}\nenvironment dev {{}}\n\n{resources}")
        };
        let (one, two) = (pipeline("one"), pipeline("two"));
        let dir_a = TestServer::prepare(&[("one", &one), ("two", &two)]);
        let dir_b = TestServer::prepare(&[("one", &one), ("two", &two)]);
        let ada = TestServer::add_user_at(dir_a.path(), &url, "ada", "admin", &[]);
        let front = ["--data-dir", "server-files", "--no-local-runner"];
        let a = TestServer::start_at(dir_a, &url, &front, &[]);
        let b = TestServer::start_at(dir_b, &url, &front, &[]);
        let work = tempfile::tempdir().unwrap();
        let _runners: Vec<Running> = (0..3)
            .map(|r| {
                let args = ["runner", "--state", &url, "--name", &format!("runner-{r}"), "--capacity", "3"];
                Running::new(command(work.path()).args(args).stdin(Stdio::null()).stdout(Stdio::null()).spawn().unwrap())
            })
            .collect();
        let run_a = a.start_run(&ada, json!({ "pipeline": "one" }));
        let run_b = b.start_run(&ada, json!({ "pipeline": "two" }));
        assert_ne!(run_a, run_b, "one database hands out each id once");
        for (server, run) in [(&a, &run_a), (&b, &run_b)] {
            let doc = server.wait_run(run, &ada, "the run to end", ended);
            assert_eq!(doc["status"], "succeeded", "{doc:#}");
        }
        // Either server shows the other's run, from the one state.
        let doc = b.get(&format!("/api/v1/runs/{run_a}"), Some(&ada));
        assert_eq!((doc.status, doc.body["status"].as_str()), (200, Some("succeeded")), "{:#}", doc.body);
        for server in [&a, &b] {
            let applied = server.ledger().iter().filter(|l| l.starts_with("apply")).count();
            assert_eq!(applied, 12, "each run's resources, once: {:?}", server.ledger());
        }
        // The servers ran nothing themselves: only the runners are known to the queue.
        let runners = pg.psql(&db, "SELECT string_agg(name, ',' ORDER BY name) FROM runners");
        assert_eq!(runners, "runner-0,runner-1,runner-2");
        assert_eq!(pg.psql(&db, "SELECT count(*) FROM job_queue"), "0", "ended runs leave the queue");
    }

    /// A gate of a run one server owns is decided through the other
    /// server, and through a terminal that cannot reach the owner; the
    /// environment's rules of who decides still hold.
    #[test]
    fn a_run_one_server_owns_is_steered_through_the_other_server_and_a_terminal() {
        let pg = Postgres::shared();
        let url = pg.database("steer_fleet");
        let gated = format!(
            "pipeline \"gated\"\n\n{TEST_PLUGIN}\nenvironment dev {{}}\nenvironment prod {{\n  after    = [dev]\n  approval = true\n  approvers = [\"role:admin\"]\n}}\n\nresource a \"t.step\" {{}}\nresource b \"t.step\" {{ delay_ms = 2000 }}\nresource c \"t.step\" {{ from = b.id }}\n"
        );
        let dir_a = TestServer::prepare(&[("gated", &gated)]);
        let dir_b = TestServer::prepare(&[("gated", &gated)]);
        let ada = TestServer::add_user_at(dir_a.path(), &url, "ada", "admin", &[]);
        let otto = TestServer::add_user_at(dir_a.path(), &url, "otto", "operator", &[]);
        let a = TestServer::start_at(dir_a, &url, &["--data-dir", "server-files"], &[]);
        let b = TestServer::start_at(dir_b, &url, &["--data-dir", "server-files", "--no-local-runner"], &[]);
        let waiting = |run: &str| {
            a.wait_run(run, &ada, "prod to wait for its approval", |d| {
                d["environments"].as_array().is_some_and(|e| e.iter().any(|e| e["waiting_for"].is_object() || e["status"] == "waiting"))
            });
        };
        let run = a.start_run(&otto, json!({ "pipeline": "gated" }));
        waiting(&run);
        // Through server B: an operator is refused by prod's approvers, an admin approves.
        let refused = b.post(&format!("/api/v1/runs/{run}/approve"), Some(&otto), &json!({ "environment": "prod" }));
        assert_eq!(refused.status, 403, "{:#}", refused.body);
        let approved = b.post(&format!("/api/v1/runs/{run}/approve"), Some(&ada), &json!({ "environment": "prod" }));
        assert_eq!(approved.status, 200, "{:#}", approved.body);
        assert_eq!(approved.body[0]["by"], "ada", "{:#}", approved.body);
        // Cancelled through B while prod's slow resource is applied.
        crate::common::wait_for("prod to start applying", || a.ledger().iter().any(|l| l.contains("/prod/")));
        let cancelled = b.post(&format!("/api/v1/runs/{run}/cancel"), Some(&otto), &json!({}));
        assert_eq!(cancelled.status, 200, "{:#}", cancelled.body);
        let doc = a.wait_run(&run, &ada, "the run to end", ended);
        assert_eq!(doc["status"], "cancelled", "{doc:#}");

        // From a terminal, which has no socket of a server's run to reach: through the database.
        let run = a.start_run(&otto, json!({ "pipeline": "gated" }));
        waiting(&run);
        let o = command(a.path()).args(["reject", &run, "--env", "prod", "--comment", "not today", "--state", &url]).output().unwrap();
        assert!(o.status.success(), "{}\n{:#}", text(&o.stderr), a.get(&format!("/api/v1/runs/{run}"), Some(&ada)).body);
        let doc = a.wait_run(&run, &ada, "the run to end", ended);
        assert_eq!(doc["status"], "failed", "{doc:#}");
        let prod = &doc["environments"][1];
        assert_eq!(prod["status"], "skipped", "{doc:#}");
        assert!(prod["reason"].as_str().is_some_and(|r| r.contains("not today")), "{doc:#}");
    }
}

/// A command that only reads a PostgreSQL state writes nothing to it, its
/// schema included, as a reader of a state directory writes nothing.
mod readers {
    use super::Postgres;
    use crate::common::{text, Project, TEST_PLUGIN};

    #[test]
    fn a_reader_of_a_database_without_state_makes_no_schema_and_says_so() {
        let pg = Postgres::shared();
        let url = pg.database("reader");
        let db = url.rsplit('/').next().unwrap().to_string();
        let tables = || pg.psql(&db, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'");
        let p = Project::with_pipeline(&format!("pipeline \"demo\"\n{TEST_PLUGIN}\nenvironment dev {{}}\nresource a \"t.step\" {{}}\n"));
        let o = p.run(&["runs", "--state", &url]);
        assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
        assert!(text(&o.stderr).contains("no state in postgres://") && text(&o.stderr).contains("a deploy makes its state"), "{}", text(&o.stderr));
        // A plan reads a state that does not exist yet as empty.
        let o = p.run(&["plan", "demo.pipeline", "--state", &url]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
        assert!(text(&o.stdout).contains("create"), "{}", text(&o.stdout));
        assert_eq!(tables(), "0", "a reader made no table");
        // A deploy makes the schema; then readers read.
        let o = p.run(&["deploy", "demo.pipeline", "--state", &url]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
        assert_ne!(tables(), "0");
        let o = p.run(&["runs", "--state", &url]);
        assert!(text(&o.stdout).contains("r000001"), "{}", text(&o.stdout));
    }
}

/// `stackpipe runner`: runs on one database worked by runner processes.
mod runners {
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    use serde_json::{json, Value};

    use super::Postgres;
    use crate::common::{finish_within, spawn, text, Project, Running};

    /// A runner of the database at `url`, working in `p`'s directory; its
    /// log in `NAME.log` there.
    fn runner(p: &Project, url: &str, name: &str) -> Running {
        let log = std::fs::File::create(p.path().join(format!("{name}.log"))).expect("a log file");
        let args = ["runner", "--state", url, "--name", name, "--capacity", "4", "--lease", "3"];
        Running::new(p.command(&args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(log).spawn().expect("a runner starts"))
    }

    fn log(p: &Project, name: &str) -> String {
        std::fs::read_to_string(p.path().join(format!("{name}.log"))).unwrap_or_default()
    }

    /// `n` resources in layers: each needs the ones 5 and 9 before it.
    fn layered(n: usize, delay_ms: u64) -> String {
        let mut out = String::new();
        for i in 0..n {
            let needs: String = [5, 9].iter().filter(|&&d| i >= d).map(|d| format!(" from_{d} = n{}.id", i - d)).collect();
            out.push_str(&format!("resource n{i} \"t.step\" {{ delay_ms = {delay_ms}{needs} }}\n"));
        }
        out
    }

    /// xorshift: the trials' random moments, from a seed printed to replay them.
    fn next(seed: &mut u64) -> u64 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    }

    /// What a run did, as `status --json` says it, without what differs
    /// from one run to the next (times, ids of what was applied).
    fn outcome(p: &Project, state: &str) -> Value {
        let o = p.run(&["status", "--json", "--state", state]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
        let doc: Value = serde_json::from_slice(&o.stdout).expect("JSON");
        let envs: Vec<Value> = doc["environments"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                let mut nodes: Vec<Value> = e["nodes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|n| {
                        let ops: Vec<Value> = n["operations"].as_array().into_iter().flatten().map(|o| json!([o["name"], o["status"], o["message"]])).collect();
                        json!({ "name": n["name"], "status": n["status"], "change": n["change"], "error": n["error"], "ops": ops })
                    })
                    .collect();
                nodes.sort_by_key(|n| n["name"].to_string());
                json!({ "name": e["name"], "status": e["status"], "reason": e["reason"], "nodes": nodes })
            })
            .collect();
        // Gates open at once decide in either order, walked or not.
        let mut decisions: Vec<Value> = doc["decisions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|d| json!([d["environment"], d["node"], d["gate"], d["decision"], d["by"].as_str().map(|b| b.rsplit('(').next().unwrap_or(b))]))
            .collect();
        decisions.sort_by_key(|d| d.to_string());
        json!({ "status": doc["status"], "environments": envs, "decisions": decisions })
    }

    /// Gates, environment order, failure policies and flow policies: a run
    /// worked by runners ends exactly as the same run walked in one process.
    #[test]
    fn runners_work_a_run_exactly_as_one_process_walks_it() {
        let pg = Postgres::shared();
        let scenarios: [(&str, &str, &[&str]); 3] = [
            (
                "gates",
                r#"environment dev {}
environment prod {
  after    = [dev]
  approval = true
}

resource db    "t.step" { gate = "after" }
resource app   "t.step" { db = db.id }
resource cache "t.step" {
  flow { pause_before_apply = true }
}
resource cdn   "t.step" { cache = cache.id }
"#,
                &["--yes", "--approve-env", "prod"],
            ),
            (
                "stop-dependents",
                r#"environment dev {}
environment prod { after = [dev] }

resource bad  "t.step" { fail = true }
resource dep  "t.step" { from = bad.id }
resource deeper "t.step" { from = dep.id }
resource fine "t.step" {}
"#,
                &[],
            ),
            (
                "stop-all",
                r#"environment dev {
  flow { on_failure = "stop-all" }
}

resource bad  "t.step" { fail = true }
resource dep  "t.step" { from = bad.id }
resource slow "t.step" { delay_ms = 300 }
resource late "t.step" {}
"#,
                &["--parallelism", "1"],
            ),
        ];
        for (name, body, extra) in scenarios {
            let text_of = format!("pipeline \"demo\"\n\n{}\n{body}", crate::common::TEST_PLUGIN);
            let local = Project::with_pipeline(&text_of);
            let mut args = vec!["deploy", "demo.pipeline"];
            args.extend(extra);
            let walked = local.run(&args);

            let url = pg.database("same");
            let queued = Project::with_pipeline(&text_of);
            let _runners: Vec<Running> = (0..2).map(|r| runner(&queued, &url, &format!("r{r}"))).collect();
            args.extend(["--state", &url, "--no-local-runner"]);
            let worked = finish_within(spawn(&queued, &args), Duration::from_secs(60));
            assert_eq!(
                walked.status.code(),
                worked.status.code(),
                "{name}: walked:\n{}\nworked by runners:\n{}\n{}",
                text(&walked.stdout),
                text(&worked.stdout),
                text(&worked.stderr)
            );
            let (a, b) = (outcome(&local, ".stackpipe"), outcome(&queued, &url));
            assert_eq!(a, b, "{name}: walked (left) and worked by runners (right) differ:\n{a:#}\n{b:#}");
            let mut la = local.ledger();
            let mut lb = queued.ledger();
            la.sort();
            lb.sort();
            assert_eq!(la, lb, "{name}: what was applied");
        }
    }

    /// Runs `deploy` with `args` in `p` (on `state`), and once `steer`
    /// (another process) succeeds, lets the run end; its output.
    fn steered(p: &Project, state: Option<&str>, args: &[&str], steer: &[&str]) -> std::process::Output {
        let mut deploy = vec!["deploy", "demo.pipeline"];
        deploy.extend(args);
        let mut steer = steer.to_vec();
        if let Some(url) = state {
            deploy.extend(["--state", url, "--no-local-runner"]);
            steer.extend(["--state", url]);
        }
        let run = spawn(p, &deploy);
        let started = Instant::now();
        loop {
            let o = p.run(&steer);
            if o.status.success() {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(60), "{steer:?} never took: {}", text(&o.stderr));
            std::thread::sleep(Duration::from_millis(50));
        }
        finish_within(run, Duration::from_secs(60))
    }

    /// A person's decision from another terminal, and a cancel, reach a run
    /// worked by runners, and end it as they end one walked in one process.
    #[test]
    fn a_rejection_and_a_cancel_from_another_terminal_end_a_run_on_runners_as_they_end_a_walked_one() {
        let pg = Postgres::shared();
        let body = r#"environment dev {}

resource db "t.step" {
  size = 10
  flow { pause_before_apply = true }
}
resource app   "t.step" { db = db.id }
resource other "t.step" {}
"#;
        let pipeline = format!("pipeline \"demo\"\n\n{}\n{body}", crate::common::TEST_PLUGIN);
        let reject = ["reject", "--node", "db", "--comment", "wrong size"];
        let local = Project::with_pipeline(&pipeline);
        let walked = steered(&local, None, &[], &reject);
        let url = pg.database("steer");
        let queued = Project::with_pipeline(&pipeline);
        let _runners: Vec<Running> = (0..2).map(|r| runner(&queued, &url, &format!("r{r}"))).collect();
        let worked = steered(&queued, Some(&url), &[], &reject);
        assert_eq!(walked.status.code(), Some(1), "{}", text(&walked.stdout));
        assert_eq!(worked.status.code(), Some(1), "{}\n{}", text(&worked.stdout), text(&worked.stderr));
        assert_eq!(outcome(&local, ".stackpipe"), outcome(&queued, &url));
        assert_eq!(queued.ledger(), ["apply demo/dev/other"]);

        // A cancel: what is in flight finishes, nothing new starts.
        let chain: String = (0..6).map(|i| {
            let from = if i > 0 { format!(" from = c{}.id", i - 1) } else { String::new() };
            format!("resource c{i} \"t.step\" {{ delay_ms = 300{from} }}\n")
        }).collect();
        let url = pg.database("cancel");
        let p = Project::new(&chain);
        let _runners: Vec<Running> = (0..2).map(|r| runner(&p, &url, &format!("r{r}"))).collect();
        let deploy = spawn(&p, &["deploy", "demo.pipeline", "--state", &url, "--no-local-runner"]);
        let started = Instant::now();
        while p.ledger().is_empty() {
            assert!(started.elapsed() < Duration::from_secs(60), "nothing was applied");
            std::thread::sleep(Duration::from_millis(5));
        }
        let o = p.run(&["cancel", "--state", &url]);
        assert!(o.status.success(), "{}", text(&o.stderr));
        let o = finish_within(deploy, Duration::from_secs(60));
        let out = text(&o.stdout);
        assert_eq!(o.status.code(), Some(1), "{out}\n{}", text(&o.stderr));
        assert!(out.contains("run r000001 cancelled"), "{out}");
        let applied = p.ledger().len();
        assert!((1..=2).contains(&applied), "the one in flight (and no other) finished: {:?}", p.ledger());
        let runs = text(&p.run(&["runs", "--state", &url]).stdout);
        assert!(runs.contains("cancelled"), "{runs}");
        assert_eq!(pg.psql(url.rsplit('/').next().unwrap(), "SELECT count(*) FROM locks"), "0");
    }

    #[test]
    fn a_runner_killed_at_a_random_moment_loses_its_jobs_to_the_others_and_each_resource_is_created_once() {
        let pg = Postgres::shared();
        let mut seed = std::env::var("FAILOVER_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1) | 1
        });
        println!("FAILOVER_SEED={seed}");
        let (n, trials) = (40, 20);
        let (mut taken_over, mut adoptions) = (0, 0);
        for trial in 0..trials {
            let url = pg.database("failover");
            let db = url.rsplit('/').next().unwrap().to_string();
            let p = Project::new(&layered(n, 60));
            let mut runners: Vec<Running> = (0..3).map(|r| runner(&p, &url, &format!("r{r}"))).collect();
            let deploy = spawn(&p, &["deploy", "demo.pipeline", "--state", &url, "--no-local-runner"]);
            // Once the run is applying, a random moment of it.
            let started = Instant::now();
            while p.ledger().is_empty() {
                assert!(started.elapsed() < Duration::from_secs(60), "trial {trial}: nothing was applied");
                std::thread::sleep(Duration::from_millis(5));
            }
            std::thread::sleep(Duration::from_millis(next(&mut seed) % 700));
            let victim = (next(&mut seed) % 3) as usize;
            runners[victim].kill();
            let o = finish_within(deploy, Duration::from_secs(90));
            let (out, err) = (text(&o.stdout), text(&o.stderr));
            assert_eq!(o.status.code(), Some(0), "trial {trial} (seed above), r{victim} killed:\n{out}\n{err}");
            assert!(out.contains("run r000001 succeeded"), "trial {trial}: {out}");
            // Each resource created once: applied once by the ledger, or, for
            // an apply killed between creating the step and writing the
            // ledger line, found by the runner that took the job over and
            // adopted (never applied again).
            let ledger = p.ledger();
            let logs = text(&p.run(&["logs", "r000001", "--state", &url]).stdout);
            for i in 0..n {
                let count = ledger.iter().filter(|l| **l == format!("apply demo/dev/n{i}")).count();
                let adopted = logs
                    .lines()
                    .any(|l| l.contains(&format!("dev/n{i} ")) && l.contains("found the step an interrupted apply created"));
                adoptions += usize::from(count == 0);
                assert!(
                    count == 1 || (count == 0 && adopted),
                    "trial {trial}, r{victim} killed: n{i} applied {count} times (adopted: {adopted})\n{ledger:#?}\n{logs}"
                );
            }
            assert_eq!(pg.psql(&db, "SELECT count(*) FROM locks"), "0", "trial {trial}: the run's locks outlived it");
            let survivors: String = (0..3).filter(|&r| r != victim).map(|r| log(&p, &format!("r{r}"))).collect();
            if survivors.contains("was taken before") {
                taken_over += 1;
            }
        }
        println!(
            "{taken_over} of {trials} trials killed a runner holding jobs, which the others took over; \
             {adoptions} step(s) created by a killed apply were adopted"
        );
        assert!(taken_over >= 3, "only {taken_over} of {trials} trials killed a runner while it held a job");
    }
}
