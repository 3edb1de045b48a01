//! The simulator's own `/_sim/` admin endpoints, called over HTTP by [`super::RunningSimulator`]:
//! whoever drives the simulator (the product's tests, the benchmarks) changes faults, clients
//! and people, and reads counters, through the same interface as a script against the
//! `defender-sim` binary would — never by reaching into its memory.
//!
//! Blocking and dependency-free (one HTTP/1.1 request per connection over `std::net`): the
//! server answers on threads of its own, so a test may call it from async code.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// `METHOD base/path` with an optional JSON body; the answer's status and body.
fn call(base: &str, method: &str, path: &str, body: Option<&[u8]>) -> anyhow::Result<(u16, Vec<u8>)> {
    let host = base.strip_prefix("http://").context("the simulator's admin endpoints are plain http")?;
    let mut conn = TcpStream::connect(host).with_context(|| format!("cannot reach the simulator at {base}"))?;
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let body = body.unwrap_or_default();
    write!(
        conn,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    )?;
    conn.write_all(body)?;
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer)?;
    let split = answer.windows(4).position(|w| w == b"\r\n\r\n").context("no end of headers in the answer")?;
    let head = String::from_utf8_lossy(&answer[..split]).into_owned();
    let status: u16 = head.split(' ').nth(1).and_then(|s| s.parse().ok()).context("no status in the answer")?;
    let rest = answer[split + 4..].to_vec();
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase().starts_with("transfer-encoding:") && l.to_ascii_lowercase().contains("chunked")
    });
    Ok((status, if chunked { dechunk(&rest)? } else { rest }))
}

fn dechunk(mut data: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n").context("a chunk without a size line")?;
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(data.get(..size).context("a chunk shorter than its size")?);
        data = data.get(size + 2..).context("a chunk without its line end")?;
    }
}

/// `GET` a JSON answer.
pub fn get<T: DeserializeOwned>(base: &str, path: &str) -> anyhow::Result<T> {
    let (status, body) = call(base, "GET", path, None)?;
    if status != 200 {
        bail!("GET {path} answered {status}: {}", String::from_utf8_lossy(&body));
    }
    Ok(serde_json::from_slice(&body)?)
}

/// `POST` a JSON body; the answer's status and body.
pub fn post(base: &str, path: &str, body: &impl Serialize) -> anyhow::Result<(u16, Vec<u8>)> {
    call(base, "POST", path, Some(&serde_json::to_vec(body)?))
}
