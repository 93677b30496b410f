//! Incidents shared by every rule: a finding opens one per (rule, key), later
//! evidence updates it, and it ends (and re-arms) after a quiet period.
use std::collections::VecDeque;

use rustc_hash::FxHashMap;

use super::alert::{Alert, Finding, RuleId};

const MAX_ENDED: usize = 1000;

#[derive(Default)]
pub(super) struct Incidents {
    open: FxHashMap<(RuleId, String), Alert>,
    /// Ended incidents, newest last (bounded), for the report view.
    ended: VecDeque<Alert>,
}

impl Incidents {
    pub fn is_open(&self, rule: RuleId, key: &str) -> bool {
        self.open.contains_key(&(rule, key.to_string()))
    }

    /// Records a finding; returns the alert only when it opens a new incident.
    pub fn fire(&mut self, f: Finding, now: u64) -> Option<Alert> {
        let k = (f.rule, f.key.clone());
        if let Some(a) = self.open.get_mut(&k) {
            a.last_ns = now;
            a.updates += 1;
            a.message = f.message;
            a.evidence = f.evidence;
            return None;
        }
        let alert = Alert {
            rule: f.rule,
            severity: f.rule.severity(),
            key: f.key,
            message: f.message,
            source_ip: f.source_ip,
            first_ns: f.first_ns.min(now),
            last_ns: now,
            updates: 1,
            ended: false,
            evidence: f.evidence,
        };
        self.open.insert(k, alert.clone());
        Some(alert)
    }

    /// Ends the incidents quiet for `quiet` ns and returns them in their final state.
    pub fn end_quiet(&mut self, now: u64, quiet: u64) -> Vec<Alert> {
        let mut closed = Vec::new();
        let ended: Vec<_> = self
            .open
            .iter()
            .filter(|(_, a)| a.last_ns + quiet < now)
            .map(|(k, _)| k.clone())
            .collect();
        for k in ended {
            if let Some(mut a) = self.open.remove(&k) {
                a.ended = true;
                if self.ended.len() >= MAX_ENDED {
                    self.ended.pop_front();
                }
                self.ended.push_back(a.clone());
                closed.push(a);
            }
        }
        closed
    }

    /// Every incident since start: open ones and ended ones, oldest first.
    pub fn all(&self) -> Vec<Alert> {
        let mut v: Vec<Alert> = self.ended.iter().cloned().collect();
        v.extend(self.open.values().cloned());
        v.sort_by(|a, b| (a.first_ns, a.rule, &a.key).cmp(&(b.first_ns, b.rule, &b.key)));
        v
    }
}
