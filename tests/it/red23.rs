//! Red-team tests for issue 23's data version on PostgreSQL (commits 49f1cd6, a4cb762): the
//! listener that moves the epoch on `ea_data_changed` notifications.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use endpoint_analytics::auth::Role;
use serde_json::json;

use crate::helpers::*;

/// A TCP relay in front of PostgreSQL that can make the listener's connection go silent, as a
/// dropped flow does (a NAT or firewall that lost its state, a load balancer whose backend
/// vanished, a partition): bytes on it are no longer carried either way, and neither end is
/// told. Every other connection (the pool's) keeps working.
struct SilencingRelay {
    port: u16,
    silence: Arc<AtomicBool>,
    listeners_seen: Arc<AtomicUsize>,
    /// Bytes the listener sent after it went silent (its liveness query), swallowed.
    swallowed_upward: Arc<AtomicUsize>,
}

fn silencing_relay(upstream: String) -> SilencingRelay {
    let socket = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = socket.local_addr().unwrap().port();
    let silence = Arc::new(AtomicBool::new(false));
    let listeners_seen = Arc::new(AtomicUsize::new(0));
    let swallowed_upward = Arc::new(AtomicUsize::new(0));
    let (s, seen, swallowed) = (silence.clone(), listeners_seen.clone(), swallowed_upward.clone());
    std::thread::spawn(move || {
        for client in socket.incoming() {
            let Ok(client) = client else { continue };
            let Ok(server) = TcpStream::connect(&upstream) else { continue };
            let is_listener = Arc::new(AtomicBool::new(false));
            let pairs = [(client.try_clone().unwrap(), server.try_clone().unwrap(), true), (server, client, false)];
            for (mut from, mut to, upward) in pairs {
                let (silence, is_listener, seen, swallowed) =
                    (s.clone(), is_listener.clone(), seen.clone(), swallowed.clone());
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match from.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if upward
                            && buf[..n].windows(22).any(|w| w == b"LISTEN ea_data_changed")
                            && !is_listener.swap(true, SeqCst)
                        {
                            seen.fetch_add(1, SeqCst);
                        }
                        if silence.load(SeqCst) && is_listener.load(SeqCst) {
                            if upward {
                                swallowed.fetch_add(n, SeqCst);
                            }
                            continue; // lost on the way
                        }
                        if to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = to.shutdown(std::net::Shutdown::Both);
                });
            }
        }
    });
    SilencingRelay { port, silence, listeners_seen, swallowed_upward }
}

/// An app whose database connections all go through a [`SilencingRelay`], and the database's
/// own URL.
async fn app_behind_a_relay() -> (TestApp, SilencingRelay, String) {
    let mut real_url = String::new();
    let mut relay = None;
    let app = spawn_app_with(|s| {
        real_url = s.database_url.clone();
        let mut url = url::Url::parse(&s.database_url).unwrap();
        let r = silencing_relay(format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(5432)));
        url.set_port(Some(r.port)).unwrap();
        s.database_url = url.to_string();
        relay = Some(r);
    })
    .await;
    (app, relay.expect("the relay is set up with the app"), real_url)
}

/// Red-team review (HIGH): the listener's connection goes silent (no FIN, no RST). Its liveness
/// check was a blocking `SELECT 1` with no timeout, so the listener thread waited on it forever
/// while `listening` stayed true: requests kept answering from the epoch alone, and no other
/// instance's commit was ever seen again — a disabled user kept her session, a renamed endpoint
/// its old name. Now the listener has a connection of its own and is trusted only for a second
/// after its last answered query; then requests read the snapshot on the observer's connection.
#[tokio::test]
async fn a_silent_listener_connection_hands_over_to_the_snapshot_within_a_second_or_so() {
    another_instance_disables_a_user_behind_the_relay(true).await;
}

/// The control: the same steps through the same relay with the listener's flow left alone pass.
#[tokio::test]
async fn control_the_same_through_a_relay_that_stays_open() {
    another_instance_disables_a_user_behind_the_relay(false).await;
}

async fn another_instance_disables_a_user_behind_the_relay(silent: bool) {
    if backend() != "postgres" {
        eprintln!("skipped: PostgreSQL only (EA_TEST_BACKEND=postgres)");
        return;
    }
    let (app, relay, real_url) = app_behind_a_relay().await;

    let token = app.token(Role::Admin).await;
    let body = json!([{"mac": "AA-BB-CC-00-23-01", "ip": "10.23.0.1", "hostname": "before-silence"}]);
    assert_eq!(app.ingest(&token, &body).await.status(), 200);
    let viewer = app.login_as("vera", Role::Analyst).await;
    let list = || async {
        let res = viewer.get(app.url("/endpoints?search=10.23.0.1")).send().await.unwrap();
        (res.status().as_u16(), res.text().await.unwrap())
    };
    for _ in 0..2 {
        let (status, html) = list().await;
        assert!(status == 200 && html.contains("before-silence"));
    }
    assert_eq!(relay.listeners_seen.load(SeqCst), 1, "the relay found the listener's connection");

    // The listener's flow goes silent; the pool's connections still work. The page is viewed
    // until this instance's data version holds still (its own writes, such as the session's,
    // are behind it), so that what the page shows next is what this instance kept.
    relay.silence.store(silent, SeqCst);
    let mut settled = None;
    for _ in 0..50 {
        let before = app.db.data_version().await;
        let (status, html) = list().await;
        assert!(status == 200 && html.contains("before-silence"));
        tokio::time::sleep(Duration::from_millis(50)).await;
        if before.is_some() && app.db.data_version().await == before {
            settled = before;
            break;
        }
    }
    assert!(settled.is_some(), "the data version settles");

    // Another instance (a connection of its own, straight to the server) disables vera and
    // renames the endpoint.
    let url = real_url.clone();
    tokio::task::spawn_blocking(move || {
        use diesel::{Connection, RunQueryDsl};
        let mut c = diesel::PgConnection::establish(&url).unwrap();
        diesel::sql_query("UPDATE users SET disabled = true WHERE username = 'vera'").execute(&mut c).unwrap();
        diesel::sql_query("UPDATE endpoints SET hostname = 'after-silence' WHERE hostname = 'before-silence'")
            .execute(&mut c)
            .unwrap();
    })
    .await
    .unwrap();
    let committed = Instant::now();

    // Trust ends a second after the listener's last answered query (made every 250 ms).
    loop {
        let (status, html) = list().await;
        if status == 303 {
            break;
        }
        assert!(
            committed.elapsed() <= Duration::from_secs(2),
            "{:?} after another instance disabled vera and renamed the endpoint, this instance still serves \
             her the page (status {status}, shows before-silence: {}, shows after-silence: {}; the listener's \
             swallowed bytes since it went silent: {})",
            committed.elapsed(),
            html.contains("before-silence"),
            html.contains("after-silence"),
            relay.swallowed_upward.load(SeqCst),
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A dropped `Db` takes its listener thread and connection with it (tests open many).
#[tokio::test]
async fn a_dropped_db_closes_its_listener() {
    if backend() != "postgres" {
        eprintln!("skipped: PostgreSQL only (EA_TEST_BACKEND=postgres)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let database = TestDatabase::new(dir.path());
    let url = database.url.clone();
    let listeners = move || {
        let url = url.clone();
        tokio::task::spawn_blocking(move || {
            use diesel::{Connection, RunQueryDsl};
            #[derive(diesel::QueryableByName)]
            struct N {
                #[diesel(sql_type = diesel::sql_types::BigInt)]
                n: i64,
            }
            let mut c = diesel::PgConnection::establish(&url).unwrap();
            diesel::sql_query(
                "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() \
                 AND application_name = 'ea-data-listener'",
            )
            .get_result::<N>(&mut c)
            .unwrap()
            .n
        })
    };
    let dbs: Vec<_> = (0..5).map(|_| endpoint_analytics::db::Db::connect(&database.url, 1).unwrap()).collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(listeners().await.unwrap(), 5);
    drop(dbs);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(listeners().await.unwrap(), 0, "listeners left behind by dropped handles");
}

/// This process's own writes move the data version as they return, whatever the listener
/// hears: checked with the listener's flow silenced, so that only the commit counter can move it.
#[tokio::test]
async fn own_writes_move_the_version_without_the_listener() {
    if backend() != "postgres" {
        eprintln!("skipped: PostgreSQL only (EA_TEST_BACKEND=postgres)");
        return;
    }
    let (app, relay, _) = app_behind_a_relay().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    relay.silence.store(true, SeqCst);
    type Write = fn(&mut endpoint_analytics::db::AnyConnection) -> anyhow::Result<()>;
    let writes: Vec<(&str, Write)> = vec![
        ("sql_query with a leading comment", |c| {
            diesel::RunQueryDsl::execute(diesel::sql_query("/* x */ UPDATE users SET disabled = false"), c)?;
            Ok(())
        }),
        ("lower-case statement after blank lines", |c| {
            diesel::RunQueryDsl::execute(diesel::sql_query("\n\n  update users set disabled = false"), c)?;
            Ok(())
        }),
        ("transaction", |c| {
            diesel::Connection::transaction::<_, diesel::result::Error, _>(c, |c| {
                diesel::RunQueryDsl::execute(diesel::sql_query("UPDATE users SET disabled = false"), c)?;
                Ok(())
            })?;
            Ok(())
        }),
        ("savepoint rolled back, outer committed", |c| {
            diesel::Connection::transaction::<_, diesel::result::Error, _>(c, |c| {
                diesel::RunQueryDsl::execute(diesel::sql_query("UPDATE users SET disabled = false"), c)?;
                let _ = diesel::Connection::transaction::<(), _, _>(c, |c| {
                    diesel::RunQueryDsl::execute(diesel::sql_query("UPDATE users SET disabled = false"), c)?;
                    Err(diesel::result::Error::RollbackTransaction)
                });
                Ok(())
            })?;
            Ok(())
        }),
        ("transaction after a failed one on the same connection", |c| {
            let _ = diesel::Connection::transaction::<(), diesel::result::Error, _>(c, |c| {
                diesel::RunQueryDsl::execute(diesel::sql_query("SELECT 1/0"), c)?;
                Ok(())
            });
            diesel::Connection::transaction::<_, diesel::result::Error, _>(c, |c| {
                diesel::RunQueryDsl::execute(diesel::sql_query("UPDATE users SET disabled = false"), c)?;
                Ok(())
            })?;
            Ok(())
        }),
    ];
    for (what, write) in writes {
        let before = app.db.data_version().await;
        app.db.run(write).await.unwrap();
        let after = app.db.data_version().await;
        assert!(before.is_some() && after != before, "{what}: version {before:?} -> {after:?}");
    }
}

/// Rows written many at a time (`db::batch`) are stored exactly as given. Since issue 23's
/// twelfth round PostgreSQL gets them as one array per column, SQLite as a list of values; the
/// change's fresh-context review listed what an array could get wrong: text that array syntax
/// would read as something else, a missing value beside an empty one, a 300 KB value, rows
/// across two statements, a NUL byte (refused whole by PostgreSQL), pairs deleted by key.
#[tokio::test]
async fn rows_written_many_at_a_time_are_stored_exactly_as_given() {
    use endpoint_analytics::db::DatabaseTarget;
    use endpoint_analytics::db::models::endpoints::{self, Change, Endpoint};
    use endpoint_analytics::db::models::profiles;
    let app = spawn_app().await;
    let huge = "x".repeat(300_000);
    let texts: Vec<String> =
        ["", "NULL", "{a,\"b\"}", "back\\slash", "é𝄞", "'); DROP TABLE endpoints; --", &huge].map(str::to_owned).into();
    let on_postgres = matches!(app.db.target(), DatabaseTarget::Postgres { .. });
    let texts_ = texts.clone();
    app.db
        .run(move |c| {
            let texts = texts_;
            // 1,305 endpoints: 23 columns make 1,304 rows per statement, so two statements.
            let ids = endpoints::reserve_ids(c, 1_305)?;
            let made: Vec<Endpoint> = ids
                .iter()
                .enumerate()
                .map(|(i, &id)| Endpoint {
                    id,
                    mac: match i {
                        0 => Some(String::new()),
                        1 => Some("aa:bb:cc:dd:ee:01".into()),
                        _ => None,
                    },
                    mac_vendor: String::new(),
                    ip: format!("10.1.{}.{}", i / 256, i % 256),
                    hostname: texts[i % (texts.len() - 1)].clone(),
                    fqdn: String::new(),
                    os_name: "Windows".into(),
                    os_version: "11".into(),
                    os_build: String::new(),
                    dhcp_vendor_class: String::new(),
                    dhcp_params: String::new(),
                    user_agent: texts[i % texts.len()].clone(),
                    profile: String::new(),
                    match_score: (i % 5) as i16,
                    risk_level: (i % 4) as i16,
                    sources: "test".into(),
                    custom_data: "{}".into(),
                    first_seen: i as i64,
                    last_seen: i as i64 + 1,
                    created_at: 1,
                    updated_at: 2,
                    other_profiles: String::new(),
                    profile_reason: String::new(),
                })
                .collect();
            assert_eq!(endpoints::insert_many(c, &made.iter().collect::<Vec<_>>())?, 1_305);
            let mut stored = endpoints::find_many(c, &ids)?;
            stored.sort_by_key(|e| e.id);
            assert_eq!(stored.len(), 1_305);
            for (s, m) in stored.iter().zip(&made) {
                assert_eq!(
                    (&s.mac, &s.hostname, &s.user_agent, s.match_score, s.risk_level, s.first_seen),
                    (&m.mac, &m.hostname, &m.user_agent, m.match_score, m.risk_level, m.first_seen),
                    "endpoint {}",
                    m.id
                );
            }

            let changes: Vec<Change> = texts
                .iter()
                .zip(texts.iter().rev())
                .map(|(old, new)| Change {
                    endpoint_id: ids[0],
                    field: "hostname",
                    old: old.clone(),
                    new: new.clone(),
                    source: "test",
                })
                .collect();
            assert_eq!(endpoints::record_history_many(c, &changes)?, texts.len());
            let mut history = endpoints::history(c, ids[0], 50)?;
            history.reverse();
            let read: Vec<(&str, &str)> =
                history.iter().map(|h| (h.old_value.as_str(), h.new_value.as_str())).collect();
            let given: Vec<(&str, &str)> = changes.iter().map(|c| (c.old.as_str(), c.new.as_str())).collect();
            assert_eq!(read, given);

            let profile = profiles::all(c)?.first().expect("the standard profiles").id;
            assert_eq!(profiles::assign_many(c, &[(ids[0], profile, 3), (ids[1], profile, 4)])?, 2);
            let pairs = [(ids[0], profile), (ids[1], profile), (ids[2], profile)];
            assert_eq!(profiles::unassign_many(c, &pairs)?, 2, "the pair that was not there deletes nothing");
            assert!(profiles::owner_assignments(c, &ids[..3], "standard")?.is_empty());
            let nul = [Change {
                endpoint_id: ids[1],
                field: "hostname",
                old: "a\0b".into(),
                new: "c".into(),
                source: "test",
            }];
            let written = endpoints::record_history_many(c, &nul);
            let history = endpoints::history(c, ids[1], 50)?;
            if on_postgres {
                assert!(written.is_err(), "PostgreSQL refuses a NUL byte in text");
                assert!(history.is_empty(), "and writes nothing of the statement");
            } else {
                assert_eq!(history.iter().map(|h| h.old_value.as_str()).collect::<Vec<_>>(), ["a\0b"]);
            }

            Ok(())
        })
        .await
        .unwrap();
}
