//! `endpoint-analytics demo`: the product and the Defender simulator together, so that a new user
//! sees every page working in one command. Uses the embedded SQLite default (or DATABASE_URL).

use crate::app::Application;
use crate::auth::{Role, random_token};
use crate::config::Settings;
use crate::db::models::users;
use crate::defender::service::{self, Saved};
use crate::defender::settings::SettingsInput;
use crate::domain::observations::RawObservation;
use crate::inventory;
use crate::simulator::{self, SimConfig};

pub const ADMIN: &str = "admin";

pub async fn run(settings: Settings, machines: usize, simulator_bind: String) -> anyhow::Result<()> {
    let sim = simulator::start(SimConfig { machines, bind: simulator_bind, ..SimConfig::default() }).await?;
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

    // Network observations first, so that the first sync merges machines into them.
    let observations: Vec<(usize, Result<RawObservation, String>)> =
        sim.tenant().network_observations().into_iter().enumerate().map(|(i, o)| (i, Ok(o))).collect();
    let mut observed = 0;
    for chunk in observations.chunks(crate::domain::observations::MAX_BATCH) {
        let report = inventory::ingest(&state.db, &state.modeler, chunk.to_vec(), "network").await?;
        observed += report.created + report.updated;
    }

    let input = sim.integration_settings();
    // Save as disabled first so that enabling below always starts the first sync at once.
    let _ = service::save(&state.sync_context(), SettingsInput { enabled: false, ..input.clone() }, "demo").await?;
    if let Saved::Invalid(e) = service::save(&state.sync_context(), input, "demo").await? {
        anyhow::bail!("the demo configuration was refused: {}", e.summary());
    }

    // Sign-in with Microsoft against the simulator's Entra endpoints, beside the local admin.
    if let Err(e) = crate::sso::configure(&state.db, &state.secrets, sim.sso_settings(), "demo").await? {
        anyhow::bail!("the demo's sign-in configuration was refused: {}", e.summary());
    }

    println!();
    println!("Endpoint Analytics demo");
    println!("  open      http://{}", app.addr());
    println!("  sign in   user {ADMIN}, password {password}");
    let people = sim.users().iter().map(|u| u.username.clone()).collect::<Vec<_>>().join(", ");
    println!("  or        Sign in with Microsoft (simulated Entra ID) as one of {people}");
    println!("  simulated Defender tenant of {machines} machines at {} (first sync running now)", sim.base_url);
    println!("  {observed} network observations were ingested; some of them are Defender machines and merge.");
    println!("  Ctrl-C stops both.");
    println!();
    app.run_until_stopped().await
}
