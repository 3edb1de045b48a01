//! Start-up: the time from starting the product to its first served page (a signed-in
//! person's dashboard), on a database holding N endpoints and, as the same run's baseline, on an
//! empty one. Each start is a process of its own (`ea-bench serve`), as an administrator's
//! restart is; the person signed in through an earlier start, so the timed start serves a
//! session it finds in the database.

use std::path::Path;
use std::time::{Duration, Instant};

use endpoint_analytics::auth::{Role, random_token};
use endpoint_analytics::db::Db;
use endpoint_analytics::modeling::Modeler;

/// One timed start.
#[derive(Debug, Clone, Copy)]
pub struct Start {
    /// Seconds until the port answered at all (the login page).
    pub listening: f64,
    /// Seconds until the signed-in dashboard answered 200.
    pub first_page: f64,
}

/// The product as a child process on `database_url` and `data_dir`; killed when dropped.
struct Product {
    child: std::process::Child,
    base: String,
}

impl Product {
    fn spawn(database_url: &str, data_dir: &Path) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = std::process::Command::new(std::env::current_exe()?)
            .arg("serve")
            .env("DATABASE_URL", database_url)
            .env("EA_DATA_DIR", data_dir)
            .env("EA_BIND", format!("127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        Ok(Product { child, base: format!("http://127.0.0.1:{port}") })
    }

    /// Polls `path` (with `cookie`) until it answers 200; the seconds since `since`.
    async fn first_200(&mut self, path: &str, cookie: Option<&str>, since: Instant) -> anyhow::Result<f64> {
        let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
        let deadline = since + Duration::from_secs(600);
        while Instant::now() < deadline {
            let mut req = client.get(format!("{}{path}", self.base));
            if let Some(c) = cookie {
                req = req.header("Cookie", c);
            }
            if let Ok(res) = req.send().await {
                anyhow::ensure!(res.status() == 200, "GET {path} answered {} (signed out?)", res.status());
                return Ok(since.elapsed().as_secs_f64());
            }
            if let Some(status) = self.child.try_wait()? {
                anyhow::bail!("the product stopped at start-up ({status})");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        anyhow::bail!("the product did not answer {path} within 10 minutes")
    }
}

impl Drop for Product {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Fills a fresh database at `database_url` with `endpoints` network endpoints and a person,
/// signs her in through one start of the product, then times a second start.
pub async fn measure(database_url: &str, data_dir: &Path, endpoints: usize) -> anyhow::Result<Start> {
    std::fs::create_dir_all(data_dir)?;
    let password = random_token(15);
    {
        let db = Db::connect(database_url, 4)?;
        db.migrate()?;
        let pw = password.clone();
        db.run(move |c| {
            endpoint_analytics::accounts::create_user(c, "bench", &pw, Role::Admin).map_err(|e| anyhow::anyhow!("{e}"))
        })
        .await?;
        if endpoints > 0 {
            crate::fill(&db, &Modeler::standard()?, endpoints).await?;
        }
    }
    let cookie = {
        let mut first = Product::spawn(database_url, data_dir)?;
        first.first_200("/login", None, Instant::now()).await?;
        crate::suite::sign_in(&first.base, "bench", &password).await?
    };
    let started = Instant::now();
    let mut product = Product::spawn(database_url, data_dir)?;
    let listening = product.first_200("/login", None, started).await?;
    let first_page = product.first_200("/", Some(&cookie), started).await?;
    Ok(Start { listening, first_page })
}

/// `ea-bench startup`: prints the start with `endpoints` endpoints beside the empty database's.
pub async fn run(endpoints: usize, postgres: Option<&str>) -> anyhow::Result<()> {
    let empty = measure_fresh(0, postgres).await?;
    let full = measure_fresh(endpoints, postgres).await?;
    for (what, start) in [("an empty database".to_owned(), empty), (format!("{endpoints} endpoints"), full)] {
        println!(
            "start-up with {what}: listening after {:.2} s, first signed-in page after {:.2} s",
            start.listening, start.first_page
        );
    }
    Ok(())
}

/// [`measure`] on a fresh SQLite file, or a fresh database on the PostgreSQL server `postgres`,
/// removed afterwards.
pub async fn measure_fresh(endpoints: usize, postgres: Option<&str>) -> anyhow::Result<Start> {
    let dir = std::env::temp_dir().join(format!("ea-bench-startup-{}-{endpoints}", std::process::id()));
    let pg = postgres
        .map(|server| crate::suite::PostgresDatabase::create(server, &format!("_startup_{endpoints}"), false))
        .transpose()?;
    let url = match &pg {
        Some(p) => p.url.clone(),
        None => format!("sqlite://{}", dir.join("product.db").display()),
    };
    let start = measure(&url, &dir, endpoints).await;
    drop(pg);
    if std::env::var_os("EA_BENCH_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    start
}
