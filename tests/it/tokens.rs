//! API tokens managed on their page: created with a name, a role and an expiry, shown once,
//! scoped to their role, and revoked.

use endpoint_analytics::auth::{Role, hash_api_token, new_api_token};
use endpoint_analytics::db::models::api_tokens;
use serde_json::json;

use crate::helpers::*;

async fn tokens_page(app: &TestApp, admin: &reqwest::Client) -> scraper::Html {
    let res = admin.get(app.url("/tokens")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    doc(&res.text().await.unwrap())
}

/// The cells of the token's row on the page: name, role, created by, created, expires, last used, status.
fn row_of(page: &scraper::Html, name: &str) -> Vec<String> {
    let rows = scraper::Selector::parse("#tokens tbody tr").unwrap();
    let cells = scraper::Selector::parse("td").unwrap();
    page.select(&rows)
        .map(|r| r.select(&cells).map(|c| c.text().collect::<String>().trim().to_owned()).collect::<Vec<_>>())
        .find(|cells| cells.first().map(String::as_str) == Some(name))
        .unwrap_or_else(|| panic!("no row for {name}"))
}

async fn api_status(app: &TestApp, token: &str) -> u16 {
    let res = reqwest::Client::new().get(app.url("/api/v1/endpoints")).bearer_auth(token).send().await.unwrap();
    res.status().as_u16()
}

#[tokio::test]
async fn admins_create_name_scope_expire_and_revoke_api_tokens_on_their_page() {
    let app = spawn_app().await;
    let admin = app.login_as("root", Role::Admin).await;

    // Invalid forms say why and create nothing.
    for (name, role, days) in
        [("", "operator", ""), ("x", "superuser", ""), ("x", "analyst", "0"), ("x", "analyst", "ten")]
    {
        let res = app.post_form(&admin, "/tokens", &[("name", name), ("role", role), ("expires_days", days)]).await;
        assert_eq!(res.status(), 400, "{name:?} {role:?} {days:?}");
        assert!(!res.text().await.unwrap().contains("id=\"new-token\""));
    }
    assert!(app.db.run(|c| Ok(api_tokens::list(c)?)).await.unwrap().is_empty());

    // Created: shown once, with its name, role and expiry; it works with its role only.
    let res =
        app.post_form(&admin, "/tokens", &[("name", "nac <sync>"), ("role", "operator"), ("expires_days", "30")]).await;
    assert_eq!(res.status(), 200);
    let page = doc(&res.text().await.unwrap());
    let token = select_all(&page, "#new-token code.token").pop().expect("the new token is shown");
    assert!(token.len() >= 32);
    let row = row_of(&page, "nac <sync>");
    assert_eq!(
        (row[1].as_str(), row[2].as_str(), row[5].as_str(), row[6].as_str()),
        ("operator", "root", "—", "active")
    );
    assert_ne!(row[4], "—", "the expiry date is shown");
    assert!(!tokens_page(&app, &admin).await.html().contains(&token), "shown only once");
    assert_eq!(api_status(&app, &token).await, 200);
    let put = reqwest::Client::new().put(app.url("/api/v1/integrations/defender")).bearer_auth(&token).json(&json!({}));
    assert_eq!(put.send().await.unwrap().status(), 403, "an operator token is not an admin");

    // Last used is shown once it was used.
    let row = row_of(&tokens_page(&app, &admin).await, "nac <sync>");
    assert_ne!(row[5], "—", "last used: {row:?}");

    // Revoked: refused at once.
    let id = app.db.run(|c| Ok(api_tokens::list(c)?)).await.unwrap()[0].id;
    let res = app.post_form(&admin, &format!("/tokens/{id}/revoke"), &[]).await;
    assert_eq!(res.status(), 303);
    assert_eq!(api_status(&app, &token).await, 401);
    assert_eq!(row_of(&tokens_page(&app, &admin).await, "nac <sync>")[6], "revoked");

    // Expired: refused, and shown as expired, without a revoke button it no longer needs.
    let expired = new_api_token();
    let hash = hash_api_token(&expired);
    app.db
        .run(move |c| {
            Ok(api_tokens::create(
                c,
                "old script",
                &hash,
                Role::Admin,
                api_tokens::Creator::CommandLine,
                Some(endpoint_analytics::db::now() - 1),
            )?)
        })
        .await
        .unwrap();
    assert_eq!(api_status(&app, &expired).await, 401);
    let page = tokens_page(&app, &admin).await;
    assert_eq!(row_of(&page, "old script")[6], "expired");

    // Audited.
    let audit = admin.get(app.url("/audit")).send().await.unwrap().text().await.unwrap();
    assert!(audit.contains("token.create") && audit.contains("token.revoke"));
}
