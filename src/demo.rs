//! `endpoint-analytics demo`: the product beside a simulated Microsoft, so that a new user sees
//! every page working in one command. Uses the embedded SQLite default (or DATABASE_URL).
//!
//! The simulator is not part of this binary: it is the workspace's `defender-sim` binary
//! (`crates/defender-sim`), started beside it as a stand-in for Microsoft, which tells what a
//! client needs (its address, tenant, app registration and people) on one JSON line. The product
//! then configures itself as an administrator would, and talks to the simulator over HTTP only.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use anyhow::Context;
use serde::Deserialize;

use crate::app::Application;
use crate::auth::{Role, random_token};
use crate::config::Settings;
use crate::db::models::users;
use crate::defender::service::Saved;
use crate::domain::observations::{MAX_BATCH, RawObservation};
use crate::inventory;
use crate::web::forms::defender::{self as defender_form, SettingsInput};
use crate::web::forms::sso::{self as sso_form, SsoInput};

pub const ADMIN: &str = "admin";

/// What the simulator prints with `--print-json`.
#[derive(Deserialize)]
struct Simulated {
    base_url: String,
    tenant_id: String,
    client_id: String,
    client_secret: String,
    admin_app_role: String,
    operator_app_role: String,
    analysts_group: String,
    users: Vec<String>,
}

/// The simulator's process, stopped with the demo.
struct SimulatorProcess(Child);

impl Drop for SimulatorProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The `defender-sim` binary beside this one. Run by cargo (`cargo run -- demo`), it is built
/// first, in the same profile (a no-op once it is up to date).
fn simulator_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let sim = exe.with_file_name(format!("defender-sim{}", std::env::consts::EXE_SUFFIX));
    if let (Some(cargo), Some(manifest_dir)) = (std::env::var_os("CARGO"), std::env::var_os("CARGO_MANIFEST_DIR")) {
        println!("Building the Defender simulator (crates/defender-sim; only the first time takes a while)...");
        let mut build = Command::new(cargo);
        build.args(["build", "--quiet", "-p", "defender-sim", "--bin", "defender-sim", "--manifest-path"]);
        build.arg(PathBuf::from(manifest_dir).join("Cargo.toml"));
        if !cfg!(debug_assertions) {
            build.arg("--release");
        }
        anyhow::ensure!(build.status()?.success(), "the Defender simulator did not build");
    }
    anyhow::ensure!(
        sim.exists(),
        "the demo needs the Defender simulator beside this binary ({}): build it with `cargo build --release -p defender-sim`",
        sim.display()
    );
    Ok(sim)
}

/// Starts the simulator and reads what it says about itself.
fn start_simulator(machines: usize, bind: &str) -> anyhow::Result<(SimulatorProcess, Simulated)> {
    let mut child = Command::new(simulator_binary()?)
        .args(["--bind", bind, "--machines", &machines.to_string(), "--print-json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot start the Defender simulator")?;
    let stdout = child.stdout.take().context("the simulator's output")?;
    let process = SimulatorProcess(child);
    let mut line = String::new();
    std::io::BufReader::new(stdout).read_line(&mut line)?;
    let simulated = serde_json::from_str(&line)
        .with_context(|| format!("the simulator did not start (it said {:?})", line.trim()))?;
    Ok((process, simulated))
}

pub async fn run(settings: Settings, machines: usize, simulator_bind: String) -> anyhow::Result<()> {
    let (_simulator, sim) = tokio::task::spawn_blocking(move || start_simulator(machines, &simulator_bind)).await??;
    let app = Application::build(settings).await?;
    let state = app.state();

    // The demo admin gets a fresh random password on every start.
    let password = random_token(15);
    let pw = password.clone();
    state
        .db
        .run(move |c| {
            match users::find_by_name(c, ADMIN)? {
                Some(u) => {
                    crate::accounts::reset_password(c, u.id, &pw).map_err(|e| anyhow::anyhow!("{e}"))?;
                    users::set_disabled(c, u.id, false)?;
                    users::set_role(c, u.id, Role::Admin)?;
                }
                None => crate::accounts::create_user(c, ADMIN, &pw, Role::Admin).map_err(|e| anyhow::anyhow!("{e}"))?,
            }
            Ok(())
        })
        .await?;

    // The event destination before anything happens, so that it gets the demo's first events.
    let siem = demo_siem(&state).await?;
    demo_rule(&state).await?;

    // Network observations first (what the simulator's network would report), so that the first
    // sync merges machines into them.
    let observations: Vec<RawObservation> =
        reqwest::get(format!("{}/_sim/observations", sim.base_url)).await?.error_for_status()?.json().await?;
    let mut observed = 0;
    for chunk in observations.chunks(MAX_BATCH) {
        let items = chunk.iter().cloned().enumerate().map(|(i, o)| (i, Ok(o))).collect();
        let report = inventory::ingest(&state.db, &state.modeler, items, "network").await?;
        observed += report.created + report.updated;
    }

    let input = SettingsInput {
        tenant_id: sim.tenant_id.clone(),
        client_id: sim.client_id.clone(),
        client_secret: sim.client_secret.clone(),
        cloud: "commercial".into(),
        login_base_url: sim.base_url.clone(),
        api_base_url: sim.base_url.clone(),
        enabled: true,
        sync_interval_minutes: Some(60),
        ..Default::default()
    };
    let checked = |input: &SettingsInput| {
        defender_form::validate(input)
            .map_err(|e| anyhow::anyhow!("the demo configuration was refused: {}", e.summary()))
    };
    // Save as disabled first so that enabling below always starts the first sync at once.
    let _ = state.defender.save(checked(&SettingsInput { enabled: false, ..input.clone() })?, "demo").await?;
    if let Saved::SecretNeeded(why) = state.defender.save(checked(&input)?, "demo").await? {
        anyhow::bail!("the demo configuration was refused: {}", why.message());
    }

    // Sign-in with Microsoft against the simulator's Entra endpoints, beside the local admin.
    let sign_in = SsoInput {
        tenant_id: sim.tenant_id.clone(),
        client_id: sim.client_id.clone(),
        client_secret: sim.client_secret.clone(),
        authority: sim.base_url.clone(),
        admin_values: sim.admin_app_role.clone(),
        operator_values: sim.operator_app_role.clone(),
        analyst_values: sim.analysts_group.clone(),
        enabled: true,
        ..Default::default()
    };
    let sign_in = sso_form::validate(&sign_in)
        .map_err(|e| anyhow::anyhow!("the demo's sign-in configuration was refused: {}", e.summary()))?;
    if let Err(why) = crate::sso::configure(&state.db, &state.secrets, sign_in, "demo").await? {
        anyhow::bail!("the demo's sign-in configuration was refused: {}", why.message());
    }

    println!();
    println!("Endpoint Analytics demo");
    println!("  open      http://{}", app.addr());
    println!("  sign in   user {ADMIN}, password {password}");
    println!("  or        Sign in with Microsoft (simulated Entra ID) as one of {}", sim.users.join(", "));
    println!("  simulated Defender tenant of {machines} machines at {} (first sync running now)", sim.base_url);
    println!("  {observed} network observations were ingested; some of them are Defender machines and merge.");
    println!("  when the first sync ends, the tenant changes (new CVEs, fixes, alerts) and a second sync follows:");
    println!("  risk changes, coverage gaps and the risk history show what changed.");
    println!(
        "  events (risk Medium and up, coverage gaps, actions) go to a demo syslog receiver at {siem}: see Notifications."
    );
    println!("  the response rule \"{RULE}\" (Response rules) asks to isolate each endpoint whose Defender alert");
    println!("  level is High; a second person decides on Approvals. Between the two syncs one more workstation's");
    println!("  alert rises to High: approve its isolation and follow it on the endpoint's Actions tab.");
    println!("  Ctrl-C stops both.");
    println!();
    tokio::spawn(second_sync(state.defender.clone(), sim.base_url.clone()));
    app.run_until_stopped().await
}

/// Once the first sync has ended, changes the simulated tenant as a real one changes between
/// syncs and starts a second sync, so that the demo shows risk that moved, not only risk found.
async fn second_sync(defender: crate::defender::service::DefenderService, simulator: String) {
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        match defender.status().await {
            Ok(s) if s.running.is_none() && s.last_run.is_some() => break,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "the demo could not read the sync's state");
                return;
            }
        }
    }
    let advanced = reqwest::Client::new().post(format!("{simulator}/_sim/tenant/advance")).send().await;
    if let Err(e) = advanced.and_then(|r| r.error_for_status()) {
        tracing::warn!(error = %e, "the demo could not change the simulated tenant");
        return;
    }
    if let Err(e) = defender.start_sync("schedule", "demo").await {
        tracing::warn!(error = %e, "the demo could not start its second sync");
    }
}

const RULE: &str = "Isolate on a High alert (demo)";

/// The demo's response rule: isolate (Full) every Defender endpoint whose alert level is High,
/// once a second person approves; written, dry-run and enabled by "demo", so that the demo's
/// admin (another person) may approve. Left as it is when it exists (an admin may have changed
/// or disabled it).
async fn demo_rule(state: &crate::web::AppState) -> anyhow::Result<()> {
    use crate::domain::rules::{Condition, RuleAction};
    use crate::rules::{self, RuleInput};
    state
        .db
        .run(|c| {
            if rules::list(c)?.iter().any(|r| r.rule.name == RULE) {
                return Ok(());
            }
            let input = RuleInput {
                name: RULE.into(),
                condition: Condition {
                    min_alert: Some("High".into()),
                    source: Some("defender".into()),
                    ..Default::default()
                },
                action: RuleAction::Isolate { scope: "Full".into() },
                requires_approval: true,
                cooldown_minutes: 1440,
            };
            let refused = |r: rules::Refused| anyhow::anyhow!("the demo's response rule was refused: {r}");
            let rule = rules::create(c, &input, "demo")?.map_err(refused)?;
            rules::dry_run(c, rule.rule.id)?.map_err(refused)?;
            rules::set_enabled(c, rule.rule.id, true, "demo")?.map_err(refused)?;
            Ok(())
        })
        .await
}

/// The demo's event destination: a syslog receiver (UDP, on loopback) that this process holds
/// and reads, so that the Notifications page shows real deliveries. The destination is created
/// on the first start and pointed at the new receiver on later ones.
async fn demo_siem(state: &crate::web::AppState) -> anyhow::Result<String> {
    use crate::db::models::destinations;
    use crate::db::models::events::kinds;
    use crate::notify::settings::{self, DestinationInput};
    const NAME: &str = "SIEM (demo)";
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    let address = socket.local_addr()?.to_string();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        while socket.recv(&mut buf).await.is_ok() {}
    });
    let wanted = [kinds::RISK_CHANGED, kinds::GAP_OPENED, kinds::GAP_CLOSED, kinds::SYNC_FAILED]
        .into_iter()
        .chain([kinds::ACTION_REQUESTED, kinds::ACTION_FINISHED])
        .map(str::to_owned)
        .collect();
    let input = DestinationInput {
        name: Some(NAME.into()),
        kind: Some(crate::notify::SYSLOG_UDP.into()),
        url: Some(address.clone()),
        event_types: Some(wanted),
        min_level: Some("Medium".into()),
        enabled: Some(true),
        ..Default::default()
    };
    let existing = state.db.run(|c| Ok(destinations::list(c)?)).await?.into_iter().find(|d| d.name == NAME);
    let outcome = match existing {
        Some(d) => settings::update(&state.db, &state.secrets, "demo", d.id, input).await?,
        None => {
            let fields = settings::check(&state.secrets, input, None).map_err(|e| anyhow::anyhow!(e))?;
            settings::create(&state.db, "demo", fields).await?.map(|_| ())
        }
    };
    outcome.map_err(|e| anyhow::anyhow!("the demo's event destination was refused: {e}"))?;
    Ok(address)
}
