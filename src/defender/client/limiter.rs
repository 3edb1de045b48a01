//! Client-side rate limiter: keeps each API under its documented budget without help from
//! the server (defender-api.md §4.1).
//!
//! A sliding-window log per API: a call may start only if fewer than `per_minute` calls
//! started within the last minute *and* fewer than `per_hour` within the last hour, where
//! both windows are lengthened by a safety margin (default 1 s) to absorb network jitter
//! between our send time and the service's arrival time. "At most N calls in any sliding
//! window of 60 s + margin" implies at most N in every fixed or first-call-anchored window the
//! service may use. Every request sent counts (retries too). A 429's `Retry-After` also
//! blocks the whole API for every task sharing the client.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::Api;

/// A budget per minute and per hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub per_minute: u32,
    pub per_hour: u32,
}

impl RateLimit {
    pub const fn new(per_minute: u32, per_hour: u32) -> Self {
        RateLimit { per_minute, per_hour }
    }
}

/// The documented limits; APIs without a documented limit get 100/min and 1,500/h (the
/// common documented budget) to be safe.
pub fn documented_limit(api: Api) -> RateLimit {
    match api {
        Api::MachineVulnerabilities => RateLimit::new(50, 1500),
        Api::AdvancedQuery => RateLimit::new(45, 1500),
        Api::ExportAssessmentJson | Api::ExportAssessmentDelta => RateLimit::new(30, 1000),
        // "2 calls per minute and 120 calls per hour"
        // (https://learn.microsoft.com/en-us/defender-endpoint/api/get-package-sas-uri).
        Api::GetPackageUri => RateLimit::new(2, 120),
        // Not an API call budget: Entra's token endpoint has no documented per-app limit,
        // but we never need more than a handful of tokens.
        Api::Token => RateLimit::new(60, 1500),
        // Api::MachineTags: "100 calls per minute and 1500 calls per hour"
        // (https://learn.microsoft.com/en-us/defender-endpoint/api/add-or-remove-machine-tags).
        _ => RateLimit::new(100, 1500),
    }
}

#[derive(Default)]
struct Lane {
    starts: VecDeque<Instant>,
    blocked_until: Option<Instant>,
}

pub(crate) struct Limiter {
    enabled: bool,
    minute: Duration,
    hour: Duration,
    margin: Duration,
    overrides: HashMap<Api, RateLimit>,
    lanes: Mutex<HashMap<Api, Lane>>,
}

impl Limiter {
    pub fn new(enabled: bool, minute: Duration, margin: Duration, overrides: &[(Api, RateLimit)]) -> Self {
        Limiter {
            enabled,
            minute,
            hour: minute * 60,
            margin,
            overrides: overrides.iter().copied().collect(),
            lanes: Mutex::new(HashMap::new()),
        }
    }

    pub fn limit(&self, api: Api) -> RateLimit {
        self.overrides.get(&api).copied().unwrap_or_else(|| documented_limit(api))
    }

    /// Wait until a call of `api` may start and record it; returns the time waited.
    pub async fn acquire(&self, api: Api) -> Duration {
        let begin = Instant::now();
        let limit = self.limit(api);
        loop {
            let wake = {
                let mut lanes = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
                let lane = lanes.entry(api).or_default();
                let now = Instant::now();
                match self.next_slot(lane, limit, now) {
                    None => {
                        lane.starts.push_back(now);
                        return now - begin;
                    }
                    Some(at) => at,
                }
            };
            tokio::time::sleep_until(wake).await;
        }
    }

    /// `None` if a call may start now, else when to look again.
    fn next_slot(&self, lane: &mut Lane, limit: RateLimit, now: Instant) -> Option<Instant> {
        if let Some(b) = lane.blocked_until {
            if b > now {
                return Some(b);
            }
            lane.blocked_until = None;
        }
        if !self.enabled {
            return None;
        }
        let hour = self.hour + self.margin;
        let minute = self.minute + self.margin;
        while lane.starts.front().is_some_and(|t| now.duration_since(*t) >= hour) {
            lane.starts.pop_front();
        }
        let mut wake: Option<Instant> = None;
        if lane.starts.len() >= limit.per_hour as usize {
            let idx = lane.starts.len() - limit.per_hour as usize;
            wake = Some(lane.starts[idx] + hour);
        }
        // Calls within the last minute (+margin): the log is sorted, count from the back.
        let in_minute = lane.starts.iter().rev().take_while(|t| now.duration_since(**t) < minute).count();
        if in_minute >= limit.per_minute as usize {
            let idx = lane.starts.len() - limit.per_minute as usize;
            let at = lane.starts[idx] + minute;
            wake = Some(wake.map_or(at, |w| w.max(at)));
        }
        wake
    }

    /// Block `api` for everyone until `until` (after a 429 with `Retry-After`).
    pub fn block_until(&self, api: Api, until: Instant) {
        let mut lanes = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
        let lane = lanes.entry(api).or_default();
        lane.blocked_until = Some(lane.blocked_until.map_or(until, |b| b.max(until)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Real time with short windows (tokio's paused clock needs the `test-util` feature).
    #[tokio::test]
    async fn waits_for_the_minute_and_hour_windows() {
        let minute = Duration::from_millis(40);
        let l = Limiter::new(true, minute, Duration::from_millis(10), &[(Api::ListMachines, RateLimit::new(3, 5))]);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(l.acquire(Api::ListMachines).await < Duration::from_millis(5));
        }
        // Other APIs are independent.
        assert!(l.acquire(Api::ListAlerts).await < Duration::from_millis(5));
        let waited = l.acquire(Api::ListMachines).await;
        assert!(waited >= Duration::from_millis(45), "{waited:?}");
        l.acquire(Api::ListMachines).await;
        // Hour budget (5) used up: the 6th call starts an "hour" (60 x 40 ms) + margin after
        // the first.
        l.acquire(Api::ListMachines).await;
        assert!(Instant::now() - t0 >= minute * 60 + Duration::from_millis(10));
    }

    #[tokio::test]
    async fn block_until_delays_everyone() {
        let l = Limiter::new(true, Duration::from_secs(60), Duration::ZERO, &[]);
        l.block_until(Api::ListAlerts, Instant::now() + Duration::from_millis(50));
        assert!(l.acquire(Api::ListAlerts).await >= Duration::from_millis(45));
        assert!(l.acquire(Api::ListAlerts).await < Duration::from_millis(5));
    }
}
