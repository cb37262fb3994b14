//! A real PostgreSQL cluster for the tests (issue 22): made with `initdb`
//! in a temp directory and started with `pg_ctl` on a free loopback port,
//! its socket in that directory too. The programs are Debian's
//! (`/usr/lib/postgresql/VERSION/bin`, which `.ci/run` installs), else
//! found on `PATH`.
//! `initdb` refuses to run as root, so as root every PostgreSQL program
//! runs as the `postgres` user (`runuser`), and the directory is handed to
//! it. One cluster serves a whole test binary; each test takes a database
//! of its own ([`Postgres::database`]).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
    as_postgres: bool,
}

/// Where PostgreSQL's programs are: a directory with `initdb`, `pg_ctl`
/// and `psql`, on `PATH` or the newest of Debian's versions.
fn bin_dir() -> PathBuf {
    let complete = |dir: &Path| ["initdb", "pg_ctl", "postgres", "psql"].iter().all(|p| dir.join(p).is_file());
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path().join("bin")).filter(|b| complete(b)).collect())
        .unwrap_or_default();
    versions.sort();
    if let Some(newest) = versions.pop() {
        return newest;
    }
    let path = std::env::var("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .find(|dir| complete(dir))
        .expect("PostgreSQL is not installed: no initdb, pg_ctl and psql in /usr/lib/postgresql/*/bin or on PATH (.ci/run installs it)")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Postgres {
    /// The test binary's cluster, started on first use and stopped (its
    /// directory removed) when the binary exits: statics are never
    /// dropped, so an `atexit` handler does it.
    pub fn shared() -> &'static Postgres {
        static CLUSTER: OnceLock<Postgres> = OnceLock::new();
        extern "C" fn stop_shared() {
            if let Some(pg) = CLUSTER.get() {
                pg.stop();
                let _ = std::fs::remove_dir_all(pg.dir.path());
            }
        }
        CLUSTER.get_or_init(|| {
            let pg = Postgres::start();
            // SAFETY: registers a plain function, run once at exit.
            unsafe { libc::atexit(stop_shared) };
            pg
        })
    }

    /// A new cluster: `initdb` (trust for local connections, UTF-8), then
    /// `pg_ctl start` listening on 127.0.0.1 only, on a free port.
    pub fn start() -> Postgres {
        let as_postgres = unsafe { libc::geteuid() } == 0;
        let dir = tempfile::Builder::new().prefix("stackpipe-pg-").tempdir().expect("a temp dir");
        if as_postgres {
            // The cluster's owner must be able to reach and write its directory.
            let out = Command::new("chown").args(["postgres:postgres"]).arg(dir.path()).output().expect("chown runs");
            assert!(out.status.success(), "chown: {}", String::from_utf8_lossy(&out.stderr));
        }
        let pg = Postgres { dir, bin: bin_dir(), port: free_port(), as_postgres };
        let data = pg.data();
        let out = pg.run("initdb", &["-D", data.to_str().unwrap(), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync", "--no-instructions"]);
        assert!(out.status.success(), "initdb: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        let options = format!(
            "-c listen_addresses=127.0.0.1 -c port={} -c unix_socket_directories={} -c fsync=off -c max_connections=200",
            pg.port,
            pg.dir.path().display()
        );
        let log = pg.dir.path().join("postgres.log");
        let out = pg.run("pg_ctl", &["-D", data.to_str().unwrap(), "-l", log.to_str().unwrap(), "-o", &options, "-w", "-t", "30", "start"]);
        assert!(
            out.status.success(),
            "pg_ctl start: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", pg.port)).is_err() {
            assert!(Instant::now() < deadline, "PostgreSQL does not listen on {}", pg.port);
            std::thread::sleep(Duration::from_millis(20));
        }
        pg
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Runs the PostgreSQL program `name` (as `postgres` when we are root).
    pub fn run(&self, name: &str, args: &[&str]) -> Output {
        let program = self.bin.join(name);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        cmd.args(args).current_dir(self.dir.path()).env("LC_ALL", "C").output().unwrap_or_else(|e| panic!("{name} runs: {e}"))
    }

    /// SQL through `psql` on database `db`: its output, unaligned, tuples only.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let port = self.port.to_string();
        let out = self.run("psql", &["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", &port, "-U", "postgres", "-d", db, "-c", sql]);
        assert!(out.status.success(), "psql {sql:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// A new, empty database of its own for one test: its URL.
    pub fn database(&self, prefix: &str) -> String {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!("{prefix}_{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::SeqCst));
        self.psql("postgres", &format!("CREATE DATABASE \"{name}\""));
        self.url(&name)
    }

    /// `postgres://postgres@127.0.0.1:PORT/DB`
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Postgres {
    /// Stops the cluster at once (its data is a test's, thrown away).
    pub fn stop(&self) {
        let data = self.data();
        let _ = self.run("pg_ctl", &["-D", data.to_str().unwrap_or_default(), "-m", "immediate", "-w", "stop"]);
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}
