//! Admin endpoints under `/_sim/` for tests, benchmarks and the demo. They are not part of
//! the simulated service, need no token, are not counted and never rate limited or faulted.
//!
//! * `GET  /_sim/faults` → installed [`Faults`]; `POST /_sim/faults` (a `Faults` JSON) replaces
//!   them (rule progress restarts).
//! * `POST /_sim/tokens/invalidate` → every token issued so far answers 401 from now on.
//! * `GET  /_sim/counters` → [`super::Counters`].
//! * `POST /_sim/reset` → counters, rate-limit windows, actions/isolation and faults (back to
//!   the configured ones) are reset.
//! * `GET  /_sim/clients`; `POST /_sim/clients` with `{client_id, secret?, roles?,
//!   secret_expired?, display_name?, redirect_uris?}` adds a client (secret required) or alters
//!   one.
//! * `GET  /_sim/users`; `POST /_sim/users` with a [`SimUser`] (`{username, name?, oid?, roles?,
//!   groups?}`) adds a person who can sign in, or replaces the one with that user name.
//! * `GET  /_sim/tenant` → a summary; `GET /_sim/observations` → the matching network
//!   observations; `GET /_sim/machines/{id}` → the isolation state of a machine.

use actix_web::{HttpResponse, web};
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;

use super::actions::ActionType;
use super::faults::Faults;
use super::{ClientSpec, SimState, SimUser, lock};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/_sim")
            .route("/faults", web::get().to(get_faults))
            .route("/faults", web::post().to(set_faults))
            .route("/tokens/invalidate", web::post().to(invalidate))
            .route("/counters", web::get().to(counters))
            .route("/reset", web::post().to(reset))
            .route("/clients", web::get().to(list_clients))
            .route("/clients", web::post().to(upsert_client))
            .route("/users", web::get().to(list_users))
            .route("/users", web::post().to(upsert_user))
            .route("/tenant", web::get().to(tenant))
            .route("/tenant/advance", web::post().to(advance))
            .route("/observations", web::get().to(observations))
            .route("/machines/{id}", web::get().to(machine_state)),
    );
}

fn bad(msg: String) -> HttpResponse {
    HttpResponse::BadRequest().json(json!({"error": msg}))
}

async fn get_faults(st: web::Data<SimState>) -> HttpResponse {
    HttpResponse::Ok().json(st.faults())
}

async fn set_faults(st: web::Data<SimState>, body: web::Bytes) -> HttpResponse {
    match serde_json::from_slice::<Faults>(&body) {
        Ok(f) => {
            st.set_faults(f.clone());
            HttpResponse::Ok().json(f)
        }
        Err(e) => bad(format!("invalid faults: {e}")),
    }
}

async fn invalidate(st: web::Data<SimState>) -> HttpResponse {
    st.invalidate_tokens();
    HttpResponse::NoContent().finish()
}

async fn counters(st: web::Data<SimState>) -> HttpResponse {
    HttpResponse::Ok().json(st.counters())
}

async fn reset(st: web::Data<SimState>) -> HttpResponse {
    st.reset();
    HttpResponse::NoContent().finish()
}

async fn list_clients(st: web::Data<SimState>) -> HttpResponse {
    let clients: Vec<ClientSpec> = st.clients.read().unwrap_or_else(|e| e.into_inner()).values().cloned().collect();
    HttpResponse::Ok().json(clients)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientPatch {
    client_id: String,
    secret: Option<String>,
    roles: Option<Vec<String>>,
    secret_expired: Option<bool>,
    display_name: Option<String>,
    redirect_uris: Option<Vec<String>>,
}

async fn upsert_client(st: web::Data<SimState>, body: web::Bytes) -> HttpResponse {
    let p: ClientPatch = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => return bad(format!("invalid client: {e}")),
    };
    let mut c = match (st.client(&p.client_id), &p.secret) {
        (Some(c), _) => c,
        (None, Some(s)) => ClientSpec::new(&p.client_id, s),
        (None, None) => return bad("a new client needs a secret".into()),
    };
    if let Some(s) = p.secret {
        c.secret = s;
    }
    if let Some(r) = p.roles {
        c.roles = r;
    }
    if let Some(e) = p.secret_expired {
        c.secret_expired = e;
    }
    if p.display_name.is_some() {
        c.display_name = p.display_name;
    }
    if let Some(uris) = p.redirect_uris {
        c.redirect_uris = uris;
    }
    st.upsert_client(c.clone());
    HttpResponse::Ok().json(c)
}

async fn list_users(st: web::Data<SimState>) -> HttpResponse {
    HttpResponse::Ok().json(st.users())
}

async fn upsert_user(st: web::Data<SimState>, body: web::Bytes) -> HttpResponse {
    match serde_json::from_slice::<SimUser>(&body) {
        Ok(u) if !u.username.trim().is_empty() => HttpResponse::Ok().json(st.upsert_user(u)),
        Ok(_) => bad("a user needs a username".into()),
        Err(e) => bad(format!("invalid user: {e}")),
    }
}

/// One more change to the tenant, made now: upgrades, device-group moves, fixes and new
/// vulnerabilities on some machines (see `tenant::evolution`).
async fn advance(st: web::Data<SimState>) -> HttpResponse {
    let st = st.into_inner();
    // Regenerating is CPU work; keep it off the async executor.
    match tokio::task::spawn_blocking(move || st.advance()).await {
        Ok(changes) => HttpResponse::Ok().json(json!({"changes": changes})),
        Err(e) => HttpResponse::InternalServerError().json(json!({"error": e.to_string()})),
    }
}

async fn tenant(st: web::Data<SimState>) -> HttpResponse {
    let t = st.tenant();
    let actions_of = |kind: ActionType| lock(&st.actions).actions.iter().filter(|a| a.kind == kind).count();
    HttpResponse::Ok().json(json!({
        "tenant_id": t.tenant_id(),
        "tenant_domain": t.params.tenant_domain,
        "seed": t.seed(),
        "anchor": t.anchor().to_rfc3339(),
        "machines": t.machines().len(),
        "vulnerabilities": t.vulnerabilities().len(),
        "machine_vulnerabilities": t.total_machine_vulnerabilities(),
        "alerts": t.alerts().len(),
        "software": t.software().len(),
        "duplicates": t.machines().iter().filter(|m| m.duplicate_of.is_some()).count(),
        "network_matches": t.machines().iter().filter(|m| m.in_network).count(),
        "isolate_actions": actions_of(ActionType::Isolate),
        "unisolate_actions": actions_of(ActionType::Unisolate),
    }))
}

async fn observations(st: web::Data<SimState>) -> HttpResponse {
    HttpResponse::Ok().json(st.tenant().network_observations())
}

async fn machine_state(st: web::Data<SimState>, id: web::Path<String>) -> HttpResponse {
    match st.tenant().machine_by_id_or_name(&id) {
        Some(m) => {
            let iso = lock(&st.actions).isolation_state(m.index, Utc::now());
            HttpResponse::Ok().json(json!({"id": m.id, "isolation": iso}))
        }
        None => HttpResponse::NotFound().json(json!({"error": "unknown machine"})),
    }
}
