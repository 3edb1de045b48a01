//! Faults on demand and call counters.
//!
//! A [`Faults`] value is what `POST /_sim/faults`, `--faults` and
//! [`super::RunningSimulator::set_faults`] accept (the same JSON). It holds a list of rules
//! (which calls: an API name, the Nth call, a fraction of calls, at most `times` times; what
//! happens: an [`FaultEffect`]) and a few global knobs (token lifetime, action outcome, 404 for
//! empty machine lists). Rules count the calls that passed authentication and rate limiting,
//! from the moment the rules were installed. Fractions are decided by hashing the rule's call
//! number, so a run is reproducible.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::rng::mix64;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    pub rules: Vec<FaultRule>,
    /// Lifetime of tokens issued from now on (overrides `--token-lifetime-secs`).
    pub token_lifetime_secs: Option<u64>,
    /// Terminal status of machine actions created from now on: `Succeeded` (default),
    /// `Failed` or `TimeOut`.
    pub action_outcome: Option<ActionOutcome>,
    /// Answer `GET /api/machines` with 404 ResourceNotFound when nothing matches (documented
    /// behaviour of the real service; off by default, an empty `value` is returned then).
    pub empty_list_404: bool,
    /// Machine properties left out of `GET /api/machines` and `GET /api/machines/{id}` (e.g.
    /// `["onboardingStatus", "agentVersion", "version"]`). Microsoft's own response examples
    /// (`L:get-machines`, `L:get-machine-by-id`) never contain `onboardingStatus`, and the Machine
    /// page does not say which properties are always sent; this shows a client reading them as
    /// optional.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub omit_machine_fields: Vec<String>,
    /// The `aud` of access tokens issued from now on, instead of the requested resource's (a
    /// directory that answers for another resource or cloud). The API refuses such tokens with
    /// 403 like any foreign audience; Test Connection shows the audience the token carried.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_token_audience: Option<String>,
    /// Where the `foreign_next_link` effect points (`scheme://host[:port]`); default
    /// `https://api.defender-mirror.example.net`. A test points it at a listener of its own to
    /// prove that the client never contacts it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub foreign_host: Option<String>,
    /// Spoil the ID tokens the sign-in (authorization code) grant issues from now on, as a
    /// broken or hostile identity provider would, so the product's checks can be shown to hold.
    pub id_token: Option<IdTokenFault>,
    /// Answer a repeated Run Scan, Isolate or Unisolate, while one of its type is still open on
    /// the machine, with 201 and that open action instead of 400 ActiveRequestAlreadyExists:
    /// Microsoft documents both answers ("returns either the already pending machine action or
    /// HTTP 400", L:run-av-scan, L:unisolate-machine; defender-api.md §5.9).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub repeat_returns_pending: bool,
    /// Machine actions returned and listed with `scope` null: the MachineAction page documents
    /// it as a nullable string (defender-api.md §5.5), and a client must not rely on it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub action_scope_null: bool,
    /// Machine actions returned and listed with `requestorComment` null. The MachineAction page
    /// documents it as a string (defender-api.md §5.5); this knob is beyond the documentation,
    /// to show that an action Defender created is not lost when its answer and listing say
    /// neither scope nor comment.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub action_comment_null: bool,
}

impl Faults {
    /// Every call of one API (a name as in the counters, e.g. `ListMachines`) gets `effect`.
    pub fn every(api: &str, effect: FaultEffect) -> Faults {
        let rule = FaultRule { api: Some(api.to_owned()), nth: None, fraction: None, times: None, effect };
        Faults { rules: vec![rule], ..Faults::default() }
    }
}

/// How an ID token is spoiled (see [`Faults::id_token`]).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum IdTokenFault {
    /// The signature does not match the content.
    BadSignature,
    /// `aud` is another application.
    WrongAudience,
    /// `exp` an hour ago.
    Expired,
    /// `nbf` an hour ahead.
    NotYetValid,
    /// `nonce` is not the one sent to the authorize endpoint.
    WrongNonce,
    /// `iss` is the tenant's v1 issuer (`https://sts.windows.net/{tid}/`).
    WrongIssuer,
    /// `tid` names another tenant (the issuer stays right).
    WrongTenant,
    /// Signed under a `kid` the JWKS does not publish.
    UnknownKid,
}

/// The host of a `foreign_next_link` when [`Faults::foreign_host`] is not set.
pub const DEFAULT_FOREIGN_HOST: &str = "https://api.defender-mirror.example.net";

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
pub enum ActionOutcome {
    #[default]
    Succeeded,
    Failed,
    TimeOut,
}

impl ActionOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionOutcome::Succeeded => "Succeeded",
            ActionOutcome::Failed => "Failed",
            ActionOutcome::TimeOut => "TimeOut",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FaultRule {
    /// API name as in the counters (e.g. `ListMachines`, `Token`); `None` = every API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<String>,
    /// Fire on the Nth matching call only (1-based).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nth: Option<u64>,
    /// Fire on this share of matching calls (0..1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fraction: Option<f64>,
    /// Fire at most this many times.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub times: Option<u64>,
    pub effect: FaultEffect,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum FaultEffect {
    /// Answer with this status (500, 503, ...) and the service's error envelope.
    Status { status: u16 },
    /// Answer with this status and an HTML page that is not the service's: what a proxy or a
    /// load balancer in front of a wrong address sends (e.g. a 404 that is not Defender's
    /// `ResourceNotFound`; Microsoft's error body is documented on
    /// <https://learn.microsoft.com/en-us/defender-endpoint/api/common-errors>).
    ProxyPage { status: u16 },
    /// Answer 429; with `Retry-After: retry_after` when given, without the header otherwise.
    Throttle {
        #[serde(default)]
        retry_after: Option<u64>,
    },
    /// Wait before answering.
    Delay { ms: u64 },
    /// Send the headers and half of the body, then hang for `ms` (default 300 s) and abort.
    Stall {
        #[serde(default)]
        ms: Option<u64>,
    },
    /// Send only the first half of the body, then end it cleanly.
    Truncate,
    /// Overwrite bytes in the middle of the body (same length, invalid JSON).
    Corrupt,
    /// Change JSON types of entity fields (numbers become strings, strings numbers, ...).
    WrongTypes,
    /// `@odata.nextLink` points at another host.
    ForeignNextLink,
    /// `@odata.nextLink` broken as reported in the wild (`$filter=` lost, `=N` appended).
    MalformedNextLink,
    /// Pages after the first start one item early, repeating the previous page's last item.
    DuplicateIds,
}

/// Which effects fired for one call.
#[derive(Debug, Clone, Default)]
pub struct Fired {
    pub status: Option<u16>,
    /// The status comes as a proxy's HTML page, not the service's error body.
    pub proxy_page: bool,
    pub throttle: Option<Option<u64>>,
    pub delay_ms: u64,
    pub stall_ms: Option<u64>,
    pub truncate: bool,
    pub corrupt: bool,
    pub wrong_types: bool,
    pub foreign_next_link: bool,
    pub malformed_next_link: bool,
    pub duplicate_ids: bool,
}

impl Fired {
    pub fn any(&self) -> bool {
        self.status.is_some()
            || self.throttle.is_some()
            || self.delay_ms > 0
            || self.stall_ms.is_some()
            || self.truncate
            || self.corrupt
            || self.wrong_types
            || self.foreign_next_link
            || self.malformed_next_link
            || self.duplicate_ids
    }
}

/// Installed faults plus per-rule progress.
#[derive(Debug, Default)]
pub struct FaultState {
    pub faults: Faults,
    seen: Vec<u64>,
    fired: Vec<u64>,
}

impl FaultState {
    pub fn new(faults: Faults) -> Self {
        let n = faults.rules.len();
        FaultState { faults, seen: vec![0; n], fired: vec![0; n] }
    }

    /// Decide which rules fire for a call to `api`.
    pub fn evaluate(&mut self, api: &str) -> Fired {
        let mut f = Fired::default();
        for (i, rule) in self.faults.rules.iter().enumerate() {
            if let Some(a) = &rule.api
                && !a.eq_ignore_ascii_case(api)
            {
                continue;
            }
            self.seen[i] += 1;
            let n = self.seen[i];
            if rule.times.is_some_and(|t| self.fired[i] >= t) {
                continue;
            }
            let hit = match (rule.nth, rule.fraction) {
                (Some(k), _) => n == k,
                (None, Some(p)) => ((mix64(n ^ ((i as u64) << 40)) >> 11) as f64 / (1u64 << 53) as f64) < p,
                (None, None) => true,
            };
            if !hit {
                continue;
            }
            self.fired[i] += 1;
            match &rule.effect {
                FaultEffect::Status { status } => f.status = Some(*status),
                FaultEffect::ProxyPage { status } => {
                    f.status = Some(*status);
                    f.proxy_page = true;
                }
                FaultEffect::Throttle { retry_after } => f.throttle = Some(*retry_after),
                FaultEffect::Delay { ms } => f.delay_ms += ms,
                FaultEffect::Stall { ms } => f.stall_ms = Some(ms.unwrap_or(300_000)),
                FaultEffect::Truncate => f.truncate = true,
                FaultEffect::Corrupt => f.corrupt = true,
                FaultEffect::WrongTypes => f.wrong_types = true,
                FaultEffect::ForeignNextLink => f.foreign_next_link = true,
                FaultEffect::MalformedNextLink => f.malformed_next_link = true,
                FaultEffect::DuplicateIds => f.duplicate_ids = true,
            }
        }
        f
    }
}

/// Calls per API and status, readable over `GET /_sim/counters` and from
/// [`super::RunningSimulator::counters`].
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Counters {
    /// Every request to the token endpoint and the API (admin endpoints excluded).
    pub total_calls: u64,
    /// 429 answers, whether from a rate limit or a fault.
    pub throttled: u64,
    /// Calls on which at least one fault rule fired.
    pub faults_injected: u64,
    pub tokens_issued: u64,
    pub per_api: BTreeMap<String, ApiCounters>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ApiCounters {
    pub calls: u64,
    pub throttled: u64,
    /// Status code (as a string, JSON keys are strings) → count.
    pub by_status: BTreeMap<String, u64>,
}

impl Counters {
    pub fn api(&self, name: &str) -> ApiCounters {
        self.per_api.get(name).cloned().unwrap_or_default()
    }
    pub fn record_call(&mut self, api: &str) {
        self.total_calls += 1;
        self.per_api.entry(api.to_string()).or_default().calls += 1;
    }
    pub fn record_status(&mut self, api: &str, status: u16) {
        let e = self.per_api.entry(api.to_string()).or_default();
        *e.by_status.entry(status.to_string()).or_default() += 1;
        if status == 429 {
            e.throttled += 1;
            self.throttled += 1;
        }
    }
}

/// Change the JSON types of the fields of entities (`value` items or a single entity), keeping
/// the envelope intact so the client gets past the envelope and trips on the entity.
pub fn scramble_types(body: &[u8]) -> Option<Vec<u8>> {
    use serde_json::Value;
    let mut v: Value = serde_json::from_slice(body).ok()?;
    fn scramble_obj(o: &mut serde_json::Map<String, Value>) {
        for (k, val) in o.iter_mut() {
            if k.starts_with("@odata") {
                continue;
            }
            *val = match std::mem::take(val) {
                Value::String(s) => Value::from(s.len() as u64),
                Value::Number(n) => Value::String(n.to_string()),
                Value::Bool(b) => Value::String(if b { "yes" } else { "no" }.into()),
                Value::Array(a) => Value::String(format!("{} items", a.len())),
                Value::Object(_) => Value::Array(vec![]),
                Value::Null => Value::Bool(false),
            };
        }
    }
    match &mut v {
        Value::Object(o) => {
            if let Some(Value::Array(items)) = o.get_mut("value") {
                for it in items.iter_mut() {
                    if let Value::Object(io) = it {
                        scramble_obj(io);
                    }
                }
            } else if let Some(Value::Array(items)) = o.get_mut("Results") {
                for it in items.iter_mut() {
                    if let Value::Object(io) = it {
                        scramble_obj(io);
                    }
                }
            } else {
                scramble_obj(o);
            }
        }
        Value::Array(items) => {
            for it in items.iter_mut() {
                if let Value::Object(io) = it {
                    scramble_obj(io);
                }
            }
        }
        _ => {}
    }
    serde_json::to_vec(&v).ok()
}

/// Overwrite a stretch in the middle of the body with bytes that cannot be JSON.
pub fn corrupt(body: &mut [u8]) {
    if body.is_empty() {
        return;
    }
    let mid = body.len() / 2;
    let garbage = b"\x00}{\"\xff\xfe,]]";
    for (i, b) in garbage.iter().enumerate() {
        if let Some(slot) = body.get_mut(mid + i) {
            *slot = *b;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nth_fraction_times_and_api() {
        let mut s = FaultState::new(Faults {
            rules: vec![
                FaultRule {
                    api: Some("ListMachines".into()),
                    nth: Some(2),
                    fraction: None,
                    times: None,
                    effect: FaultEffect::Status { status: 503 },
                },
                FaultRule {
                    api: None,
                    nth: None,
                    fraction: None,
                    times: Some(1),
                    effect: FaultEffect::Delay { ms: 5 },
                },
            ],
            ..Default::default()
        });
        let a = s.evaluate("ListMachines");
        assert_eq!((a.status, a.delay_ms), (None, 5));
        let b = s.evaluate("ListMachines");
        assert_eq!((b.status, b.delay_ms), (Some(503), 0));
        assert!(!s.evaluate("ListAlerts").any());
    }

    #[test]
    fn json_shape() {
        let f: Faults = serde_json::from_str(
            r#"{"rules":[{"api":"Token","fraction":0.5,"effect":{"type":"throttle","retry_after":3}},
                         {"effect":{"type":"stall"}}],"action_outcome":"TimeOut"}"#,
        )
        .unwrap();
        assert_eq!(f.rules.len(), 2);
        assert_eq!(f.action_outcome, Some(ActionOutcome::TimeOut));
        assert!(serde_json::from_str::<Faults>(r#"{"bogus":1}"#).is_err());
    }
}
