//! Faults from Defender at the level of a whole sync, one fault per row of [`rows`], each on an
//! app of its own that already finished a good sync. For every row: the sync ends succeeded, or
//! failed with a plain-words reason shown on the integration page and in
//! `GET /api/v1/integrations/defender/status`; the data of the last good sync is still there,
//! unchanged (row counts and a checksum of every row); the "foreign host" a bad `nextLink`
//! points at (a listener of this test) is never contacted; retries are bounded (requests are
//! counted); and the next sync, with the fault gone, succeeds.

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use defender_sim::{ClientSpec, FaultEffect, FaultRule, Faults, RunningSimulator, SimConfig};
use diesel::prelude::*;
use endpoint_analytics::auth::Role;
use endpoint_analytics::defender::ClientOptions;
use serde_json::Value;

use crate::consistency::snapshot;
use crate::helpers::*;

/// How the faulted sync must end.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    Succeeded,
    /// Failed, and the reason contains this (plain words, not a status dump).
    Failed(&'static str),
}

struct Row {
    name: &'static str,
    faults: Vec<FaultRule>,
    /// Tokens issued from now on live this long.
    token_lifetime_secs: Option<u64>,
    /// Something done to the simulator besides the fault rules (secret, roles, tokens).
    before: fn(&RunningSimulator),
    outcome: Outcome,
    /// At most this many requests (token and API) for the whole faulted sync.
    max_calls: u64,
    /// Machines in the tenant: paging faults need listings of several pages.
    machines: usize,
}

fn rule(api: &str, nth: Option<u64>, times: Option<u64>, effect: FaultEffect) -> FaultRule {
    FaultRule { api: Some(api.into()), nth, fraction: None, times, effect }
}

fn nothing(_: &RunningSimulator) {}

/// A tenant whose machine × vulnerability listing spans several pages of 10,000.
const PAGED: usize = 1_200;

/// The client as the tests run it: the same retry policy with short timeouts and backoff.
fn client_options() -> ClientOptions {
    ClientOptions {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(2),
        max_retries: 3,
        backoff_base: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        max_retry_after: Duration::from_secs(5),
        ..Default::default()
    }
}

/// A sync makes about 5 requests; with 3 retries per request a bounded sync stays under this.
const BOUND: u64 = 5 * 4 + 4;

fn rows() -> Vec<Row> {
    use FaultEffect::*;
    let row = |name, faults, outcome, max_calls| Row {
        name,
        faults,
        token_lifetime_secs: None,
        before: nothing,
        outcome,
        max_calls,
        machines: 60,
    };
    vec![
        row(
            "429 with Retry-After",
            vec![rule("ListMachines", None, Some(2), Throttle { retry_after: Some(1) })],
            Outcome::Succeeded,
            BOUND,
        ),
        row(
            "429 without Retry-After",
            vec![rule("ListAlerts", None, Some(2), Throttle { retry_after: None })],
            Outcome::Succeeded,
            BOUND,
        ),
        row(
            "429 for good",
            vec![rule("ListMachines", None, None, Throttle { retry_after: None })],
            Outcome::Failed("throttling"),
            BOUND,
        ),
        row(
            "a burst of 500s",
            vec![rule("ListMachines", None, Some(2), Status { status: 500 })],
            Outcome::Succeeded,
            BOUND,
        ),
        row(
            "a burst of 503s",
            vec![rule("ListVulnerabilities", None, Some(3), Status { status: 503 })],
            Outcome::Succeeded,
            BOUND,
        ),
        row(
            "a permanent 500",
            vec![rule("ListAlerts", None, None, Status { status: 500 })],
            Outcome::Failed("internal problem"),
            BOUND,
        ),
        row(
            "a response that never comes",
            vec![rule("ListMachines", None, None, Delay { ms: 60_000 })],
            Outcome::Failed("did not answer in time"),
            BOUND,
        ),
        row(
            "a body that stalls half-way",
            vec![rule("ListAlerts", None, None, Stall { ms: Some(60_000) })],
            Outcome::Failed("in time"),
            BOUND,
        ),
        row(
            "a stall once, then answers",
            vec![rule("ListMachines", Some(1), None, Stall { ms: Some(60_000) })],
            Outcome::Succeeded,
            BOUND,
        ),
        row(
            "truncated JSON",
            vec![rule("ListMachines", None, None, Truncate)],
            Outcome::Failed("could not be understood"),
            BOUND,
        ),
        row(
            "malformed JSON",
            vec![rule("ListVulnerabilities", None, None, Corrupt)],
            Outcome::Failed("could not be understood"),
            BOUND,
        ),
        row(
            "wrong types",
            vec![rule("ListMachines", None, None, WrongTypes)],
            Outcome::Failed("could not be understood"),
            BOUND,
        ),
        Row {
            machines: PAGED,
            ..row(
                "duplicate ids across pages",
                vec![rule("MachinesVulnerabilities", None, None, DuplicateIds)],
                Outcome::Succeeded,
                BOUND,
            )
        },
        Row {
            machines: PAGED,
            ..row(
                "a nextLink to a foreign host",
                // The sync pages with $top/$skip, which the service answers without links; the
                // fault adds one anyway, pointing at this test's listener.
                vec![rule("MachinesVulnerabilities", Some(1), None, ForeignNextLink)],
                Outcome::Failed("another host"),
                BOUND,
            )
        },
        Row {
            machines: PAGED,
            token_lifetime_secs: Some(1),
            ..row(
                "token expiry in the middle of paging",
                // Each page takes longer than a token lives.
                vec![rule("MachinesVulnerabilities", None, None, Delay { ms: 1_200 })],
                Outcome::Succeeded,
                BOUND,
            )
        },
        Row {
            before: |sim| {
                sim.expire_client_secret(&sim.client_id);
                sim.invalidate_tokens();
            },
            ..row("an expired client secret", vec![], Outcome::Failed("client secret has expired"), BOUND)
        },
        Row {
            before: |sim| {
                // Neither Machine.Read.All nor Machine.ReadWrite.All.
                let without: Vec<&str> =
                    defender_sim::ALL_ROLES.iter().copied().filter(|r| !r.starts_with("Machine.Read")).collect();
                sim.set_client_roles(&sim.client_id, &without);
                sim.invalidate_tokens();
            },
            ..row("a permission removed between two syncs", vec![], Outcome::Failed("Machine.Read"), BOUND)
        },
    ]
}

/// A listener that counts connections: the "foreign host".
struct Foreign {
    base: String,
    connections: Arc<AtomicUsize>,
}

fn foreign_host() -> Foreign {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            counted.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    Foreign { base, connections }
}

async fn sync_now(app: &TestApp, token: &str) -> Value {
    let res = reqwest::Client::new()
        .post(app.url("/api/v1/integrations/defender/sync"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202, "{}", res.text().await.unwrap());
    for _ in 0..1200 {
        let status = app.api_get(token, "/api/v1/integrations/defender/status").await;
        if status["running"].is_null() {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the sync did not end within two minutes");
}

async fn check(row: Row) {
    let name = row.name;
    let app = spawn_app_with_client(|_| {}, client_options()).await;
    let sim = defender_sim::start(SimConfig { machines: row.machines, ..SimConfig::default() }).await.unwrap();
    let foreign = foreign_host();
    app.enable_defender(&sim).await;
    let first = app.wait_for_sync(Duration::from_secs(60)).await;
    assert_eq!(first.status, "succeeded", "{name}: the first sync: {}", first.error);
    let token = app.token(Role::Operator).await;
    // The faulted sync fetches everything, as the first sync of a tenant does: several rows fault
    // the paging of the bulk machine×vulnerability listing, which a re-sync would skip in favour
    // of the vulnerability delta while the stored snapshot is recent.
    app.db
        .run(|c| {
            use endpoint_analytics::db::schema::app_settings;
            diesel::delete(app_settings::table.find(endpoint_analytics::defender::sync::SNAPSHOT_KEY)).execute(c)?;
            Ok(())
        })
        .await
        .unwrap();
    let good = snapshot(&app.db).await;
    assert!(good.count("defender_machines") >= row.machines, "{name}: {good:?}");
    if row.machines == PAGED {
        let clean = sim.counters().api("MachinesVulnerabilities").calls;
        assert!(clean >= 2, "{name}: the listing must span several pages to test paging ({clean} calls)");
    }

    sim.reset();
    sim.set_faults(Faults {
        rules: row.faults.clone(),
        token_lifetime_secs: row.token_lifetime_secs,
        foreign_host: Some(foreign.base.clone()),
        ..Default::default()
    });
    (row.before)(&sim);
    let started = std::time::Instant::now();
    let status = sync_now(&app, &token).await;
    let run = &status["last_run"];
    let calls = sim.counters().total_calls;

    match row.outcome {
        Outcome::Succeeded => assert_eq!(run["status"], "succeeded", "{name}: {run}"),
        Outcome::Failed(reason) => {
            assert_eq!(run["status"], "failed", "{name}: {run}");
            let error = run["error"].as_str().unwrap();
            assert!(error.contains(reason), "{name}: the reason {error:?} does not say {reason:?}");
            assert!(error.ends_with('.') && !error.contains('{'), "{name}: not plain words: {error:?}");
            // The same reason on the integration page.
            let operator = app.login_as("otto", Role::Operator).await;
            let page = operator.get(app.url("/config/integrations/defender")).send().await.unwrap();
            assert_eq!(page.status(), 200);
            let page = doc(&page.text().await.unwrap());
            assert_eq!(select_all(&page, "#sync-result[data-status=failed]").len(), 1, "{name}");
            assert_eq!(select_all(&page, "#sync-error"), vec![error.to_owned()], "{name}");
            assert_eq!(status["last_success"]["id"], first.id, "{name}: the last good sync is still the first");
        }
    }
    assert_eq!(snapshot(&app.db).await, good, "{name}: the last good data changed");
    assert_eq!(foreign.connections.load(Ordering::SeqCst), 0, "{name}: the foreign host was contacted");
    assert!(calls <= row.max_calls, "{name}: {calls} requests, retries are not bounded: {:?}", sim.counters());
    assert!(started.elapsed() < Duration::from_secs(60), "{name}: took {:?}", started.elapsed());

    // The fault goes away: the next sync recovers.
    sim.set_faults(Faults::default());
    sim.add_client(ClientSpec::new(&sim.client_id, &sim.client_secret));
    let status = sync_now(&app, &token).await;
    assert_eq!(status["last_run"]["status"], "succeeded", "{name}: the next sync: {}", status["last_run"]);
    assert_eq!(snapshot(&app.db).await, good, "{name}: the recovered sync changed data");
}

macro_rules! fault_tests {
    ($($test:ident => $name:literal;)*) => {
        $(
            #[tokio::test]
            async fn $test() {
                let row = rows().into_iter().find(|r| r.name == $name).expect("a row of that name");
                check(row).await;
            }
        )*

        #[test]
        fn every_row_has_a_test() {
            let tested = [$($name),*];
            for r in rows() {
                assert!(tested.contains(&r.name), "no test runs the row {:?}", r.name);
            }
        }
    };
}

fault_tests! {
    throttled_with_retry_after => "429 with Retry-After";
    throttled_without_retry_after => "429 without Retry-After";
    throttled_for_good => "429 for good";
    a_burst_of_500s => "a burst of 500s";
    a_burst_of_503s => "a burst of 503s";
    a_permanent_500 => "a permanent 500";
    a_response_that_never_comes => "a response that never comes";
    a_body_that_stalls => "a body that stalls half-way";
    a_stall_once => "a stall once, then answers";
    truncated_json => "truncated JSON";
    malformed_json => "malformed JSON";
    wrong_types => "wrong types";
    duplicate_ids_across_pages => "duplicate ids across pages";
    a_foreign_next_link => "a nextLink to a foreign host";
    token_expiry_mid_paging => "token expiry in the middle of paging";
    an_expired_client_secret => "an expired client secret";
    a_permission_removed => "a permission removed between two syncs";
}

/// Runs statements on the app's database, each as it is (test set-up: triggers, renames).
async fn execute(app: &TestApp, statements: &[&str]) {
    let statements: Vec<String> = statements.iter().map(|s| s.to_string()).collect();
    app.db
        .run(move |c| {
            for s in &statements {
                diesel::sql_query(s.as_str()).execute(c)?;
            }
            Ok(())
        })
        .await
        .unwrap();
}

/// What a sync does besides importing (the event of its failure, the coverage gaps, the day's
/// risk history) never undoes the import or the record of how the run ended: a database that
/// refuses those writes still leaves a run marked failed or succeeded, and a succeeded run's
/// vulnerability snapshot saved, so the next sync asks Defender only for the changes.
#[tokio::test]
async fn a_sync_is_recorded_and_its_cursor_saved_even_when_its_side_writes_fail() {
    use endpoint_analytics::db::schema::app_settings;
    let app = spawn_app().await;
    let sim = defender_sim::start(SimConfig { machines: 20, ..SimConfig::default() }).await.unwrap();
    app.enable_defender(&sim).await;
    let first = app.wait_for_sync(Duration::from_secs(60)).await;
    assert_eq!(first.status, "succeeded", "{}", first.error);
    let token = app.token(Role::Operator).await;
    let postgres = backend() == "postgres";

    // The database refuses the "sync failed" event; the run must still end, as failed.
    if postgres {
        execute(
            &app,
            &[
                "CREATE FUNCTION refuse_event() RETURNS trigger AS $$ BEGIN \
                 RAISE EXCEPTION 'events refused by the test'; END $$ LANGUAGE plpgsql",
                "CREATE TRIGGER refuse_sync_failed BEFORE INSERT ON events FOR EACH ROW \
                 WHEN (NEW.kind = 'defender.sync_failed') EXECUTE FUNCTION refuse_event()",
            ],
        )
        .await;
    } else {
        execute(
            &app,
            &["CREATE TRIGGER refuse_sync_failed BEFORE INSERT ON events WHEN NEW.kind = 'defender.sync_failed' \
               BEGIN SELECT RAISE(ABORT, 'events refused by the test'); END"],
        )
        .await;
    }
    sim.set_faults(Faults {
        rules: vec![FaultRule {
            api: Some("ListMachines".into()),
            nth: None,
            fraction: None,
            times: None,
            effect: FaultEffect::Status { status: 500 },
        }],
        ..Default::default()
    });
    let status = sync_now(&app, &token).await;
    assert_eq!(status["last_run"]["status"], "failed", "the run's end is recorded: {}", status["last_run"]);
    assert_ne!(status["last_run"]["id"], first.id);
    sim.set_faults(Faults::default());

    // The coverage gaps and the risk history cannot be written; the sync still succeeds and
    // saves its vulnerability snapshot (the cursor of the next delta).
    let cursor = |app: &TestApp| {
        let db = app.db.clone();
        async move {
            db.run(|c| {
                Ok(app_settings::table
                    .find(endpoint_analytics::defender::sync::SNAPSHOT_KEY)
                    .select(app_settings::value)
                    .first::<String>(c)
                    .optional()?)
            })
            .await
            .unwrap()
        }
    };
    execute(&app, &["DELETE FROM app_settings WHERE key = 'defender.vulnerability_snapshot'"]).await;
    execute(
        &app,
        &[
            "ALTER TABLE coverage_gaps RENAME TO coverage_gaps_away",
            "ALTER TABLE risk_history RENAME TO risk_history_away",
        ],
    )
    .await;
    let status = sync_now(&app, &token).await;
    assert_eq!(status["last_run"]["status"], "succeeded", "{}", status["last_run"]);
    assert!(cursor(&app).await.is_some(), "the vulnerability snapshot was not saved");
    execute(
        &app,
        &[
            "ALTER TABLE coverage_gaps_away RENAME TO coverage_gaps",
            "ALTER TABLE risk_history_away RENAME TO risk_history",
        ],
    )
    .await;
}
