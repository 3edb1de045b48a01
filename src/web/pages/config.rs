//! Configuration pages: integrations, and profiles (enable/disable, rules, full re-model, the
//! Defender tag each profile's machines get).

use std::collections::HashMap;

use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::audit;
use crate::db::models::jobs::{self, Job};
use crate::db::models::profiles::{self, ProfileRow};
use crate::error::AppError;
use crate::modeling::{self, REMODEL_JOB};
use crate::web::auth::{AdminUser, AnyUser};
use crate::web::filters;
use crate::web::htmx::Htmx;
use crate::web::{AppState, Input, Layout, html, input};

#[derive(Template)]
#[template(path = "config/integrations.html")]
struct IntegrationsPage {
    layout: Layout,
    /// The Defender integration's state, as its card shows it.
    defender: crate::defender::service::Status,
    /// Entra ID sign-in: configured, and enabled.
    sso: (bool, bool),
}

pub async fn integrations(user: AnyUser, state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    let defender = state.defender.status().await?;
    let sso = state
        .db
        .run(|c| Ok(crate::sso::settings::load(c)?))
        .await?
        .map(|c| (true, c.enabled))
        .unwrap_or((false, false));
    html(&IntegrationsPage { layout: Layout::new(&user, "integrations"), defender, sso })
}

/// One profile as the Profiles page shows it.
pub struct ProfileView {
    pub row: ProfileRow,
    pub endpoints: i64,
    pub risky: Option<String>,
    pub rules: Vec<String>,
    /// The Defender tag the product writes to the profile's machines (`defender::tags`).
    pub defender_tag: Option<String>,
    /// What the tag field holds: the tag, or what was typed when it was refused, and why.
    pub tag_value: String,
    pub tag_error: Option<String>,
}

#[derive(Template)]
#[template(path = "config/profiles.html")]
struct ProfilesPage {
    layout: Layout,
    profiles: Vec<ProfileView>,
    not_profiled: i64,
    stale: bool,
    job: Option<Job>,
}

#[derive(Template)]
#[template(path = "config/_remodel.html")]
struct RemodelProgress {
    job: Option<Job>,
}

pub async fn profiles(user: AnyUser, state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    profiles_page(user, &state, None).await
}

async fn profiles_page(
    user: AnyUser,
    state: &AppState,
    tag_error: Option<(i64, String, String)>,
) -> Result<HttpResponse, AppError> {
    let tags: HashMap<String, String> =
        crate::defender::tags::mappings(&state.db).await?.into_iter().map(|m| (m.profile, m.tag)).collect();
    let (rows, counts, stale, job) = state
        .db
        .run(|c| {
            Ok((
                profiles::all(c)?,
                profiles::endpoint_counts(c)?,
                modeling::is_stale(c)?,
                jobs::latest(c, REMODEL_JOB)?,
            ))
        })
        .await?;
    let counts: HashMap<String, i64> = counts.into_iter().collect();
    let lib = state.modeler.library();
    let mut views: Vec<ProfileView> = rows
        .into_iter()
        .map(|row| {
            let def = lib.find(&row.name).map(|i| &lib.profiles()[i]);
            ProfileView {
                endpoints: counts.get(&row.name).copied().unwrap_or(0),
                risky: def.and_then(|d| d.risky.clone()),
                rules: def.map(|d| d.rules.iter().map(|r| r.description.clone()).collect()).unwrap_or_default(),
                defender_tag: tags.get(&row.name).cloned(),
                tag_value: tags.get(&row.name).cloned().unwrap_or_default(),
                tag_error: None,
                row,
            }
        })
        .collect();
    if let Some((id, typed, why)) = tag_error
        && let Some(v) = views.iter_mut().find(|v| v.row.id == id)
    {
        v.tag_value = typed;
        v.tag_error = Some(why);
    }
    views.sort_by(|a, b| {
        (&a.row.owner, &a.row.category, &a.row.name).cmp(&(&b.row.owner, &b.row.category, &b.row.name))
    });
    html(&ProfilesPage {
        layout: Layout::new(&user, "profiles"),
        not_profiled: counts.get("").copied().unwrap_or(0),
        profiles: views,
        stale,
        job,
    })
}

#[derive(Deserialize)]
pub struct DefenderTagForm {
    /// The tag; empty removes the mapping.
    #[serde(default)]
    tag: String,
}

/// Maps a profile to the Defender tag its machines get (admins), or removes the mapping (an
/// empty tag); a refused tag shows the page again with the reason beside the profile.
pub async fn set_defender_tag(
    user: AdminUser,
    state: web::Data<AppState>,
    id: Input<web::Path<i64>>,
    form: Input<web::Form<DefenderTagForm>>,
) -> Result<HttpResponse, AppError> {
    let id = input(id)?.into_inner();
    let tag = input(form)?.into_inner().tag;
    match crate::defender::tags::set_mapping(&state.db, id, Some(&tag), &user.username).await? {
        Ok(_) => Ok(HttpResponse::SeeOther().insert_header(("Location", "/config/profiles")).finish()),
        Err(crate::defender::tags::Refused::NoSuchProfile) => Err(AppError::NotFound),
        Err(why) => {
            let mut page = profiles_page(AnyUser(user.0.clone()), &state, Some((id, tag, why.to_string()))).await?;
            *page.status_mut() = actix_web::http::StatusCode::UNPROCESSABLE_ENTITY;
            Ok(page)
        }
    }
}

#[derive(Deserialize)]
pub struct EnabledForm {
    /// `true` or `false`; anything else is a 400.
    enabled: bool,
}

/// Enabling or disabling a profile marks the model stale; a re-model applies the change.
pub async fn set_enabled(
    user: AdminUser,
    state: web::Data<AppState>,
    id: Input<web::Path<i64>>,
    form: Input<web::Form<EnabledForm>>,
) -> Result<HttpResponse, AppError> {
    let id = input(id)?.into_inner();
    let enabled = input(form)?.enabled;
    let profile = state.db.run(move |c| Ok(profiles::find(c, id)?)).await?.ok_or(AppError::NotFound)?;
    state
        .db
        .run(move |c| {
            profiles::set_enabled(c, id, enabled)?;
            Ok(modeling::mark_stale(c, true)?)
        })
        .await?;
    let action = if enabled { "profile.enable" } else { "profile.disable" };
    audit(&state.db, &user.username, action, &profile.name, "success", "").await?;
    Ok(HttpResponse::SeeOther().insert_header(("Location", "/config/profiles")).finish())
}

/// Starts the full re-model (admins, after the page's confirmation) and answers with its progress.
pub async fn start_remodel(
    user: AdminUser,
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    let started = modeling::start_remodel(&state.db, &state.modeler, &state.background, &user.username).await?;
    if started.is_none() {
        return Err(AppError::Conflict("A re-model is already running.".into()));
    }
    audit(&state.db, &user.username, "profiles.remodel", "all endpoints", "started", "").await?;
    if Htmx::of(&req).request {
        return remodel_progress_of(&state).await;
    }
    Ok(HttpResponse::SeeOther().insert_header(("Location", "/config/profiles")).finish())
}

async fn remodel_progress_of(state: &AppState) -> Result<HttpResponse, AppError> {
    let job = state.db.run(|c| Ok(jobs::latest(c, REMODEL_JOB)?)).await?;
    html(&RemodelProgress { job })
}

/// The progress fragment; it polls itself while the job runs and stops when it ends.
pub async fn remodel_progress(_user: AnyUser, state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    remodel_progress_of(&state).await
}
