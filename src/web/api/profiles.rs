//! Profiles' Defender tags for admins (issue 22, tags written to Defender):
//! `GET /api/v1/profiles/defender-tags` lists the mappings, `PUT /api/v1/profiles/{id}/defender-tag`
//! with `{"tag": "EA:IP-Camera"}` maps a profile to a tag (every live Defender machine whose
//! endpoint has the profile gets it, in the background), `DELETE` the same path removes the
//! mapping (and with it the tags the product wrote for it). Through `crate::defender::tags`.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::defender::tags::{self, ProfileTag};
use crate::error::AppError;
use crate::web::auth::ApiAdmin;
use crate::web::filters::rfc3339;
use crate::web::{AppState, Input, input};

#[derive(Serialize)]
struct ProfileTagJson {
    profile_id: i64,
    profile: String,
    tag: String,
    updated_by: String,
    updated_at: Option<String>,
}

impl From<ProfileTag> for ProfileTagJson {
    fn from(m: ProfileTag) -> Self {
        ProfileTagJson {
            profile_id: m.profile_id,
            profile: m.profile,
            tag: m.tag,
            updated_by: m.updated_by,
            updated_at: rfc3339(m.updated_at),
        }
    }
}

pub async fn list(_caller: ApiAdmin, state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    let items: Vec<ProfileTagJson> = tags::mappings(&state.db).await?.into_iter().map(Into::into).collect();
    Ok(HttpResponse::Ok().json(json!({ "items": items })))
}

pub async fn put(
    caller: ApiAdmin,
    state: web::Data<AppState>,
    id: Input<web::Path<i64>>,
    body: Input<web::Bytes>,
) -> Result<HttpResponse, AppError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        tag: String,
    }
    let id = input(id)?.into_inner();
    let Body { tag } = serde_json::from_slice(&input(body)?)
        .map_err(|e| AppError::bad_request(format!(r#"The body must be {{"tag": "…"}}: {e}"#)))?;
    if tag.trim().is_empty() {
        return Err(AppError::bad_request("The Defender tag is empty: DELETE the mapping to remove it."));
    }
    let set = tags::set_mapping(&state.db, id, Some(&tag), &caller.person()).await??;
    let set = set.ok_or_else(|| anyhow::anyhow!("the mapping of profile {id} vanished"))?;
    Ok(HttpResponse::Ok().json(ProfileTagJson::from(set)))
}

pub async fn delete(
    caller: ApiAdmin,
    state: web::Data<AppState>,
    id: Input<web::Path<i64>>,
) -> Result<HttpResponse, AppError> {
    let id = input(id)?.into_inner();
    tags::set_mapping(&state.db, id, None, &caller.person()).await??;
    Ok(HttpResponse::NoContent().finish())
}
