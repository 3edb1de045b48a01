//! Per-client, per-API call budgets (`L:common-errors`, rate-limit table of each API page).
//!
//! Fixed windows: a client's minute window for an API opens with its first call and lasts 60 s
//! (the hour window likewise, 3600 s). Opening the window at the first call rather than at the
//! wall-clock minute makes "the 101st call within a minute is refused" hold no matter when a
//! test starts. Refused calls do not consume budget, and `Retry-After` is the whole seconds
//! until the window that refused the call closes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Minute,
    Hour,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    Limited { retry_after_secs: u64, period: Period, limit: u32 },
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    count: u32,
}

#[derive(Default)]
pub struct RateLimiter {
    windows: Mutex<HashMap<(String, &'static str, bool), Window>>,
}

impl RateLimiter {
    /// Count one call of `client` to `api` unless a budget is exhausted.
    pub fn check(&self, client: &str, api: &'static str, per_minute: Option<u32>, per_hour: Option<u32>) -> Verdict {
        let now = Instant::now();
        let mut w = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let budgets = [
            (false, per_minute, Duration::from_secs(60), Period::Minute),
            (true, per_hour, Duration::from_secs(3600), Period::Hour),
        ];
        // First pass: would any window refuse? Only then count, so refusals cost nothing.
        for (hourly, limit, len, period) in budgets {
            let Some(limit) = limit else { continue };
            if let Some(win) = w.get(&(client.to_string(), api, hourly))
                && now.duration_since(win.start) < len
                && win.count >= limit
            {
                let left = len.saturating_sub(now.duration_since(win.start));
                let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
                return Verdict::Limited { retry_after_secs: secs.max(1), period, limit };
            }
        }
        for (hourly, limit, len, _) in budgets {
            if limit.is_none() {
                continue;
            }
            let win = w.entry((client.to_string(), api, hourly)).or_insert(Window { start: now, count: 0 });
            if now.duration_since(win.start) >= len {
                *win = Window { start: now, count: 0 };
            }
            win.count += 1;
        }
        Verdict::Allowed
    }

    pub fn reset(&self) {
        self.windows.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_then_refusal() {
        let l = RateLimiter::default();
        for _ in 0..3 {
            assert_eq!(l.check("c", "x", Some(3), Some(10)), Verdict::Allowed);
        }
        match l.check("c", "x", Some(3), Some(10)) {
            Verdict::Limited { retry_after_secs, period, limit } => {
                assert!((1..=60).contains(&retry_after_secs));
                assert_eq!(period, Period::Minute);
                assert_eq!(limit, 3);
            }
            v => panic!("{v:?}"),
        }
        assert_eq!(l.check("other", "x", Some(3), Some(10)), Verdict::Allowed);
        assert_eq!(l.check("c", "y", Some(3), None), Verdict::Allowed);
    }
}
