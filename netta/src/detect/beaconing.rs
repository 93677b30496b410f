//! Beaconing: one process connecting to one destination at a steady period, as
//! command-and-control implants do. Scored as RITA does: the intervals between
//! connections should be symmetric (Bowley skew near 0) and tight (median absolute
//! deviation small against the median), over enough connections and time.
use std::collections::VecDeque;
use std::net::SocketAddr;

use rustc_hash::FxHashMap;
use serde_json::json;

use super::alert::{Finding, RuleId};
use super::{Rules, MAX_SOURCES};
use crate::core::event::ConnEvent;
use crate::core::format::owner;
use crate::core::sanitize::Comm;

/// Connection times kept per (process, destination): enough for a stable score.
const KEEP: usize = 64;
/// Intervals whose middle half spans less than this share of the median are tight
/// whatever their shape: their skew counts only in proportion. (RITA's whole-second
/// timestamps hide the skew of small jitter the same way.)
const SKEW_TOLERANCE: f64 = 0.2;
/// A beacon's intervals stay within this share of their median (median absolute
/// deviation over the median). A 50 % sleep jitter (intervals uniform over half a
/// period) gives 0.17; uniformly random gaps give about 0.5, yet a score alone
/// could pass them when a short series happens to come out symmetric.
const MAX_DISPERSION: f64 = 0.2;

#[derive(Default)]
pub(super) struct Beaconing {
    series: FxHashMap<(Comm, SocketAddr), VecDeque<u64>>,
}

/// How regular a series of intervals is, RITA-style.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Score {
    /// Bowley skew of the intervals, -1..1 (0: symmetric).
    pub skew: f64,
    /// Median absolute deviation over the median interval.
    pub dispersion: f64,
    pub median_ns: u64,
    /// 0..1: the mean of `1 - |skew|` (weighed by spread) and `1 - dispersion`.
    pub score: f64,
}

impl Score {
    /// Regular enough to call a beacon: a score of at least `min_score`, and
    /// intervals that stay close to their median.
    pub fn is_beacon(&self, min_score: f64) -> bool {
        self.score >= min_score && self.dispersion <= MAX_DISPERSION
    }
}

fn quantile(sorted: &[u64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    let f = pos - lo as f64;
    sorted[lo] as f64 * (1.0 - f) + sorted[hi] as f64 * f
}

/// The score of connection times `ts` (ascending); `None` with fewer than 3 intervals.
pub fn score(ts: &[u64]) -> Option<Score> {
    let mut d: Vec<u64> = ts.windows(2).map(|w| w[1].saturating_sub(w[0])).collect();
    if d.len() < 3 {
        return None;
    }
    d.sort_unstable();
    let (q1, q2, q3) = (quantile(&d, 0.25), quantile(&d, 0.5), quantile(&d, 0.75));
    let skew = if q3 > q1 && q2 > q1 && q3 > q2 {
        (q1 + q3 - 2.0 * q2) / (q3 - q1)
    } else {
        0.0
    };
    let mut dev: Vec<u64> = d.iter().map(|x| (*x as f64 - q2).abs() as u64).collect();
    dev.sort_unstable();
    let madm = quantile(&dev, 0.5);
    let dispersion = if q2 > 0.0 { madm / q2 } else { 1.0 };
    let spread = if q2 > 0.0 { (q3 - q1) / q2 } else { 1.0 };
    let skew_weight = (spread / SKEW_TOLERANCE).min(1.0);
    let score = ((1.0 - skew.abs() * skew_weight) + (1.0 - dispersion).max(0.0)) / 2.0;
    Some(Score {
        skew,
        dispersion,
        median_ns: q2 as u64,
        score,
    })
}

impl Beaconing {
    /// An outbound connection from `ev.comm` to `ev.remote`.
    pub fn observe(&mut self, rules: &Rules, ev: &ConnEvent, now: u64) -> Option<Finding> {
        let cfg = &rules.beaconing;
        if !cfg.enabled
            || ev.comm.is_empty()
            || rules.allow.process(&ev.comm)
            || rules.allow.ip(ev.remote.ip())
            || rules.allow.port(ev.remote.port())
        {
            return None;
        }
        let key = (ev.comm, ev.remote);
        if !self.series.contains_key(&key) && self.series.len() >= MAX_SOURCES {
            return None;
        }
        let ts = self.series.entry(key).or_default();
        ts.push_back(now);
        let window = cfg.window.as_nanos() as u64;
        while ts.len() > KEEP || ts.front().is_some_and(|t| now.saturating_sub(*t) > window) {
            ts.pop_front();
        }
        let span = now.saturating_sub(*ts.front()?);
        if ts.len() < cfg.min_connections || span < cfg.min_duration.as_nanos() as u64 {
            return None;
        }
        let s = score(ts.make_contiguous())?;
        if !s.is_beacon(cfg.min_score) {
            return None;
        }
        let period = std::time::Duration::from_nanos(s.median_ns);
        Some(Finding {
            rule: RuleId::Beaconing,
            key: format!("{}>{}", ev.comm, ev.remote),
            message: format!(
                "Beaconing: {} connects to {} every {} (score {:.2}, {} connections over {})",
                owner(ev.pid, &ev.comm),
                ev.remote,
                humantime::format_duration(round_ms(period)),
                s.score,
                ts.len(),
                humantime::format_duration(round_ms(std::time::Duration::from_nanos(span))),
            ),
            source_ip: Some(ev.local.ip()),
            first_ns: *ts.front()?,
            evidence: json!({
                "pid": ev.pid,
                "process": String::from_utf8_lossy(ev.comm.as_bytes()),
                "destination": ev.remote.to_string(),
                "connections": ts.len(),
                "period_ms": s.median_ns / 1_000_000,
                "skew": (s.skew * 1000.0).round() / 1000.0,
                "dispersion": (s.dispersion * 1000.0).round() / 1000.0,
                "score": (s.score * 1000.0).round() / 1000.0,
            }),
        })
    }

    /// Forgets destinations not contacted within the window.
    pub fn expire(&mut self, rules: &Rules, now: u64) {
        let window = rules.beaconing.window.as_nanos() as u64;
        self.series
            .retain(|_, ts| ts.back().is_some_and(|t| now.saturating_sub(*t) <= window));
    }
}

fn round_ms(d: std::time::Duration) -> std::time::Duration {
    std::time::Duration::from_millis(d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn a_steady_period_scores_high_and_random_intervals_low() {
        // 30 s ± 10 % (a fixed jitter pattern).
        let jitter = [0.0, 0.08, -0.05, 0.1, -0.1, 0.03, -0.07, 0.06, -0.02, 0.09];
        let mut t = 0u64;
        let mut steady = vec![t];
        for i in 0..20 {
            t += ((30.0 + 30.0 * jitter[i % jitter.len()]) * S as f64) as u64;
            steady.push(t);
        }
        let s = score(&steady).unwrap();
        assert!(s.score > 0.8, "{s:?}");
        assert_eq!(s.median_ns / S, 30);
        // Intervals spread over two orders of magnitude.
        let gaps = [
            1, 40, 3, 90, 7, 2, 60, 15, 1, 120, 5, 30, 2, 75, 9, 4, 50, 1, 20, 3,
        ];
        let mut t = 0u64;
        let mut random = vec![t];
        for g in gaps {
            t += g * S;
            random.push(t);
        }
        let r = score(&random).unwrap();
        assert!(r.score < 0.6, "{r:?}");
        assert!(score(&[0, 1, 2]).is_none());
        assert!(s.is_beacon(0.8));
        assert!(!r.is_beacon(0.5));
    }

    #[test]
    fn symmetric_but_wide_intervals_are_no_beacon() {
        // Gaps spread evenly over 20..800 ms, in a shuffled order: the quartiles
        // are symmetric (skew 0), so the score alone reaches 0.75, but the gaps
        // wander by half their median.
        let gaps = [
            410, 20, 800, 215, 605, 118, 703, 313, 508, 69, 752, 166, 654, 264, 459, 362, 557,
        ];
        let mut t = 0u64;
        let mut ts = vec![t];
        for g in gaps {
            t += g * 1_000_000;
            ts.push(t);
        }
        let r = score(&ts).unwrap();
        assert!(r.skew.abs() < 0.05, "{r:?}");
        assert!(r.dispersion > 0.4, "{r:?}");
        assert!(r.score > 0.7, "{r:?}");
        assert!(!r.is_beacon(0.7), "{r:?}");
        // 50 % sleep jitter: intervals over [P/2, P], still a beacon.
        let mut t = 0u64;
        let mut jittered = vec![t];
        for i in 0..20u64 {
            t += 30 * S / 2 + (i * 7 % 20) * 30 * S / 40;
            jittered.push(t);
        }
        let j = score(&jittered).unwrap();
        assert!(j.dispersion < MAX_DISPERSION, "{j:?}");
        assert!(j.is_beacon(0.7), "{j:?}");
    }
}
