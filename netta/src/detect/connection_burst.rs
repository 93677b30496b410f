//! Connection burst: new connections per second far above an exponentially
//! weighted baseline, for several seconds in a row.
use serde_json::json;

use super::alert::{Finding, RuleId};
use super::{Rules, SEC};

#[derive(Default)]
pub(super) struct ConnectionBurst {
    second: u64,
    count: u64,
    baseline: f64,
    seconds_seen: u64,
    hot_streak: u32,
    streak_start: u64,
    peak: u64,
}

impl ConnectionBurst {
    /// Counts one new connection at `now`; a finding when that closes a hot second.
    pub fn count_new(&mut self, rules: &Rules, now: u64) -> Option<Finding> {
        let sec = now / SEC;
        let found = if sec != self.second {
            self.roll(rules, sec)
        } else {
            None
        };
        self.count += 1;
        found
    }

    /// Closes the seconds before `sec` and judges them.
    pub fn roll(&mut self, rules: &Rules, sec: u64) -> Option<Finding> {
        let b = self;
        if sec <= b.second {
            return None;
        }
        let cfg = &rules.connection_burst;
        let done = b.count;
        // Empty seconds in between count as zeros.
        let gap = (sec - b.second).saturating_sub(1).min(600);
        let threshold = (cfg.min_per_sec as f64).max(cfg.factor * b.baseline);
        let hot = b.seconds_seen >= 5 && done as f64 >= threshold;
        if hot {
            if b.hot_streak == 0 {
                b.streak_start = b.second * SEC;
                b.peak = 0;
            }
            b.hot_streak += 1;
            b.peak = b.peak.max(done);
        } else {
            b.hot_streak = 0;
            // The baseline learns only from normal seconds, so a flood cannot raise it.
            b.baseline = 0.9 * b.baseline + 0.1 * done as f64;
        }
        for _ in 0..gap {
            b.baseline *= 0.9;
        }
        b.seconds_seen += 1 + gap;
        b.second = sec;
        b.count = 0;
        let (streak, start, peak, baseline) = (b.hot_streak, b.streak_start, b.peak, b.baseline);
        if streak < cfg.sustain_secs {
            return None;
        }
        Some(Finding {
            rule: RuleId::ConnectionBurst,
            key: "host".into(),
            message: format!(
                "Connection burst: {peak} new connections/s (baseline {baseline:.0}/s) for {streak}s"
            ),
            source_ip: None,
            first_ns: start,
            evidence: json!({ "peak_per_sec": peak, "baseline_per_sec": baseline, "seconds": streak }),
        })
    }
}
