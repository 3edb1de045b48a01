//! The Prometheus metrics of one application instance, served at `/metrics` in the OpenMetrics
//! text format. Counters and histograms are recorded where things happen (the request logger,
//! the Defender client, the end of a sync); the inventory figures (endpoints by risk, machine
//! actions by status) are read from the database when scraped, so every instance sharing a
//! database reports the same, current numbers.
//!
//! Label values are bounded on purpose: routes are the matched patterns of the routing table,
//! methods the standard ones, APIs the client's `Api` names.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, text};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::defender::Api;

/// What `/metrics` answers with.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: &'static str,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// `status` is the HTTP status code, or `error` when no answer came (timeout, connection).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiCallLabels {
    api: &'static str,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiLabels {
    api: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RiskLabels {
    risk: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    action_type: String,
    status: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Request latencies: 5 ms to about 20 s.
fn request_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 13))
}

/// Sync durations: 1 s to about 4.5 h.
fn sync_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 15))
}

struct Inner {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_seconds: HistogramFamily<RouteLabels>,
    sync_runs: Family<OutcomeLabels, Counter>,
    sync_seconds: HistogramFamily<OutcomeLabels>,
    api_calls: Family<ApiCallLabels, Counter>,
    api_throttled: Family<ApiLabels, Counter>,
    endpoints_by_risk: Family<RiskLabels, Gauge>,
    actions_by_status: Family<ActionLabels, Gauge>,
    password_checks: Counter,
    sign_ins_refused: Family<OutcomeLabels, Counter>,
    /// Held while the scrape-time gauges are replaced and encoded, so that two scrapes at once
    /// cannot interleave a clear with the other's values.
    scrape: Mutex<()>,
}

/// A cheap handle to the instance's metrics; clones share them.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics(..)")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The figures read from the database at scrape time.
#[derive(Debug, Default)]
pub struct InventoryFigures {
    /// (risk level label, endpoints)
    pub endpoints_by_risk: Vec<(&'static str, i64)>,
    /// (action type, status, actions)
    pub actions_by_status: Vec<(String, String, i64)>,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("ea");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by method, route pattern and status",
            requests.clone(),
        );
        let request_seconds: HistogramFamily<RouteLabels> = Family::new_with_constructor(request_histogram);
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request, by method and route pattern",
            request_seconds.clone(),
        );
        let sync_runs = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "defender_sync_runs",
            "Microsoft Defender syncs run by this instance, by outcome (succeeded, failed)",
            sync_runs.clone(),
        );
        let sync_seconds: HistogramFamily<OutcomeLabels> = Family::new_with_constructor(sync_histogram);
        registry.register(
            "defender_sync_duration_seconds",
            "Duration of Microsoft Defender syncs run by this instance, by outcome",
            sync_seconds.clone(),
        );
        let api_calls = Family::<ApiCallLabels, Counter>::default();
        registry.register(
            "defender_api_calls",
            "Requests to the Defender API and the Entra token endpoint (api=Token), by API and HTTP status \
             (error: no answer), retries included",
            api_calls.clone(),
        );
        let api_throttled = Family::<ApiLabels, Counter>::default();
        registry.register(
            "defender_api_throttled",
            "HTTP 429 (too many requests) answers from the Defender API or Entra, by API",
            api_throttled.clone(),
        );
        let endpoints_by_risk = Family::<RiskLabels, Gauge>::default();
        registry.register("endpoints", "Endpoints in the inventory, by overall risk level", endpoints_by_risk.clone());
        let actions_by_status = Family::<ActionLabels, Gauge>::default();
        registry.register(
            "machine_actions",
            "Defender machine actions requested through the product, by type and status",
            actions_by_status.clone(),
        );
        let password_checks = Counter::default();
        registry.register(
            "password_checks",
            "Passwords checked against their Argon2 hash at sign-in (attempts refused before the check are not counted)",
            password_checks.clone(),
        );
        let sign_ins_refused = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "sign_ins_refused",
            "Sign-ins refused before any check, by reason (waiting: the user name or address must wait; busy: too \
             many password checks at once; no_pending_sign_in: a way back from Entra that this browser did not start)",
            sign_ins_refused.clone(),
        );
        Self(Arc::new(Inner {
            registry,
            password_checks,
            sign_ins_refused,
            requests,
            request_seconds,
            sync_runs,
            sync_seconds,
            api_calls,
            api_throttled,
            endpoints_by_risk,
            actions_by_status,
            scrape: Mutex::new(()),
        }))
    }

    /// One answered request. `route` is the matched pattern (`None`: no route matched).
    pub fn observe_request(
        &self,
        method: &actix_web::http::Method,
        route: Option<String>,
        status: u16,
        took: Duration,
    ) {
        let method = method_label(method);
        let route = route.unwrap_or_else(|| "unmatched".into());
        self.0.requests.get_or_create(&RequestLabels { method, route: route.clone(), status }).inc();
        self.0.request_seconds.get_or_create(&RouteLabels { method, route }).observe(took.as_secs_f64());
    }

    /// One password checked against its hash.
    pub fn observe_password_check(&self) {
        self.0.password_checks.inc();
    }

    /// One sign-in refused before any check: `waiting`, `busy` or `no_pending_sign_in`.
    pub fn observe_sign_in_refused(&self, reason: &'static str) {
        self.0.sign_ins_refused.get_or_create(&OutcomeLabels { outcome: reason }).inc();
    }

    /// One Defender sync that ended.
    pub fn observe_sync(&self, succeeded: bool, took: Duration) {
        let outcome = OutcomeLabels { outcome: if succeeded { "succeeded" } else { "failed" } };
        self.0.sync_runs.get_or_create(&outcome).inc();
        self.0.sync_seconds.get_or_create(&outcome).observe(took.as_secs_f64());
    }

    /// One request to Defender or Entra and its HTTP status (`None`: no answer).
    pub fn observe_api_call(&self, api: Api, status: Option<u16>) {
        if status == Some(429) {
            self.0.api_throttled.get_or_create(&ApiLabels { api: api.as_str() }).inc();
        }
        let status = status.map_or_else(|| "error".to_owned(), |s| s.to_string());
        self.0.api_calls.get_or_create(&ApiCallLabels { api: api.as_str(), status }).inc();
    }

    /// The OpenMetrics text, with the inventory gauges set from `figures`.
    pub fn render(&self, figures: &InventoryFigures) -> String {
        let _one_at_a_time = self.0.scrape.lock().unwrap_or_else(|e| e.into_inner());
        // Replaced whole: a status that no action has any more must not linger.
        self.0.endpoints_by_risk.clear();
        for (risk, n) in &figures.endpoints_by_risk {
            self.0.endpoints_by_risk.get_or_create(&RiskLabels { risk }).set(*n);
        }
        self.0.actions_by_status.clear();
        for (action_type, status, n) in &figures.actions_by_status {
            self.0
                .actions_by_status
                .get_or_create(&ActionLabels { action_type: action_type.clone(), status: status.clone() })
                .set(*n);
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = text::encode(&mut out, &self.0.registry);
        out
    }
}

/// The standard methods by name; anything else is `other`, so that made-up methods cannot
/// create series.
fn method_label(m: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inventory_gauges_are_replaced_at_each_scrape() {
        let m = Metrics::new();
        let first = m.render(&InventoryFigures {
            endpoints_by_risk: vec![("High", 3)],
            actions_by_status: vec![("Isolate".into(), "Pending".into(), 1)],
        });
        assert!(first.contains("ea_endpoints{risk=\"High\"} 3"), "{first}");
        assert!(first.contains("ea_machine_actions{action_type=\"Isolate\",status=\"Pending\"} 1"), "{first}");
        let second = m.render(&InventoryFigures {
            endpoints_by_risk: vec![("High", 2)],
            actions_by_status: vec![("Isolate".into(), "Succeeded".into(), 1)],
        });
        assert!(second.contains("ea_endpoints{risk=\"High\"} 2"), "{second}");
        assert!(!second.contains("status=\"Pending\""), "a status no action has any more is gone: {second}");
        assert!(second.ends_with("# EOF\n"));
    }

    #[test]
    fn made_up_methods_and_unknown_paths_share_one_series() {
        let m = Metrics::new();
        let odd = actix_web::http::Method::from_bytes(b"BREW").unwrap();
        m.observe_request(&odd, None, 404, Duration::from_millis(3));
        m.observe_request(&actix_web::http::Method::GET, None, 404, Duration::from_millis(3));
        let text = m.render(&InventoryFigures::default());
        assert!(
            text.contains("ea_http_requests_total{method=\"other\",route=\"unmatched\",status=\"404\"} 1"),
            "{text}"
        );
        assert!(text.contains("ea_http_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"} 1"), "{text}");
        assert!(!text.contains("BREW"));
    }
}
