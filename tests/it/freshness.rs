//! Pages reuse what they read while the database is unchanged (`web::cache::UntilChanged`,
//! `Db::data_version`): what they show must still be what the database holds, whoever changed
//! it. Here the changes come through a connection pool of their own, as from another process
//! (the command line, another instance), right after the pages were viewed. Another process's
//! commit reaches this one's listener in milliseconds (PostgreSQL's notifications, SQLite's
//! watcher of `PRAGMA data_version`; issue 23's Q3: within a second), so the page is asked again
//! until then.

use diesel::prelude::*;
use endpoint_analytics::auth::Role;
use endpoint_analytics::db::schema::{endpoints, users};
use endpoint_analytics::db::{DatabaseTarget, Db};
use serde_json::json;

use crate::helpers::*;

/// A second handle on the app's database, with its own connections.
fn another_process(app: &TestApp) -> Db {
    let url = match app.db.target() {
        DatabaseTarget::Sqlite { path } => format!("sqlite://{}", path.display()),
        DatabaseTarget::Postgres { url } => url.clone(),
    };
    Db::connect(&url, 1).unwrap()
}

#[tokio::test]
async fn pages_show_what_another_process_just_committed() {
    let app = spawn_app().await;
    let token = app.token(Role::Operator).await;
    let res =
        app.ingest(&token, &json!([{"mac": "AA-BB-CC-00-00-01", "ip": "10.0.0.1", "hostname": "before-1"}])).await;
    assert_eq!(res.status(), 200);
    let id: i64 = app.db.run(|c| Ok(endpoints::table.select(endpoints::id).first(c)?)).await.unwrap();
    let analyst = app.login_as("ann", Role::Analyst).await;
    let page = |path: String| {
        let analyst = analyst.clone();
        let url = app.url(&path);
        async move {
            let res = analyst.get(url).send().await.unwrap();
            (res.status().as_u16(), res.text().await.unwrap())
        }
    };
    let (summary, list) = (format!("/endpoints/{id}"), "/endpoints?search=10.0.0.1".to_owned());
    // Viewed twice: the second view is the kept one.
    for _ in 0..2 {
        assert!(page(summary.clone()).await.1.contains("before-1"));
        assert!(page(list.clone()).await.1.contains("before-1"));
    }

    let other = another_process(&app);
    other
        .run(move |c| {
            diesel::update(endpoints::table.find(id)).set(endpoints::hostname.eq("after-2")).execute(c)?;
            Ok(())
        })
        .await
        .unwrap();
    let renamed =
        |(status, html): (u16, String)| status == 200 && html.contains("after-2") && !html.contains("before-1");
    shown_soon(|| page(summary.clone()), renamed, "the Summary shows the committed name").await;
    shown_soon(|| page(list.clone()), renamed, "the list shows the committed name").await;

    // A user disabled elsewhere is signed out at the next request, however recently seen.
    other
        .run(|c| {
            diesel::update(users::table.filter(users::username.eq("ann"))).set(users::disabled.eq(true)).execute(c)?;
            Ok(())
        })
        .await
        .unwrap();
    shown_soon(|| page(summary.clone()), |(status, _)| status == 303, "back to the sign-in page").await;
}

/// Asks for a page until `shown` holds, within Q3's second.
async fn shown_soon<F, T>(mut ask: impl FnMut() -> F, shown: impl Fn(T) -> bool, what: &str)
where
    F: std::future::Future<Output = T>,
{
    let within = std::time::Duration::from_secs(1);
    let committed = std::time::Instant::now();
    while !shown(ask().await) {
        assert!(committed.elapsed() <= within, "{what}: not after {:?}", committed.elapsed());
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}
