//! Benchmarks that print figures (not tests that assert timings): `ea-bench all` measures every
//! figure of `docs/benchmarks.md` beside its same-run baseline (`suite`); `ea-bench remodel` and
//! `ea-bench sync` time those two parts alone. Run them from a release build (`scripts/bench`, or
//! `cargo run --release -p bench -- remodel`).

use std::time::Instant;

use endpoint_analytics::db::Db;
use endpoint_analytics::db::models::jobs;
use endpoint_analytics::domain::observations::RawObservation;
use endpoint_analytics::inventory;
use endpoint_analytics::modeling::{self, Modeler};

pub mod load;
pub mod startup;
pub mod suite;

/// A spread of real device kinds: (OUI, host name prefix, DHCP vendor class, DHCP parameter list).
const KINDS: &[(&str, &str, &str, &str)] = &[
    ("10:e7:c6", "pc-", "MSFT 5.0", "1,3,6,15,31,33,43,44,46,47,119,121,249,252"),
    ("3c:d9:2b", "npi", "Hewlett-Packard JetDirect", "1,3,6,15,44,47"),
    ("f0:b3:ec", "johns-iphone-", "", "1,121,3,6,15,108,114,119,252"),
    ("b8:27:eb", "raspberrypi-", "dhcpcd-9.4.1:Linux-6.1.21-v8+:aarch64:BCM2835", ""),
    ("00:40:8c", "axis-", "", ""),
    ("0c:11:67", "sep", "Cisco Systems, Inc. IP Phone CP-8845", ""),
    ("52:54:00", "vm-", "", "1,28,2,3,15,6,119,12,44,47,26,121,42"),
    ("64:1b:2f", "galaxy-", "android-dhcp-13", "1,3,6,15,26,28,51,58,59,43,114,108"),
    ("00:c0:b7", "apc", "", ""),
    ("02:00:00", "unknown-", "", ""),
];

pub fn observations(n: usize) -> Vec<RawObservation> {
    (0..n)
        .map(|i| {
            let (oui, host, class, params) = KINDS[i % KINDS.len()];
            let mac = format!("{oui}:{:02x}:{:02x}:{:02x}", (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff);
            let opt = |s: &str| Some(s.to_owned()).filter(|s| !s.is_empty());
            RawObservation {
                mac: Some(mac),
                ip: Some(format!("10.{}.{}.{}", (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff)),
                hostname: Some(format!("{host}{i:06x}")),
                dhcp_vendor_class: opt(class),
                dhcp_params: opt(params),
                user_agent: None,
                seen_at: None,
            }
        })
        .collect()
}

/// Fills `db` with `n` generated network endpoints (modeled on ingest); returns the seconds taken.
pub async fn fill(db: &Db, modeler: &Modeler, n: usize) -> anyhow::Result<f64> {
    let m = modeler.clone();
    db.run(move |c| Ok(m.sync_standard_profiles(c)?)).await?;
    let started = Instant::now();
    for (b, chunk) in observations(n).chunks(10_000).enumerate() {
        let items = chunk.iter().cloned().enumerate().map(|(i, o)| (b * 10_000 + i, Ok(o))).collect();
        inventory::ingest(db, modeler, items, "network").await?;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// A full re-model of every endpoint, as the product runs it: (endpoints, changed, seconds).
pub async fn time_remodel(db: &Db, modeler: &Modeler) -> anyhow::Result<(i64, usize, f64)> {
    let job = db
        .run(|c| Ok(jobs::start(c, modeling::REMODEL_JOB, "bench", 0)?))
        .await?
        .ok_or_else(|| anyhow::anyhow!("a re-model is running"))?;
    let outcome = modeling::run_remodel(db, modeler, job).await;
    let status = if outcome.is_ok() { "succeeded" } else { "failed" };
    db.run(move |c| Ok(jobs::finish(c, job, status, "")?)).await?;
    outcome
}

/// Fills `db` with `n` endpoints (modeled on ingest) and times a full re-model; prints the figures.
pub async fn remodel(db: &Db, n: usize) -> anyhow::Result<f64> {
    let modeler = Modeler::standard()?;
    let ingest_secs = fill(db, &modeler, n).await?;
    println!("ingested and modeled {n} endpoints in {ingest_secs:.2} s ({:.0} endpoints/s)", n as f64 / ingest_secs);
    let (count, changed, secs) = time_remodel(db, &modeler).await?;
    let rate = count as f64 / secs;
    println!("full re-model: {count} endpoints in {secs:.2} s = {rate:.0} endpoints/s ({changed} changed)");
    Ok(rate)
}

/// Risk history at scale: `n` endpoints recorded daily for `days` days while `percent` of
/// them change level each day (a factor set as an integration sets it); prints the rows and the
/// bytes the history takes, and the time of a day's snapshot.
pub async fn history(db: &Db, n: usize, days: i32, percent: f64) -> anyhow::Result<()> {
    use endpoint_analytics::db::models::{risk, risk_history as rh};
    let modeler = Modeler::standard()?;
    let secs = fill(db, &modeler, n).await?;
    println!("ingested and modeled {n} endpoints in {secs:.1} s");
    let ids: Vec<i64> = db.run(|c| Ok(endpoint_analytics::db::models::endpoints::all_ids(c)?)).await?;
    let per_day = ((ids.len() as f64) * percent / 100.0).round().max(1.0) as usize;
    let start = chrono::Utc::now().timestamp() - i64::from(days) * 86_400;
    let (mut snapshot_secs, mut slowest) = (0.0f64, 0.0f64);
    for d in 0..days {
        // A different slice of the inventory each day, each to a level of its own.
        let from = (d as usize * per_day * 7) % ids.len();
        let changed: Vec<i64> = (0..per_day).map(|k| ids[(from + k) % ids.len()]).collect();
        let level = (d % 5) as i16;
        db.run(move |c| {
            let rows: Vec<(i64, &str, Option<risk::FactorValue>)> = changed
                .iter()
                .map(|id| (*id, "Bench scanner", (level > 0).then(|| (level, "bench".to_owned(), String::new()))))
                .collect();
            Ok(risk::set_many(c, &rows)?)
        })
        .await?;
        let now = start + i64::from(d) * 86_400;
        let t = Instant::now();
        db.run(move |c| Ok(endpoint_analytics::risk_history::snapshot(c, now)?)).await?;
        let took = t.elapsed().as_secs_f64();
        snapshot_secs += took;
        slowest = slowest.max(took);
    }
    let (rows, bytes) = db.run(|c| Ok((rh::count(c)?, rh::storage_bytes(c)?))).await?;
    println!(
        "risk history: {n} endpoints x {days} days, {percent}% changing daily: {rows} rows, {:.1} MiB \
         ({:.0} bytes/row); a day's snapshot {:.2} s on average, {:.2} s at most",
        bytes as f64 / 1_048_576.0,
        bytes as f64 / rows.max(1) as f64,
        snapshot_secs / f64::from(days.max(1)),
        slowest
    );
    Ok(())
}

/// One of the whole-inventory passes [`passes`] measures.
enum Pass {
    /// The day's risk history snapshot, `day` days from now (the second finds the first's rows).
    RiskHistory {
        day: i64,
    },
    Coverage,
}

/// The whole-inventory passes the supervisor and every sync run (the day's risk history
/// snapshot, the coverage refresh) on `n` endpoints, each timed with the memory it took beyond
/// what the process held before (`VmHWM` reset before each). A database that already holds
/// endpoints (`--database-url` of an earlier run) is used as it is.
pub async fn passes(db: &Db, n: usize) -> anyhow::Result<()> {
    let held: i64 = db.run(|c| Ok(endpoint_analytics::db::models::endpoints::count_all(c)?)).await?;
    if held == 0 {
        let secs = fill(db, &Modeler::standard()?, n).await?;
        println!("ingested and modeled {n} endpoints in {secs:.1} s");
    }
    let held: i64 = db.run(|c| Ok(endpoint_analytics::db::models::endpoints::count_all(c)?)).await?;
    let now = chrono::Utc::now().timestamp();
    let policy = endpoint_analytics::coverage::CoveragePolicy::default();
    for pass in [Pass::RiskHistory { day: 0 }, Pass::Coverage, Pass::RiskHistory { day: 1 }] {
        let before = current_rss_mib().unwrap_or(0.0);
        let measured = reset_peak_rss();
        let t = Instant::now();
        let (what, done) = match pass {
            Pass::Coverage => {
                let r = db.run(move |c| Ok(endpoint_analytics::coverage::refresh(c, policy, now)?)).await?;
                ("coverage refresh", format!("{} gaps opened, {} closed, {} changed", r.opened, r.closed, r.changed))
            }
            Pass::RiskHistory { day } => {
                let at = now + day * 86_400;
                let rows = db.run(move |c| Ok(endpoint_analytics::risk_history::snapshot(c, at)?)).await?;
                let what = if day == 0 { "risk history snapshot" } else { "risk history snapshot, next day" };
                (what, format!("{rows} rows written"))
            }
        };
        let secs = t.elapsed().as_secs_f64();
        let peak = if measured { peak_rss_mib().map(|p| format!("{:.0} MiB", p - before)) } else { None };
        println!(
            "{what} of {held} endpoints: {secs:.2} s, {done}; memory beyond the {before:.0} MiB held before: {}",
            peak.unwrap_or_else(|| "not measurable here".into()),
        );
    }
    Ok(())
}

/// The resident memory of this process now, in MiB (Linux `VmRSS`).
pub fn current_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// The peak resident memory of this process so far, in MiB (Linux `VmHWM`).
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Resets `VmHWM` to the current resident size (Linux ≥ 4.0), so that the next
/// [`peak_rss_mib`] is the peak of what runs in between; false where that is not possible.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The Defender simulator as a separate process (`ea-bench simulate`, so that memory figures are
/// the product's alone) with the documented per-API rate limits enforced unless told otherwise;
/// killed when dropped.
pub struct SimProcess {
    child: std::process::Child,
    pub base: String,
}

impl SimProcess {
    pub async fn start(machines: usize, port: Option<u16>, rate_limits: bool) -> anyhow::Result<Self> {
        let port = match port {
            Some(p) => p,
            None => std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port(),
        };
        let exe = std::env::current_exe()?;
        let child = std::process::Command::new(exe)
            .args(["simulate", "--bind", &format!("127.0.0.1:{port}"), "--machines", &machines.to_string()])
            .args((!rate_limits).then_some("--no-rate-limits"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        let sim = SimProcess { child, base: format!("http://127.0.0.1:{port}") };
        for _ in 0..1200 {
            if reqwest::get(format!("{}/_sim/counters", sim.base)).await.is_ok_and(|r| r.status().is_success()) {
                return Ok(sim);
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        anyhow::bail!("the simulator did not start")
    }

    /// The generated tenant's sizes (`/_sim/tenant`).
    pub async fn tenant(&self) -> anyhow::Result<serde_json::Value> {
        Ok(reqwest::get(format!("{}/_sim/tenant", self.base)).await?.json().await?)
    }

    /// Settings that point the product at this simulator (saved disabled: the caller syncs),
    /// as the settings form checks them.
    pub fn settings(&self) -> endpoint_analytics::defender::settings::Settings {
        use defender_sim::{DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_TENANT_ID};
        let typed = endpoint_analytics::web::forms::defender::SettingsInput {
            tenant_id: DEFAULT_TENANT_ID.into(),
            client_id: DEFAULT_CLIENT_ID.into(),
            client_secret: DEFAULT_CLIENT_SECRET.into(),
            login_base_url: self.base.clone(),
            api_base_url: self.base.clone(),
            enabled: false,
            ..Default::default()
        };
        endpoint_analytics::web::forms::defender::validate(&typed).expect("the simulator's settings are valid")
    }
}

impl Drop for SimProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback webhook receiver that answers every request 200 at once; counts them.
async fn webhook_receiver() -> anyhow::Result<(String, std::sync::Arc<std::sync::atomic::AtomicUsize>)> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/events", listener.local_addr()?);
    let count = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = count.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let counted = counted.clone();
            tokio::spawn(async move {
                let (mut all, mut buf) = (Vec::new(), [0u8; 16384]);
                while let Ok(n) = sock.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    all.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&all);
                    let Some((head, body)) = text.split_once("\r\n\r\n") else { continue };
                    let len = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned())
                        })
                        .and_then(|v| v.parse::<usize>().ok())
                        .unwrap_or(0);
                    if body.len() >= len {
                        counted.fetch_add(1, Ordering::Relaxed);
                        let _ =
                            sock.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await;
                        return;
                    }
                }
            });
        }
    });
    Ok((url, count))
}

/// A full Defender sync of a simulated tenant of `machines` (see [`SimProcess`]). Prints wall
/// time, API calls, 429s and peak RSS, then (unless `full_only`) the same for an unchanged
/// second sync. With `with_webhook`, a webhook destination (a loopback receiver) takes every
/// event while the syncs run, and each round also prints the events written and how long after
/// the sync the last one was delivered. The last line, `peak_rss_mib=…`, is what
/// `bench all --memory-series` reads.
pub async fn sync(
    db: &Db,
    machines: usize,
    sim_port: Option<u16>,
    full_only: bool,
    with_webhook: bool,
) -> anyhow::Result<()> {
    use endpoint_analytics::defender::service::DefenderService;
    use endpoint_analytics::notify::settings::{self, DestinationInput};

    let sim = SimProcess::start(machines, sim_port, true).await?;
    let tenant = sim.tenant().await?;
    let modeler = Modeler::standard()?;
    let m = modeler.clone();
    db.run(move |c| Ok(m.sync_standard_profiles(c)?)).await?;
    let master = endpoint_analytics::config::MasterKey::generate();
    let secrets = endpoint_analytics::secrets::SecretBox::new(&master);
    let defender = DefenderService::new(db.clone(), modeler, secrets.clone(), Default::default(), Default::default());
    defender.save(sim.settings(), "bench").await?;
    let received = if with_webhook {
        let (url, received) = webhook_receiver().await?;
        let input = DestinationInput {
            name: Some("bench".into()),
            kind: Some("webhook".into()),
            url: Some(url),
            secret: Some("a-benchmark-secret-of-32-chars!!".into()),
            ..Default::default()
        };
        let fields = settings::check(&secrets, input, None).map_err(|e| anyhow::anyhow!(e))?;
        settings::create(db, "bench", fields).await?.map_err(|e| anyhow::anyhow!("{e}"))?;
        let notifier = endpoint_analytics::notify::Notifier::new(db.clone(), secrets.clone())?;
        tokio::spawn(endpoint_analytics::notify::supervise(notifier));
        // Events recorded before the destination existed are not for it.
        let before = db.run(|c| Ok(endpoint_analytics::db::models::events::count(c)?)).await? as usize;
        Some((received, before))
    } else {
        None
    };
    let rounds: &[&str] = if full_only { &["full import"] } else { &["full import", "unchanged re-sync"] };
    for round in rounds {
        let run = db
            .run(|c| Ok(endpoint_analytics::db::models::integration::start_run(c, "defender", "bench", "bench")?))
            .await?
            .ok_or_else(|| anyhow::anyhow!("a sync is running"))?;
        let started = Instant::now();
        let outcome = defender.run_sync(run).await;
        let secs = started.elapsed().as_secs_f64();
        let counts = outcome.map_err(|(_, e)| anyhow::anyhow!("the sync failed: {e}"))?;
        db.run(move |c| Ok(endpoint_analytics::db::models::integration::finish_run(c, run, "succeeded", counts, "")?))
            .await?;
        println!(
            "{round}: {} machines in {secs:.1} s; created {}, merged {}, updated {}, stale {}; {} API calls, {} throttled (429)",
            counts.machines,
            counts.created,
            counts.merged,
            counts.updated,
            counts.stale,
            counts.api_calls,
            counts.throttled
        );
        if let Some((received, before)) = &received {
            let all = db.run(|c| Ok(endpoint_analytics::db::models::events::count(c)?)).await? as usize;
            let written = all - before;
            let deadline = Instant::now() + std::time::Duration::from_secs(1800);
            while received.load(std::sync::atomic::Ordering::Relaxed) < written {
                anyhow::ensure!(Instant::now() < deadline, "the events were not all delivered in 30 minutes");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            let done = started.elapsed().as_secs_f64();
            println!(
                "{round}: {written} events so far, every one delivered to the webhook {:.1} s after the sync ended ({done:.1} s from its start)",
                done - secs
            );
        }
    }
    println!("tenant: {tenant}");
    let mib = peak_rss_mib().ok_or_else(|| anyhow::anyhow!("cannot read the peak RSS (/proc/self/status)"))?;
    println!("peak_rss_mib={mib:.0}");
    Ok(())
}
