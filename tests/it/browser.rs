//! The harness of the real-browser journeys: a headless Chromium driven over WebDriver by
//! Debian's `chromedriver`, one browser (with a fresh profile) per journey.
//!
//! When Chromium or its driver is not installed the journeys print "skipped: chromium not
//! installed" and pass, unless `EA_REQUIRE_BROWSER=1` (set by `scripts/test` once it installed
//! them), which makes that a failure. `EA_CHROMEDRIVER` and `EA_CHROMIUM` override the paths.
//! A failed journey leaves a screenshot and the page's HTML in `target/test-output/`.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use futures_util::FutureExt;
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, backend};

/// How long a journey waits for something to appear on the page.
pub const WAIT: Duration = Duration::from_secs(15);

fn binary(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| PathBuf::from(default))
}

/// One headless Chromium with its chromedriver; the driver is killed on drop.
pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a browser session, or `None` when they are not installed (a
    /// failure instead when `EA_REQUIRE_BROWSER=1`).
    pub async fn start() -> Option<Browser> {
        let driver_path = binary("EA_CHROMEDRIVER", "/usr/bin/chromedriver");
        let chromium = binary("EA_CHROMIUM", "/usr/bin/chromium");
        if !driver_path.is_file() || !chromium.is_file() {
            if std::env::var("EA_REQUIRE_BROWSER").as_deref() == Ok("1") {
                panic!(
                    "EA_REQUIRE_BROWSER=1 but {} or {} is missing: install chromium and chromium-driver \
                     (apt-get install chromium chromium-driver)",
                    driver_path.display(),
                    chromium.display()
                );
            }
            eprintln!("skipped: chromium not installed");
            return None;
        }
        let (driver, port) = start_driver(&driver_path);
        let profile = tempfile::tempdir().expect("a temporary browser profile");
        let capabilities = json!({
            // Leave dialogs open so that a journey can see an alert() a page managed to raise.
            "unhandledPromptBehavior": "ignore",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--no-first-run",
                    "--window-size=1280,1000",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        });
        let Value::Object(capabilities) = capabilities else { unreachable!() };
        let browser = Browser {
            client: match ClientBuilder::new(HttpConnector::new())
                .capabilities(capabilities)
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
            {
                Ok(c) => c,
                Err(e) => panic!("no browser session from chromedriver on port {port}: {e}"),
            },
            driver,
            _profile: profile,
        };
        // Nothing may outlive a journey by much.
        let timeouts = fantoccini::wd::TimeoutConfiguration::new(
            Some(Duration::from_secs(10)),
            Some(Duration::from_secs(20)),
            Some(Duration::ZERO),
        );
        browser.client.update_timeouts(timeouts).await.expect("the session's timeouts are set");
        Some(browser)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Starts chromedriver on a free loopback port and waits until it accepts connections.
fn start_driver(path: &std::path::Path) -> (Child, u16) {
    for _attempt in 0..3 {
        let port =
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).and_then(|l| l.local_addr()).expect("a free port").port();
        let mut child = Command::new(path)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", path.display()));
        let deadline = Instant::now() + Duration::from_secs(10);
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return (child, port);
            }
            // It exits at once when the port was taken in the meantime: try another one.
            if matches!(child.try_wait(), Ok(Some(_))) || Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    panic!("{} did not start listening (three attempts)", path.display())
}

/// Journeys run one at a time: a browser each, on small machines, next to the rest of the suite.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Runs one journey in a fresh browser. When it fails, the page's screenshot and HTML are saved
/// as `target/test-output/{name}-{backend}.png` / `.html` before the failure is passed on.
pub async fn journey<F, Fut>(name: &str, body: F)
where
    F: FnOnce(Client) -> Fut,
    Fut: Future<Output = ()>,
{
    let _turn = TURN.lock().await;
    let Some(browser) = Browser::start().await else { return };
    let started = Instant::now();
    let outcome = AssertUnwindSafe(body(browser.client.clone())).catch_unwind().await;
    if outcome.is_err() {
        save_artifacts(&browser.client, name).await;
    }
    let _ = browser.client.clone().close().await;
    drop(browser);
    eprintln!("journey {name} on {}: {:.1} s", backend(), started.elapsed().as_secs_f64());
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

async fn save_artifacts(c: &Client, name: &str) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target").join("test-output");
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("cannot create {}: {e}", dir.display());
        return;
    }
    if let Ok(text) = c.get_alert_text().await {
        eprintln!("an alert was open: {text:?}");
        let _ = c.dismiss_alert().await;
    }
    let base = dir.join(format!("{name}-{}", backend()));
    match c.screenshot().await {
        Ok(png) => match std::fs::write(base.with_extension("png"), png) {
            Ok(()) => eprintln!("screenshot: {}", base.with_extension("png").display()),
            Err(e) => eprintln!("cannot write the screenshot: {e}"),
        },
        Err(e) => eprintln!("no screenshot: {e}"),
    }
    match c.source().await {
        Ok(html) => match std::fs::write(base.with_extension("html"), html) {
            Ok(()) => eprintln!("page HTML: {}", base.with_extension("html").display()),
            Err(e) => eprintln!("cannot write the page HTML: {e}"),
        },
        Err(e) => eprintln!("no page HTML: {e}"),
    }
    if let Ok(url) = c.current_url().await {
        eprintln!("the page was {url}");
    }
}

// ---- what the journeys do with a page ----

/// The element matching `css`, once it is there (at most [`WAIT`]).
pub async fn wait_for(c: &Client, css: &str) -> Element {
    match c.wait().at_most(WAIT).every(Duration::from_millis(50)).for_element(Locator::Css(css)).await {
        Ok(e) => e,
        Err(e) => panic!("{css} did not appear within {WAIT:?}: {e}"),
    }
}

pub async fn find(c: &Client, css: &str) -> Element {
    c.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("no {css} on the page: {e}"))
}

pub async fn exists(c: &Client, css: &str) -> bool {
    !c.find_all(Locator::Css(css)).await.expect("find_all").is_empty()
}

pub async fn text(c: &Client, css: &str) -> String {
    find(c, css).await.text().await.expect("an element's text")
}

pub async fn click(c: &Client, css: &str) {
    find(c, css).await.click().await.unwrap_or_else(|e| panic!("cannot click {css}: {e}"));
}

pub async fn type_into(c: &Client, css: &str, value: &str) {
    let field = find(c, css).await;
    field.clear().await.unwrap_or_else(|e| panic!("cannot clear {css}: {e}"));
    field.send_keys(value).await.unwrap_or_else(|e| panic!("cannot type into {css}: {e}"));
}

pub async fn attr(e: &Element, name: &str) -> Option<String> {
    e.attr(name).await.expect("an element's attribute")
}

pub async fn js(c: &Client, script: &str) -> Value {
    c.execute(script, vec![]).await.unwrap_or_else(|e| panic!("script {script:?} failed: {e}"))
}

/// Marks the current document; [`assert_same_document`] then proves that no navigation or
/// reload happened since (htmx swapped parts of the page instead).
pub async fn mark_document(c: &Client) {
    js(c, "window.__eaJourneyMark = true; return null;").await;
}

pub async fn assert_same_document(c: &Client, what: &str) {
    assert_eq!(js(c, "return window.__eaJourneyMark === true;").await, json!(true), "{what}: the page was reloaded");
}

/// Signs in through the login form and waits for the signed-in page.
pub async fn sign_in(c: &Client, app: &TestApp, user: &str) {
    sign_in_at(c, &app.url(""), user, PASSWORD).await;
}

/// Signs in with `password` to the application at `base`.
pub async fn sign_in_at(c: &Client, base: &str, user: &str, password: &str) {
    c.goto(&format!("{base}/login")).await.expect("the login page opens");
    type_into(c, "#login-form input[name=username]", user).await;
    type_into(c, "#login-form input[name=password]", password).await;
    click(c, "#login-form button[type=submit]").await;
    let who = wait_for(c, "#current-user").await;
    assert_eq!(who.text().await.unwrap(), user, "signed in as {user}");
}
