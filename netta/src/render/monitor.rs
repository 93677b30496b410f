//! The monitor's text: its intro, periodic line and closing summary.
use std::fmt::Write as _;
use std::time::Duration;

use crate::core::format::go_duration;

#[derive(Clone, Copy, Debug)]
pub struct Options {
    pub duration: Duration,
    pub interval: Duration,
    pub json: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    pub duration_ms: u64,
    /// Connections alive at the start plus every one opened, failed or flowing since.
    pub unique_connections: u64,
    /// Closed connections that lived shorter than one interval: a poll at that
    /// interval could have missed them.
    pub shorter_than_interval: u64,
    pub opened: u64,
    pub closed: u64,
    pub failed: u64,
    pub lost: u64,
    pub alerts: u64,
}

/// Local wall-clock `HH:MM:SS`.
pub fn local_hms(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as libc::time_t)
        .unwrap_or(0);
    // SAFETY: localtime_r writes into the zeroed struct we own.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    if unsafe { libc::localtime_r(&secs, &mut tm) }.is_null() {
        return "??:??:??".into();
    }
    format!("{:02}:{:02}:{:02}", tm.tm_hour, tm.tm_min, tm.tm_sec)
}

pub fn intro(opts: &Options) -> String {
    format!(
        "Monitoring network traffic for {} (updating every {})\nPress Ctrl+C to stop monitoring\n{}\n\n",
        go_duration(opts.duration),
        go_duration(opts.interval),
        crate::render::list::light_rule()
    )
}

pub fn render_summary(s: &Summary, interval: Duration) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\n✓ Monitoring complete\n");
    let _ = writeln!(out, "Monitoring Summary:");
    let _ = writeln!(
        out,
        "  Duration: {}",
        go_duration(Duration::from_millis(s.duration_ms))
    );
    let _ = writeln!(
        out,
        "  Unique connections observed: {}",
        s.unique_connections
    );
    let _ = writeln!(
        out,
        "  Lived shorter than {} (a {} poll could miss them): {}",
        go_duration(interval),
        go_duration(interval),
        s.shorter_than_interval
    );
    let _ = writeln!(
        out,
        "  Opened: {} | Closed: {} | Failed: {} | Alerts: {} | Lost events: {}",
        s.opened, s.closed, s.failed, s.alerts, s.lost
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_like_go() {
        assert_eq!(go_duration(Duration::from_secs(60)), "1m0s");
        assert_eq!(go_duration(Duration::from_secs(6)), "6s");
        assert_eq!(go_duration(Duration::from_millis(4500)), "4.5s");
        assert_eq!(go_duration(Duration::from_secs(3723)), "1h2m3s");
    }

    #[test]
    fn summary_renders_the_originals_lines() {
        let s = Summary {
            duration_ms: 60_000,
            unique_connections: 15,
            shorter_than_interval: 9,
            ..Default::default()
        };
        let text = render_summary(&s, Duration::from_secs(2));
        assert!(text.contains("✓ Monitoring complete"));
        assert!(text.contains(
            "Monitoring Summary:\n  Duration: 1m0s\n  Unique connections observed: 15\n"
        ));
        assert!(text.contains("Lived shorter than 2s (a 2s poll could miss them): 9"));
        assert_eq!(
            intro(&Options {
                duration: Duration::from_secs(60),
                interval: Duration::from_secs(2),
                json: false
            })
            .lines()
            .next(),
            Some("Monitoring network traffic for 1m0s (updating every 2s)")
        );
    }
}
