//! Sign-in, sessions, roles, CSRF and the headers every response carries.

use endpoint_analytics::auth::Role;

use crate::helpers::*;

fn session_cookie(res: &reqwest::Response) -> Option<String> {
    res.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("ea_session="))
        .map(|c| c.split(';').next().unwrap().to_owned())
}

/// The sign-in form's CSRF cookie a response set (`name=value`).
fn login_cookie(res: &reqwest::Response) -> String {
    res.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("ea_login="))
        .map(|c| c.split(';').next().unwrap().to_owned())
        .expect("the sign-in page sets its form cookie")
}

#[tokio::test]
async fn the_login_page_is_served_with_security_headers() {
    let app = spawn_app().await;
    let res = browser().get(app.url("/login")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let h = res.headers();
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"));
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["referrer-policy"], "no-referrer");
    assert_eq!(h["cache-control"], "no-store");
    // The form's CSRF cookie; no session is stored for a visitor who has not signed in.
    let cookie = h.get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_owned()).collect::<Vec<_>>().join("\n");
    assert!(
        cookie.starts_with("ea_login=") && cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(!cookie.contains("ea_session"), "{cookie}");
    let html = doc(&res.text().await.unwrap());
    assert_eq!(select_all(&html, "form#login-form button").len(), 1);
}

#[tokio::test]
async fn error_pages_and_static_files_carry_the_headers_too() {
    let app = spawn_app().await;
    let res = browser().get(app.url("/no/such/page")).send().await.unwrap();
    assert_eq!(res.status(), 404);
    assert!(res.headers().contains_key("content-security-policy"));
    assert!(res.text().await.unwrap().contains("not found"));
    let res = browser().get(app.url("/static/htmx-2.0.11.min.js")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");
}

#[tokio::test]
async fn signing_in_gives_a_new_session_id_and_signing_out_makes_the_old_one_useless() {
    let app = spawn_app().await;
    app.add_user("alice", Role::Analyst).await;
    let before = browser().get(app.url("/login")).send().await.unwrap();
    assert!(session_cookie(&before).is_none(), "the login page stores no session");
    // A session id planted before sign-in (session fixation) is not the one signed in.
    let planted = "ea_session=planted-by-an-attacker";
    let form_cookie = login_cookie(&before);
    let csrf = attr(&doc(&before.text().await.unwrap()), "input[name=csrf_token]", "value").unwrap();
    let res = script_client()
        .post(app.url("/login"))
        .header("cookie", format!("{planted}; {form_cookie}"))
        .form(&[("username", "alice"), ("password", PASSWORD), ("csrf_token", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let signed_in = session_cookie(&res).expect("sign-in sets a cookie");
    assert_ne!(planted, signed_in, "the session id is the server's, new at sign-in");

    // Replaying the cookie from another client works while the session lives...
    let replay = crate::helpers::script_client();
    let page = replay.get(app.url("/")).header("cookie", &signed_in).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("alice"));
    let csrf = attr(&doc(&html), "body", "hx-headers")
        .and_then(|h| serde_json::from_str::<serde_json::Value>(&h).ok()?["X-CSRF-Token"].as_str().map(str::to_owned))
        .unwrap();

    let out = script_client()
        .post(app.url("/logout"))
        .header("cookie", &signed_in)
        .form(&[("csrf_token", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 303);
    // ...and not after sign-out: the session is gone on the server.
    let page = replay.get(app.url("/")).header("cookie", &signed_in).send().await.unwrap();
    assert_eq!(page.status(), 303);
    assert!(page.headers()["location"].to_str().unwrap().starts_with("/login"));
}

#[tokio::test]
async fn a_wrong_password_is_refused_audited_and_throttled() {
    let app = spawn_app().await;
    app.add_user("bob", Role::Analyst).await;
    let client = browser();
    for _ in 0..5 {
        let res = app.login(&client, "bob", "not the password at all").await;
        assert_eq!(res.status(), 401);
        assert!(res.text().await.unwrap().contains("not correct"));
    }
    let res = app.login(&client, "bob", PASSWORD).await;
    assert_eq!(res.status(), 429, "locked out even with the right password");
    assert!(res.text().await.unwrap().contains("Too many failed sign-ins"));

    let admin = app.login_as("root-admin", Role::Admin).await;
    let audit = doc(&admin.get(app.url("/audit")).send().await.unwrap().text().await.unwrap());
    let rows = select_all(&audit, "#audit tbody tr");
    assert!(rows.iter().filter(|r| r.contains("bob") && r.contains("failure")).count() >= 5, "{rows:?}");
    assert!(rows.iter().any(|r| r.contains("root-admin") && r.contains("success")));
}

#[tokio::test]
async fn an_unknown_user_cannot_sign_in() {
    let app = spawn_app().await;
    let res = app.login(&browser(), "nobody", PASSWORD).await;
    assert_eq!(res.status(), 401);
}

#[tokio::test]
async fn sign_in_never_redirects_to_another_site() {
    let app = spawn_app().await;
    app.add_user("carol", Role::Analyst).await;
    let client = browser();
    for next in ["https://evil.example/", "//evil.example/x", "/\\evil.example"] {
        let csrf = app.csrf(&client, "/login").await;
        let res = client
            .post(app.url("/login"))
            .form(&[("username", "carol"), ("password", PASSWORD), ("csrf_token", &csrf), ("next", next)])
            .send()
            .await
            .unwrap();
        assert_eq!(res.headers()["location"], "/", "{next}");
        let _ = app.post_form(&client, "/logout", &[]).await;
    }
}

#[tokio::test]
async fn an_analyst_gets_403_on_admin_and_operator_routes() {
    let app = spawn_app().await;
    let analyst = app.login_as("ann", Role::Analyst).await;
    for path in ["/users", "/tokens", "/audit"] {
        let res = analyst.get(app.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 403, "GET {path}");
    }
    for path in ["/users", "/users/1/role", "/users/1/disabled", "/users/1/password", "/tokens", "/tokens/1/revoke"] {
        let res = app.post_form(&analyst, path, &[("role", "admin"), ("disabled", "true"), ("password", "x")]).await;
        assert_eq!(res.status(), 403, "POST {path}");
    }
    let csrf = app.csrf(&analyst, "/").await;
    let upload = reqwest::multipart::Form::new().text("file", "mac\naa:bb:cc:dd:ee:01\n");
    let res =
        analyst.post(app.url("/endpoints/import")).header("x-csrf-token", csrf).multipart(upload).send().await.unwrap();
    assert_eq!(res.status(), 403, "an analyst may not upload");
    // Pages every role may read.
    for path in ["/", "/endpoints", "/config/integrations", "/config/profiles"] {
        assert_eq!(analyst.get(app.url(path)).send().await.unwrap().status(), 200, "GET {path}");
    }
    // The admin can, and the refusals above are in the audit log.
    let admin = app.login_as("adam", Role::Admin).await;
    let audit = doc(&admin.get(app.url("/audit")).send().await.unwrap().text().await.unwrap());
    assert!(select_all(&audit, "#audit tbody tr").iter().any(|r| r.contains("ann") && r.contains("access.denied")));
}

#[tokio::test]
async fn a_post_without_a_valid_csrf_token_is_refused() {
    let app = spawn_app().await;
    let admin = app.login_as("admin", Role::Admin).await;
    let new_user = [("username", "mallory"), ("password", PASSWORD), ("role", "admin")];
    let res = admin.post(app.url("/users")).form(&new_user).send().await.unwrap();
    assert_eq!(res.status(), 403, "no token");
    let mut wrong = new_user.to_vec();
    wrong.push(("csrf_token", "forged"));
    let res = admin.post(app.url("/users")).form(&wrong).send().await.unwrap();
    assert_eq!(res.status(), 403, "wrong token");
    assert!(res.text().await.unwrap().contains("did not come from this site"));
    let csrf = app.csrf(&admin, "/users").await;
    let mut right = new_user.to_vec();
    right.push(("csrf_token", &csrf));
    let res = admin.post(app.url("/users")).header("origin", "https://evil.example").form(&right).send().await.unwrap();
    assert_eq!(res.status(), 403, "cross-site origin");
    let res = admin.post(app.url("/users")).header("sec-fetch-site", "cross-site").form(&right).send().await.unwrap();
    assert_eq!(res.status(), 403, "cross-site fetch");
    let res = admin.post(app.url("/users")).header("origin", "null").form(&right).send().await.unwrap();
    assert_eq!(res.status(), 403, "an opaque origin the browser does not vouch for");
    // htmx sends the token as a header.
    let res = admin.post(app.url("/users")).header("x-csrf-token", &csrf).form(&new_user).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let users = doc(&admin.get(app.url("/users")).send().await.unwrap().text().await.unwrap());
    assert_eq!(select_all(&users, "#users tr[data-user=mallory]").len(), 1, "only the valid request created the user");
}

/// Under `Referrer-Policy: no-referrer` a browser's plain form POST carries `Origin: null`, with
/// `Sec-Fetch-Site: same-origin`: that is this site, and signing in works.
#[tokio::test]
async fn a_same_origin_form_post_with_an_opaque_origin_is_accepted() {
    let app = spawn_app().await;
    app.add_user("olga", Role::Analyst).await;
    let client = browser();
    let csrf = app.csrf(&client, "/login").await;
    let res = client
        .post(app.url("/login"))
        .header("origin", "null")
        .header("sec-fetch-site", "same-origin")
        .form(&[("username", "olga"), ("password", PASSWORD), ("csrf_token", &csrf), ("next", "/")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303, "signed in");
}

#[tokio::test]
async fn htmx_errors_are_shown_in_place_and_signed_out_htmx_requests_are_sent_to_login() {
    let app = spawn_app().await;
    let res = browser().get(app.url("/endpoints/1/tabs/risk")).header("hx-request", "true").send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert!(res.headers()["hx-redirect"].to_str().unwrap().starts_with("/login"));
    let analyst = app.login_as("ann", Role::Analyst).await;
    let res = analyst.get(app.url("/endpoints/999/tabs/risk")).header("hx-request", "true").send().await.unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(res.headers()["hx-retarget"], "#flash");
    assert!(res.text().await.unwrap().contains("flash-error"));
}

#[tokio::test]
async fn admins_manage_users_and_weak_passwords_are_refused() {
    let app = spawn_app().await;
    let admin = app.login_as("admin", Role::Admin).await;
    let res =
        app.post_form(&admin, "/users", &[("username", "dave"), ("password", "short"), ("role", "analyst")]).await;
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("too short"));
    let res =
        app.post_form(&admin, "/users", &[("username", "dave"), ("password", PASSWORD), ("role", "analyst")]).await;
    assert_eq!(res.status(), 200);
    // The last admin cannot demote themself.
    let res = app.post_form(&admin, "/users/1/role", &[("role", "analyst")]).await;
    assert!(res.text().await.unwrap().contains("last active administrator"));
    // Disabling dave ends his ability to sign in.
    let res = app.post_form(&admin, "/users/2/disabled", &[("disabled", "true")]).await;
    assert_eq!(res.status(), 200);
    let res = app.login(&browser(), "dave", PASSWORD).await;
    assert_eq!(res.status(), 401);
}

#[tokio::test]
async fn idle_sessions_end() {
    let app = spawn_app_with(|s| s.session_idle_minutes = 1).await;
    let client = app.login_as("erin", Role::Analyst).await;
    assert_eq!(client.get(app.url("/")).send().await.unwrap().status(), 200);
    // Age the session's activity mark in the database to simulate two idle minutes.
    app.db
        .run(|c| {
            use diesel::prelude::*;
            use endpoint_analytics::db::schema::sessions;
            let rows: Vec<(String, String)> = sessions::table.select((sessions::id, sessions::state)).load(c)?;
            for (id, state) in rows {
                let mut v: std::collections::HashMap<String, String> = serde_json::from_str(&state)?;
                if let Some(a) = v.get_mut("active") {
                    *a = (a.parse::<i64>()? - 120).to_string();
                }
                diesel::update(sessions::table.filter(sessions::id.eq(id)))
                    .set(sessions::state.eq(serde_json::to_string(&v)?))
                    .execute(c)?;
            }
            Ok(())
        })
        .await
        .unwrap();
    let res = client.get(app.url("/")).send().await.unwrap();
    assert_eq!(res.status(), 303, "an idle session sends the person back to sign in");
}

#[tokio::test]
async fn health_checks_answer_without_signing_in() {
    let app = spawn_app().await;
    let res = reqwest::Client::new().get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers().get("set-cookie").is_none(), "no session for a health check");
    assert_eq!(res.text().await.unwrap(), "ok");
    let ready: serde_json::Value =
        reqwest::Client::new().get(app.url("/readyz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(ready["migrations"], "current");
}

/// Rewrites the stored session state of every session (`key` minus `secs`).
async fn age_sessions(app: &TestApp, key: &'static str, secs: i64) {
    app.db
        .run(move |c| {
            use diesel::prelude::*;
            use endpoint_analytics::db::schema::sessions;
            let rows: Vec<(String, String)> = sessions::table.select((sessions::id, sessions::state)).load(c)?;
            for (id, state) in rows {
                let mut v: std::collections::HashMap<String, String> = serde_json::from_str(&state)?;
                if let Some(a) = v.get_mut(key) {
                    *a = (a.parse::<i64>()? - secs).to_string();
                }
                diesel::update(sessions::table.filter(sessions::id.eq(id)))
                    .set(sessions::state.eq(serde_json::to_string(&v)?))
                    .execute(c)?;
            }
            Ok(())
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn sessions_end_at_the_absolute_timeout_however_active() {
    let app = spawn_app_with(|s| s.session_absolute_hours = 1).await;
    let client = app.login_as("erin", Role::Analyst).await;
    assert_eq!(client.get(app.url("/")).send().await.unwrap().status(), 200);
    // Signed in two hours ago, active a moment ago.
    age_sessions(&app, "login_at", 2 * 3600).await;
    let res = client.get(app.url("/")).send().await.unwrap();
    assert_eq!(res.status(), 303, "the absolute timeout ends the session");
    // And the session is gone on the server: signing in again is needed.
    assert_eq!(client.get(app.url("/endpoints")).send().await.unwrap().status(), 303);
}

#[tokio::test]
async fn over_https_the_session_cookie_is_secure_host_only_and_not_for_scripts() {
    let app = spawn_app_with(|s| s.cookie_secure = Some(true)).await;
    app.add_user("hal", Role::Analyst).await;
    // A Secure cookie would not come back over plain HTTP: the test carries it itself.
    let cookies = |res: &reqwest::Response| {
        res.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_owned()).collect::<Vec<_>>()
    };
    let page = script_client().get(app.url("/login")).send().await.unwrap();
    let form_cookie =
        cookies(&page).into_iter().find(|c| c.starts_with("__Host-ea_login=")).expect("a __Host- form cookie");
    let csrf = attr(&doc(&page.text().await.unwrap()), "input[name=csrf_token]", "value").unwrap();
    let res = script_client()
        .post(app.url("/login"))
        .header("cookie", form_cookie.split(';').next().unwrap())
        .form(&[("username", "hal"), ("password", PASSWORD), ("csrf_token", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let session =
        cookies(&res).into_iter().find(|c| c.starts_with("__Host-ea_session=")).expect("a __Host- session cookie");
    for (cookie, same_site) in [(&session, "SameSite=Lax"), (&form_cookie, "SameSite=Strict")] {
        for flag in ["Secure", "HttpOnly", same_site, "Path=/"] {
            assert!(cookie.contains(flag), "{flag} missing: {cookie}");
        }
        assert!(!cookie.to_ascii_lowercase().contains("domain="), "host-only: {cookie}");
    }
}

#[tokio::test]
async fn sign_in_refuses_every_kind_of_open_redirect() {
    let app = spawn_app().await;
    app.add_user("carol", Role::Analyst).await;
    for next in [
        "https://evil.example/",
        "//evil.example/x",
        "/\\evil.example",
        "/\t/evil.example",
        "/\n/evil.example",
        "/\r\n/evil.example",
        "\\\\evil.example",
        "https:evil.example",
        "javascript:alert(1)",
        " //evil.example",
        "/x\\..\\\\evil.example",
    ] {
        // The login page does not carry it into its form either.
        let page = browser().get(app.url(&format!("/login?next={}", urlencode(next)))).send().await.unwrap();
        let form_next = attr(&doc(&page.text().await.unwrap()), "input[name=next]", "value").unwrap_or_default();
        assert_eq!(form_next, "/", "{next:?} in the form");
        let client = browser();
        let csrf = app.csrf(&client, "/login").await;
        let res = client
            .post(app.url("/login"))
            .form(&[("username", "carol"), ("password", PASSWORD), ("csrf_token", &csrf), ("next", next)])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 303);
        assert_eq!(res.headers()["location"], "/", "{next:?}");
    }
    // A path on this site is kept.
    let client = browser();
    let csrf = app.csrf(&client, "/login").await;
    let res = client
        .post(app.url("/login"))
        .form(&[("username", "carol"), ("password", PASSWORD), ("csrf_token", &csrf), ("next", "/endpoints?q=10.0")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["location"], "/endpoints?q=10.0");
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn guessing_many_user_names_from_one_address_is_throttled_and_forwarded_for_is_not_believed() {
    let app = spawn_app_with(|s| s.login_max_failures = 2).await;
    app.add_user("victim", Role::Admin).await;
    let client = browser();
    // Two failures for one name lock that name at this address, whatever X-Forwarded-For says.
    for _ in 0..2 {
        assert_eq!(app.login(&client, "victim", "wrong password, twice").await.status(), 401);
    }
    let csrf = app.csrf(&client, "/login").await;
    let res = client
        .post(app.url("/login"))
        .header("x-forwarded-for", "203.0.113.9")
        .header("x-real-ip", "203.0.113.9")
        .form(&[("username", "victim"), ("password", PASSWORD), ("csrf_token", &csrf), ("next", "/")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429, "a forged client address does not escape the lock-out");
    // Spraying: failures for any names from one address, four times the limit in all (two
    // already for the victim), lock the address.
    for i in 0..6 {
        let res = app.login(&client, &format!("guess{i}"), "Summer2026!").await;
        assert_eq!(res.status(), 401, "guess {i}");
    }
    app.add_user("innocent", Role::Analyst).await;
    let res = app.login(&client, "innocent", PASSWORD).await;
    assert_eq!(res.status(), 429, "the address is locked out");
}
