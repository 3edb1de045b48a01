//! Every page at a laptop's size (1366×768) and at a phone's width (390 px), in a real browser:
//! nothing runs off the side of the screen, tables scroll inside their card, buttons stay on
//! screen. The same tour, run against `endpoint-analytics demo` by `scripts/screenshots`, saves
//! the pictures in `docs/screenshots/` that the README links.
//!
//! Also here, the journeys through the review queue's pages and the Endpoints list's CSV export.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use endpoint_analytics::auth::Role;
use endpoint_analytics::db::models::defender_machines::{self as machines, DefenderMachine};
use fantoccini::Client;
use serde_json::{Value, json};

use crate::browser::*;
use crate::helpers::{PASSWORD, TestApp, spawn_app};

/// The two sizes every page is checked at: (name, width, height).
const SIZES: [(&str, u32, u32); 2] = [("laptop", 1366, 768), ("phone", 390, 844)];

/// One stop of the tour: a name (the screenshot's file name), the address, and whether the
/// README's pictures include it.
struct Stop {
    name: &'static str,
    path: String,
    pictured: bool,
}

/// The signed-in pages, as an administrator sees them (every menu entry), with `endpoint` as
/// the endpoint whose tabs are shown.
fn signed_in_pages(endpoint: &str) -> Vec<Stop> {
    let stop = |name, path: &str, pictured| Stop { name, path: path.to_owned(), pictured };
    vec![
        stop("dashboard", "/", true),
        stop("endpoints", "/endpoints", true),
        stop("coverage", "/coverage", true),
        stop("endpoint-summary", endpoint, true),
        stop("endpoint-risk", &format!("{endpoint}?tab=risk"), true),
        stop("endpoint-profile", &format!("{endpoint}?tab=profile"), false),
        stop("endpoint-actions", &format!("{endpoint}?tab=actions"), true),
        stop("integrations", "/config/integrations", true),
        stop("defender", "/config/integrations/defender", true),
        stop("profiles", "/config/profiles", false),
        stop("sso", "/config/sso", false),
        stop("users", "/users", false),
        stop("tokens", "/tokens", false),
        stop("notifications", "/notifications", false),
        stop("rules", "/rules", false),
        stop("approvals", "/approvals", false),
        stop("audit", "/audit", false),
    ]
}

/// What runs off the screen on the current page: the page wider than the viewport, a table
/// outside a scrolling box, any visible element past either edge that no scrolling box holds.
const OVERFLOWS: &str = r#"
const width = document.documentElement.clientWidth;
const scrolled = el => {
  for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
    const o = getComputedStyle(p).overflowX;
    if (o === 'auto' || o === 'scroll') return true;
  }
  return false;
};
const name = el => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '')
  + (typeof el.className === 'string' && el.className.trim() ? '.' + el.className.trim().split(/\s+/).join('.') : '');
const found = [];
if (document.documentElement.scrollWidth > width + 1)
  found.push('the page is ' + document.documentElement.scrollWidth + ' px wide');
for (const t of document.querySelectorAll('table'))
  if (!scrolled(t)) found.push(name(t) + ' is not inside a scrolling box');
for (const el of document.querySelectorAll('body *')) {
  const r = el.getBoundingClientRect();
  if (r.width === 0 || r.height === 0) continue;
  if ((r.right > width + 1 || r.left < -1) && !scrolled(el))
    found.push(name(el) + ' spans ' + Math.round(r.left) + '..' + Math.round(r.right));
}
return found.slice(0, 15);
"#;

/// Makes the viewport (not the window) `width` × `height` CSS pixels.
async fn set_viewport(c: &Client, width: u32, height: u32) {
    c.set_window_size(width, height).await.expect("the window is resized");
    let inner = js(c, "return [window.innerWidth, window.innerHeight];").await;
    let (w, h) = (inner[0].as_u64().unwrap() as u32, inner[1].as_u64().unwrap() as u32);
    if (w, h) != (width, height) {
        c.set_window_size(2 * width - w, 2 * height - h).await.expect("the window is resized");
    }
    let inner = js(c, "return window.innerWidth;").await;
    assert_eq!(inner, json!(width), "the viewport is {width} px wide");
}

/// Opens `base + stop.path` and checks that nothing overflows; saves a screenshot into `shots`
/// when given and the stop is pictured.
async fn visit(c: &Client, base: &str, stop: &Stop, size: &str, shots: Option<&Path>, problems: &mut Vec<String>) {
    c.goto(&format!("{base}{}", stop.path)).await.unwrap_or_else(|e| panic!("{}: {e}", stop.path));
    wait_for(c, "main").await;
    let found = js(c, OVERFLOWS).await;
    for f in found.as_array().unwrap() {
        problems.push(format!("{} at {size}: {}", stop.path, f.as_str().unwrap()));
    }
    if let (Some(dir), true) = (shots, stop.pictured) {
        let png = c.screenshot().await.expect("a screenshot");
        let file = dir.join(format!("{}-{size}.png", stop.name));
        std::fs::write(&file, png).unwrap_or_else(|e| panic!("cannot write {}: {e}", file.display()));
        eprintln!("saved {}", file.display());
    }
}

/// The whole tour at both sizes: the sign-in page first (signed out), then every page as
/// `user`. Panics with every overflow found.
async fn tour(c: &Client, base: &str, user: &str, password: &str, shots: Option<&Path>) {
    let mut problems = Vec::new();
    for (size, width, height) in SIZES {
        c.delete_all_cookies().await.expect("signed out");
        c.goto(&format!("{base}/login")).await.expect("the login page");
        set_viewport(c, width, height).await;
        visit(c, base, &Stop { name: "login", path: "/login".into(), pictured: true }, size, shots, &mut problems)
            .await;
        sign_in_at(c, base, user, password).await;
        // The endpoint shown is the list's first (the most at risk), which has a Defender machine
        // in a synced tenant.
        c.goto(&format!("{base}/endpoints")).await.unwrap();
        let endpoint = attr(&wait_for(c, "#endpoint-table tbody tr a[href^='/endpoints/']").await, "href")
            .await
            .expect("an endpoint link");
        for stop in signed_in_pages(&endpoint) {
            visit(c, base, &stop, size, shots, &mut problems).await;
        }
    }
    assert!(problems.is_empty(), "overflows:\n{}", problems.join("\n"));
}

#[tokio::test]
async fn every_page_fits_a_laptop_and_a_phone() {
    journey("every_page_fits", |c| async move {
        let sim = defender_sim::start(defender_sim::SimConfig { machines: 60, hostile: true, ..Default::default() })
            .await
            .expect("the simulator starts");
        let app = spawn_app().await;
        app.enable_defender(&sim).await;
        let run = app.wait_for_sync(Duration::from_secs(30)).await;
        assert_eq!(run.status, "succeeded", "{}", run.error);
        queue_for_review(&app, 60).await;
        app.add_user("alice", Role::Admin).await;
        tour(&c, &app.url(""), "alice", PASSWORD, None).await;
    })
    .await;
}

/// `n` machines that match several endpoints, waiting for a person (not linked to any).
async fn queue_for_review(app: &TestApp, n: usize) {
    let rows: Vec<DefenderMachine> = (0..n)
        .map(|i| DefenderMachine {
            machine_id: format!("{:040x}", 0xa000 + i),
            computer_dns_name: format!("shared-name-{i:03}.corp.example"),
            os_platform: "Windows11".into(),
            onboarding_status: "Onboarded".into(),
            last_ip: format!("10.9.{}.{}", i / 200, i % 200 + 1),
            match_note: "ambiguous: 2 endpoints share this name".into(),
            ..Default::default()
        })
        .collect();
    app.db.run(move |c| Ok(machines::replace_many(c, &rows)?)).await.unwrap();
}

#[tokio::test]
async fn an_operator_pages_through_the_review_queue_and_exports_the_filtered_list() {
    journey("review_queue_and_csv", |c| async move {
        let app = spawn_app().await;
        queue_for_review(&app, 120).await;
        let token = app.token(Role::Operator).await;
        let observed: Vec<Value> = (0..30)
            .map(|i| {
                let host = if i % 3 == 0 { format!("=cmd|' /C calc'!A{i}") } else { format!("kiosk-{i:02}") };
                json!({"hostname": host, "ip": format!("10.20.0.{}", i + 1)})
            })
            .collect();
        assert_eq!(app.ingest(&token, &json!(observed)).await.status(), 200);
        app.add_user("olivia", Role::Operator).await;
        sign_in(&c, &app, "olivia").await;

        // The queue: 120 machines, 50 a page, by its own links.
        c.goto(&app.url("/config/integrations/defender")).await.unwrap();
        let total = text(&c, "#review-total").await;
        assert!(total.starts_with("120 machines to review") && total.contains("page 1 of 3"), "{total}");
        let first_page = rows_of(&c, "#review tbody tr").await;
        assert_eq!(first_page.len(), 50);
        click(&c, "#review-pager a[rel=next]").await;
        wait_until_text(&c, "#review-total", "page 2 of 3").await;
        let second_page = rows_of(&c, "#review tbody tr").await;
        assert_eq!(second_page.len(), 50);
        assert!(first_page.iter().all(|m| !second_page.contains(m)), "page 2 shows other machines");
        click(&c, "#review-pager a[rel=next]").await;
        wait_until_text(&c, "#review-total", "page 3 of 3").await;
        assert_eq!(rows_of(&c, "#review tbody tr").await.len(), 20, "the queue does not stop at 100 rows");
        assert!(!exists(&c, "#review-pager a[rel=next]").await);
        type_into(&c, "#review-search input[name=review_q]", "shared-name-11").await;
        click(&c, "#review-search button").await;
        wait_until_text(&c, "#review-total", "matching").await;
        assert!(text(&c, "#review-total").await.starts_with("10 machines to review"));

        // The Endpoints list, filtered, and its CSV: the same endpoints, formulas made inert.
        c.goto(&app.url("/endpoints?q=10.20.0")).await.unwrap();
        let shown: usize = text(&c, "#match-count").await.parse().unwrap();
        assert_eq!(shown, 30);
        let href = attr(&find(&c, "#export-csv").await, "href").await.expect("an export link");
        assert!(href.contains("q=10.20.0"), "the export keeps the filter: {href}");
        // The link's file, fetched by the page itself with the signed-in session.
        let csv = c
            .execute_async(
                "const done = arguments[arguments.length - 1]; \
                 fetch(document.querySelector('#export-csv').href) \
                   .then(async r => done([r.status, r.headers.get('content-type'), await r.text()]));",
                vec![],
            )
            .await
            .expect("the export is fetched");
        assert_eq!(csv[0], json!(200));
        assert!(csv[1].as_str().unwrap().starts_with("text/csv"), "{}", csv[1]);
        let body = csv[2].as_str().unwrap();
        let lines: Vec<&str> = body.lines().collect();
        assert!(lines[0].starts_with("id,hostname,"), "{}", lines[0]);
        assert_eq!(lines.len(), shown + 1, "a line per endpoint the filter shows");
        assert_eq!(lines.iter().filter(|l| l.contains("'=cmd")).count(), 10, "formula cells are inert");
        assert!(!lines.iter().any(|l| l.contains(",=cmd")), "no cell starts with =");
    })
    .await;
}

async fn rows_of(c: &Client, css: &str) -> Vec<String> {
    let mut out = Vec::new();
    for row in c.find_all(fantoccini::Locator::Css(css)).await.unwrap() {
        out.push(row.attr("data-machine").await.unwrap().unwrap_or_default());
    }
    out
}

async fn wait_until_text(c: &Client, css: &str, wanted: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(e) = c.find(fantoccini::Locator::Css(css)).await
            && e.text().await.is_ok_and(|t| t.contains(wanted))
        {
            return;
        }
        assert!(Instant::now() < deadline, "{css} did not come to say {wanted:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `endpoint-analytics demo`, started as a new user would, on its own files and ports; stopped
/// on drop.
struct Demo {
    child: std::process::Child,
    base: String,
    password: String,
    _dir: tempfile::TempDir,
}

impl Demo {
    fn start(machines: usize) -> Demo {
        let dir = tempfile::tempdir().unwrap();
        let free_port = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let (app_port, sim_port) = (free_port(), free_port());
        let mut child = Command::new(env!("CARGO_BIN_EXE_endpoint-analytics"))
            .args(["demo", "--machines", &machines.to_string(), "--simulator-bind"])
            .arg(format!("127.0.0.1:{sim_port}"))
            .env("DATABASE_URL", dir.path().join("demo.db"))
            .env("EA_BIND", format!("127.0.0.1:{app_port}"))
            .env("EA_DATA_DIR", dir.path().join("data"))
            // Run from a test, the demo must not call cargo: the simulator binary is already
            // built beside it (`scripts/screenshots` builds it first).
            .env_remove("CARGO")
            .env_remove("CARGO_MANIFEST_DIR")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the demo starts");
        // Its output is read to the end on a thread of its own, so that it never blocks on a
        // full pipe; the sign-in line's password comes back over the channel.
        let (tx, rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(p) = line.trim().strip_prefix("sign in   user admin, password ") {
                    let _ = tx.send(p.to_owned());
                }
            }
        });
        let password = rx.recv_timeout(Duration::from_secs(120)).expect("the demo printed its sign-in");
        Demo { child, base: format!("http://127.0.0.1:{app_port}"), password, _dir: dir }
    }
}

impl Drop for Demo {
    /// Stops the demo as a service manager would (SIGTERM), so that it stops its simulator too;
    /// killed outright only when it does not end in time.
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run by `scripts/screenshots`: the tour against the demo, at both sizes, saving the pictures
/// into `EA_SCREENSHOTS_DIR` (default `docs/screenshots`).
#[tokio::test]
#[ignore = "makes the README's screenshots; run by scripts/screenshots"]
async fn screenshots_of_the_demo() {
    let dir = std::env::var_os("EA_SCREENSHOTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots"));
    std::fs::create_dir_all(&dir).unwrap();
    let demo = Demo::start(500);
    journey("screenshots", |c| async move {
        sign_in_at(&c, &demo.base, "admin", &demo.password).await;
        // The pictures show the tenant after its first sync.
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            c.goto(&format!("{}/config/integrations", demo.base)).await.unwrap();
            if exists(&c, ".last-sync[data-status=succeeded]").await {
                break;
            }
            assert!(Instant::now() < deadline, "the demo's first sync did not finish");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        tour(&c, &demo.base, "admin", &demo.password, Some(&dir)).await;
    })
    .await;
}
