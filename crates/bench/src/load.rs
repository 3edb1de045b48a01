//! Load generation for the page benchmarks: `wrk` (Debian's, an established load generator)
//! against the product and against a minimal actix-web server that returns the same bytes from
//! memory with the same worker count — the baseline every page figure is divided by.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::process::Command;

use actix_web::dev::ServerHandle;
use actix_web::web::Bytes;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};

/// The `wrk` binary (`EA_WRK` overrides it).
fn wrk_binary() -> String {
    std::env::var("EA_WRK").unwrap_or_else(|_| "wrk".to_owned())
}

/// Connections kept open by the load generator (one wrk thread: the machine has two cores and
/// the server needs them).
pub const CONNECTIONS: u32 = 8;

/// One load run's figures.
#[derive(Debug, Clone, Copy, Default)]
pub struct Load {
    pub requests: u64,
    pub rps: f64,
    pub p99_ms: f64,
    /// Non-2xx/3xx answers plus socket errors (connect, read, write, timeout).
    pub errors: u64,
}

/// Whether `wrk` can be run.
pub fn wrk_available() -> bool {
    Command::new(wrk_binary()).arg("--version").output().is_ok()
}

/// Runs `wrk` for `secs` seconds against `url` (with the session cookie, if any).
pub async fn wrk(url: &str, cookie: Option<&str>, secs: u64) -> anyhow::Result<Load> {
    let mut cmd = Command::new(wrk_binary());
    cmd.args(["-t1", &format!("-c{CONNECTIONS}"), &format!("-d{secs}s"), "--latency", "--timeout", "10s"]);
    if let Some(c) = cookie {
        cmd.args(["-H", &format!("Cookie: {c}")]);
    }
    cmd.arg(url);
    let output = tokio::task::spawn_blocking(move || cmd.output()).await?.map_err(|e| {
        anyhow::anyhow!("cannot run wrk ({e}): install it (`apt-get install wrk`) or set EA_WRK to its path")
    })?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    anyhow::ensure!(output.status.success(), "wrk failed: {text}{}", String::from_utf8_lossy(&output.stderr));
    parse_wrk(&text).ok_or_else(|| anyhow::anyhow!("cannot read wrk's output:\n{text}"))
}

/// A wrk latency like `812.34us`, `4.21ms` or `1.02s`, in milliseconds.
fn millis(s: &str) -> Option<f64> {
    let (n, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic())?);
    let n: f64 = n.parse().ok()?;
    Some(match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        "m" => n * 60_000.0,
        _ => return None,
    })
}

fn parse_wrk(text: &str) -> Option<Load> {
    let mut load = Load::default();
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["99%", v] => load.p99_ms = millis(v)?,
            ["Requests/sec:", v] => load.rps = v.parse().ok()?,
            [n, "requests", "in", ..] => load.requests = n.parse().ok()?,
            ["Non-2xx", "or", "3xx", "responses:", n] => load.errors += n.parse::<u64>().ok()?,
            ["Socket", "errors:", rest @ ..] => {
                load.errors += rest.iter().filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok()).sum::<u64>()
            }
            _ => {}
        }
    }
    (load.rps > 0.0).then_some(load)
}

/// The baseline server: `GET /{name}` answers the bytes registered under that name, from
/// memory, with the product's content type; nothing else runs per request.
pub struct BytesServer {
    pub addr: SocketAddr,
    handle: ServerHandle,
}

impl BytesServer {
    pub fn start(bodies: HashMap<String, Bytes>, workers: usize) -> anyhow::Result<Self> {
        let bodies = web::Data::new(bodies);
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let server = HttpServer::new(move || {
            App::new().app_data(bodies.clone()).default_service(web::to(
                |req: HttpRequest, bodies: web::Data<HashMap<String, Bytes>>| async move {
                    match bodies.get(req.path().trim_start_matches('/')) {
                        Some(b) => HttpResponse::Ok().content_type("text/html; charset=utf-8").body(b.clone()),
                        None => HttpResponse::NotFound().finish(),
                    }
                },
            ))
        })
        .workers(workers)
        .listen(listener)?
        .run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        Ok(Self { addr, handle })
    }

    pub async fn stop(self) {
        self.handle.stop(true).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_wrk_output() {
        let out = "Running 2s test @ http://127.0.0.1:1/\n  1 threads and 8 connections\n  Latency Distribution\n     50%  512.00us\n     99%    3.25ms\n  4321 requests in 2.00s, 1.00MB read\n  Non-2xx or 3xx responses: 3\n  Socket errors: connect 0, read 1, write 0, timeout 2\nRequests/sec:   2160.50\n";
        let l = parse_wrk(out).unwrap();
        assert_eq!(l.requests, 4321);
        assert_eq!(l.errors, 6);
        assert!((l.p99_ms - 3.25).abs() < 1e-9 && (l.rps - 2160.5).abs() < 1e-9);
        assert_eq!(millis("1.5s"), Some(1500.0));
        assert!(parse_wrk("garbage").is_none());
    }
}
