//! The application as a child process: the real binary (`endpoint-analytics serve`) on its
//! own database, with its log in a file. For the tests that kill it, measure it, or read what
//! it logged.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use endpoint_analytics::db::Db;

use crate::helpers::{PASSWORD, attr, doc};

/// The SQLite file of a [`Proc`] in its directory.
pub const DB_FILE: &str = "ea.db";

/// The long variants of the crash and load tests (see `docs/security.md`).
pub fn long_tests() -> bool {
    std::env::var("EA_LONG_TESTS").as_deref() == Ok("1")
}

/// The application as a child process, its log and (by default) its SQLite file in `dir`.
pub struct Proc {
    child: Child,
    pub base: String,
    pub dir: PathBuf,
}

/// Fixed, so that a restarted process reads what the killed one stored.
pub const MASTER_KEY: &str = "q83vEjY9cT2m0yQ+NwxGgRk5oHc7UZ1aVJ2e3Fh4s6A=";

impl Proc {
    /// Starts `endpoint-analytics serve` and waits until it answers `/healthz`. Its log (JSON,
    /// level `RUST_LOG` or debug) is appended to `dir/app.log`.
    pub async fn start(dir: &Path) -> Proc {
        Self::start_on(dir, &db_url(dir)).await
    }

    /// As [`Proc::start`], on the database at `database_url`.
    pub async fn start_on(dir: &Path, database_url: &str) -> Proc {
        Self::start_with(dir, database_url, &[]).await
    }

    /// As [`Proc::start_on`], with more environment variables (settings) set or replaced.
    pub async fn start_with(dir: &Path, database_url: &str, env: &[(&str, &str)]) -> Proc {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("app.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_endpoint-analytics"))
            .arg("serve")
            .env("DATABASE_URL", database_url)
            .env("EA_BIND", format!("127.0.0.1:{port}"))
            .env("EA_DATA_DIR", dir.join("data"))
            .env("EA_MASTER_KEY", MASTER_KEY)
            .env("EA_WORKERS", "2")
            .env("EA_DB_POOL_SIZE", "4")
            .env("EA_LOG_FORMAT", "json")
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "debug".into()))
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("the binary starts");
        let p = Proc { child, base: format!("http://127.0.0.1:{port}"), dir: dir.to_owned() };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = reqwest::get(p.url("/healthz")).await
                && r.status() == 200
            {
                return p;
            }
            assert!(Instant::now() < deadline, "the app did not come up: {}", p.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Signs `user` (password [`PASSWORD`]) in through the login form; returns the client
    /// holding the session.
    pub async fn sign_in(&self, user: &str) -> reqwest::Client {
        let c = crate::helpers::browser();
        let html = c.get(self.url("/login")).send().await.unwrap().text().await.unwrap();
        let csrf = attr(&doc(&html), "input[name=csrf_token]", "value").unwrap();
        let res = c
            .post(self.url("/login"))
            .form(&[("username", user), ("password", PASSWORD), ("csrf_token", &csrf), ("next", "/")])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 303, "{user} signs in");
        c
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("app.log")).unwrap_or_default()
    }

    /// SIGKILL: no destructor, no flush, no graceful shutdown.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A small pool on the database of a [`Proc`], for the test's own reads and writes.
pub async fn open_db(url: &str) -> Db {
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || Db::connect(&url, 2)).await.unwrap().unwrap()
}

pub fn db_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join(DB_FILE).display())
}

/// Copies the database (with its WAL) of a stopped app into a fresh directory. Nothing may
/// hold it open in this process meanwhile: SQLite's POSIX locks belong to the process, and
/// closing any descriptor of the file (as a copy does) drops them.
pub fn copy_db(from: &Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name().to_string_lossy().starts_with(DB_FILE) {
            std::fs::copy(entry.path(), to.path().join(entry.file_name())).unwrap();
        }
    }
    to
}
