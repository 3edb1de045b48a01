//! Benchmarks that print figures (not tests that assert timings). `endpoint-analytics bench
//! remodel --endpoints 100000` fills a fresh database with generated observations and times a
//! full re-model. Run it from a release build: `cargo run --release -- bench remodel`.

use std::time::Instant;

use crate::db::Db;
use crate::db::models::jobs;
use crate::domain::observations::RawObservation;
use crate::inventory;
use crate::modeling::{self, Modeler};

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

/// Fills `db` with `n` endpoints (modeled on ingest) and times a full re-model; prints the figures.
pub async fn remodel(db: &Db, n: usize) -> anyhow::Result<f64> {
    let modeler = Modeler::standard()?;
    let m = modeler.clone();
    db.run(move |c| Ok(m.sync_standard_profiles(c)?)).await?;
    let started = Instant::now();
    for (b, chunk) in observations(n).chunks(10_000).enumerate() {
        let items = chunk.iter().cloned().enumerate().map(|(i, o)| (b * 10_000 + i, Ok(o))).collect();
        inventory::ingest(db, &modeler, items, "network").await?;
    }
    let ingest_secs = started.elapsed().as_secs_f64();
    println!("ingested and modeled {n} endpoints in {ingest_secs:.2} s ({:.0} endpoints/s)", n as f64 / ingest_secs);
    let job = db
        .run(|c| Ok(jobs::start(c, modeling::REMODEL_JOB, "bench", 0)?))
        .await?
        .ok_or_else(|| anyhow::anyhow!("a re-model is running"))?;
    let (count, changed, secs) = modeling::run_remodel(db, &modeler, job).await?;
    let rate = count as f64 / secs;
    println!("full re-model: {count} endpoints in {secs:.2} s = {rate:.0} endpoints/s ({changed} changed)");
    Ok(rate)
}

/// The peak resident memory of this process so far, in MiB (Linux `VmHWM`).
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// A full Defender sync of a simulated tenant of `machines`, the simulator running as a separate
/// process (so that the memory figure is the product's alone) with the documented rate limits
/// enforced. Prints wall time, API calls against the minimum the page sizes allow, 429s, peak RSS,
/// then the same for an unchanged second sync.
pub async fn sync(db: &Db, machines: usize, sim_port: u16) -> anyhow::Result<()> {
    use crate::defender::service;
    use crate::defender::settings::SettingsInput;
    use crate::defender::sync::{self as dsync, SyncContext};
    use crate::simulator::{DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_TENANT_ID};

    let exe = std::env::current_exe()?;
    let mut child = std::process::Command::new(exe)
        .args(["simulate", "--bind", &format!("127.0.0.1:{sim_port}"), "--machines", &machines.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let base = format!("http://127.0.0.1:{sim_port}");
    let ready = async {
        for _ in 0..600 {
            if reqwest::get(format!("{base}/_sim/counters")).await.is_ok_and(|r| r.status().is_success()) {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        false
    };
    if !ready.await {
        let _ = child.kill();
        anyhow::bail!("the simulator did not start");
    }
    let result = async {
        let counters: serde_json::Value = reqwest::get(format!("{base}/_sim/tenant")).await?.json().await?;
        let modeler = Modeler::standard()?;
        let m = modeler.clone();
        db.run(move |c| Ok(m.sync_standard_profiles(c)?)).await?;
        let master = crate::config::MasterKey::generate();
        let ctx = SyncContext {
            db: db.clone(),
            modeler,
            secrets: crate::secrets::SecretBox::new(&master),
            client_options: Default::default(),
            clients: Default::default(),
            background: Default::default(),
        };
        let input = SettingsInput {
            tenant_id: DEFAULT_TENANT_ID.into(),
            client_id: DEFAULT_CLIENT_ID.into(),
            client_secret: DEFAULT_CLIENT_SECRET.into(),
            login_base_url: base.clone(),
            api_base_url: base.clone(),
            enabled: false,
            ..Default::default()
        };
        service::save(&ctx, input, "bench").await?;
        for round in ["full import", "unchanged re-sync"] {
            let run = db
                .run(|c| Ok(crate::db::models::integration::start_run(c, "defender", "bench", "bench")?))
                .await?
                .ok_or_else(|| anyhow::anyhow!("a sync is running"))?;
            let started = Instant::now();
            let outcome = dsync::run_sync(&ctx, run).await;
            let secs = started.elapsed().as_secs_f64();
            let counts = outcome.map_err(|(_, e)| anyhow::anyhow!("the sync failed: {e}"))?;
            db.run(move |c| Ok(crate::db::models::integration::finish_run(c, run, "succeeded", counts, "")?)).await?;
            println!(
                "{round}: {} machines in {secs:.1} s; created {}, merged {}, updated {}, stale {}; {} API calls, {} throttled (429)",
                counts.machines, counts.created, counts.merged, counts.updated, counts.stale, counts.api_calls, counts.throttled
            );
        }
        println!("tenant: {counters}");
        if let Some(mib) = peak_rss_mib() {
            println!("peak RSS of the product during both syncs: {mib:.0} MiB");
        }
        Ok::<_, anyhow::Error>(())
    }
    .await;
    let _ = child.kill();
    let _ = child.wait();
    result
}
