//! What the web pages and the JSON API do with the integration, in one place: save settings
//! (with the enable/disable consequences), test a connection, start a sync, report status.

use serde::Serialize;

use super::ConnectionReport;
use super::import::OWNER;
use super::settings::{self, FieldErrors, Settings, SettingsInput};
use super::sync::{self, SyncContext};
use crate::db::models::integration::{self, SyncRun};
use crate::db::models::{audit, defender_machines};
use crate::db::now;

/// The outcome of a save.
pub enum Saved {
    Ok { message: String },
    Invalid(FieldErrors),
}

/// Validates and saves in one write transaction: what is checked (above all, whether the stored
/// secret may be kept) is what is saved over, even when two admins save at once.
pub async fn save(ctx: &SyncContext, input: SettingsInput, by: &str) -> anyhow::Result<Saved> {
    let (secrets, modeler, by_owned) = (ctx.secrets.clone(), ctx.modeler.clone(), by.to_owned());
    let outcome = ctx
        .db
        .run(move |c| {
            c.write_transaction(|c| {
                let existing = settings::load(c)?;
                let s = match settings::validate(&input, existing.as_ref()) {
                    Ok(s) => s,
                    Err(errors) => {
                        audit::record(
                            c,
                            audit::NewAudit {
                                actor: &by_owned,
                                action: "defender.configure",
                                target: "Microsoft Defender",
                                outcome: "refused",
                                details: &errors.summary(),
                            },
                        )?;
                        return Ok(Err(errors));
                    }
                };
                let was_enabled = existing.as_ref().is_some_and(|c| c.enabled);
                let details = settings::describe_change(existing.as_ref(), &s);
                settings::save(c, &secrets, &s, &by_owned)?;
                let removed = if was_enabled && !s.enabled { disable(c, &modeler)? } else { 0 };
                audit::record(
                    c,
                    audit::NewAudit {
                        actor: &by_owned,
                        action: "defender.configure",
                        target: "Microsoft Defender",
                        outcome: "success",
                        details: &details,
                    },
                )?;
                Ok(Ok((s, was_enabled, removed)))
            })
        })
        .await?;
    let (s, was_enabled, removed) = match outcome {
        Ok(saved) => saved,
        Err(errors) => return Ok(Saved::Invalid(errors)),
    };
    let mut message = "Saved.".to_owned();
    if s.enabled && !was_enabled {
        sync::start(ctx, "enabled", by).await?;
        message = "Saved and enabled: the first sync has started.".into();
    } else if was_enabled && !s.enabled {
        message = format!(
            "Saved and disabled: the integration's profiles were deleted and {removed} endpoints re-modeled with the standard profiles; imported endpoints are kept."
        );
    }
    Ok(Saved::Ok { message })
}

/// Disabling: the integration's profiles go (their endpoints are re-modeled with the standard
/// profiles), Defender's risk factors go, imported endpoints stay. The stored machines forget
/// what they last wrote, so that re-enabling brings everything back.
fn disable(c: &mut crate::db::AnyConnection, modeler: &crate::modeling::Modeler) -> anyhow::Result<usize> {
    use crate::db::models::risk;
    let affected = risk::delete_sources(c, &[super::import::EXPOSURE_SOURCE, super::import::ALERTS_SOURCE])?;
    risk::refresh_overall(c, &affected)?;
    defender_machines::forget_content_hashes(c)?;
    Ok(modeler.delete_owner(c, OWNER)?)
}

/// Test Connection. `typed`: settings an admin typed, tested as typed (the stored secret only
/// where it was saved for); `None`: the saved settings, for everyone else — what a non-admin
/// could type is never used, so nobody but an admin chooses where a request goes. The audit
/// entry names the hosts contacted.
pub async fn test(
    ctx: &SyncContext,
    typed: Option<&SettingsInput>,
    by: &str,
) -> anyhow::Result<Result<ConnectionReport, String>> {
    let existing = ctx.db.run(|c| Ok(settings::load(c)?)).await?;
    let s: Settings = match (typed, &existing) {
        (Some(input), _) => match settings::validate(input, existing.as_ref()) {
            Ok(s) => s,
            Err(e) => return Ok(Err(format!("Fix the form first: {}", e.summary()))),
        },
        (None, Some(config)) => match Settings::from_config(config) {
            Ok(s) => s,
            Err(e) => return Ok(Err(format!("The saved settings are not valid: {}", e.summary()))),
        },
        (None, None) => return Ok(Err("Microsoft Defender is not configured yet.".into())),
    };
    let secret = match (&s.new_secret, &existing) {
        (Some(typed), _) => typed.clone(),
        (None, Some(config)) => match settings::stored_secret(&ctx.secrets, config) {
            Ok(secret) => secret.unwrap_or_default(),
            // Sealed for another destination: nothing is sent anywhere.
            Err(e) => return Ok(Err(format!("{e}."))),
        },
        (None, None) => String::new(),
    };
    let outcome = match sync::client_for(&s, &secret, ctx.client_options.clone()) {
        Ok(client) => client.test_connection().await.map_err(|e| e.plain_words()),
        Err(e) => Err(e.plain_words()),
    };
    let details = match &outcome {
        Ok(_) => format!("{}: success", s.hosts_contacted()),
        Err(e) => format!("{}: {e}", s.hosts_contacted()),
    };
    let outcome_word = if outcome.is_ok() { "success" } else { "failure" };
    let by = by.to_owned();
    ctx.db
        .run(move |c| {
            Ok(audit::record(
                c,
                audit::NewAudit {
                    actor: &by,
                    action: "defender.test",
                    target: "Microsoft Defender",
                    outcome: outcome_word,
                    details: &details,
                },
            )?)
        })
        .await?;
    Ok(outcome)
}

/// What `GET /api/v1/integrations/defender/status` and the page show.
#[derive(Debug, Serialize)]
pub struct Status {
    pub configured: bool,
    pub enabled: bool,
    pub secret_configured: bool,
    pub cloud: String,
    pub sync_interval_minutes: i32,
    pub running: Option<SyncRun>,
    pub last_run: Option<SyncRun>,
    pub last_success: Option<SyncRun>,
    /// UTC Unix seconds of the next scheduled sync, when enabled.
    pub next_run_at: Option<i64>,
    pub machines: i64,
    pub stale_machines: i64,
    pub recent_runs: Vec<SyncRun>,
}

pub async fn status(ctx: &SyncContext) -> anyhow::Result<Status> {
    ctx.db
        .run(|c| {
            let config = settings::load(c)?;
            let last_run = integration::latest(c, settings::NAME)?;
            let last_success = integration::last_success(c, settings::NAME)?;
            let recent_runs = integration::recent(c, settings::NAME, 10)?;
            let enabled = config.as_ref().is_some_and(|c| c.enabled);
            let interval =
                config.as_ref().map(|c| c.sync_interval_minutes).unwrap_or(settings::DEFAULT_INTERVAL_MINUTES);
            let next_run_at =
                enabled.then(|| last_run.as_ref().map(|r| r.started_at + i64::from(interval) * 60).unwrap_or_else(now));
            Ok(Status {
                configured: config.is_some(),
                enabled,
                secret_configured: config.as_ref().is_some_and(|c| c.secret_ciphertext.is_some()),
                cloud: config.as_ref().map(|c| c.cloud.clone()).unwrap_or_default(),
                sync_interval_minutes: interval,
                running: last_run.clone().filter(SyncRun::is_running),
                last_run,
                last_success,
                next_run_at,
                machines: defender_machines::count(c, false)?,
                stale_machines: defender_machines::count(c, true)?,
                recent_runs,
            })
        })
        .await
}

/// Sync now: starts one unless one runs (then `None`).
pub async fn sync_now(ctx: &SyncContext, by: &str) -> anyhow::Result<Option<i64>> {
    let config = ctx.db.run(|c| Ok(settings::load(c)?)).await?;
    anyhow::ensure!(config.is_some_and(|c| c.enabled), "Enable and save the integration before syncing.");
    sync::start(ctx, "manual", by).await
}
