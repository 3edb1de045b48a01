//! Configuration pages: integrations and profiles.

use actix_web::HttpResponse;
use askama::Template;

use crate::error::AppError;
use crate::web::auth::AnyUser;
use crate::web::{Layout, html};

#[derive(Template)]
#[template(path = "config/integrations.html")]
struct IntegrationsPage {
    layout: Layout,
}

pub async fn integrations(user: AnyUser) -> Result<HttpResponse, AppError> {
    html(&IntegrationsPage {
        layout: Layout::new(&user, "integrations"),
    })
}

#[derive(Template)]
#[template(path = "config/profiles.html")]
struct ProfilesPage {
    layout: Layout,
}

pub async fn profiles(user: AnyUser) -> Result<HttpResponse, AppError> {
    html(&ProfilesPage {
        layout: Layout::new(&user, "profiles"),
    })
}
