//! What detection reports: a rule, a severity and structured evidence.
use std::net::IpAddr;

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum RuleId {
    UnusualHighPort,
    HighConnectionCount,
    PortScan,
    SynFlood,
    ConnectionBurst,
    FanOut,
    NewListener,
    LargeOutbound,
    AbnormalState,
    NewDestination,
    Beaconing,
}

impl RuleId {
    /// Every rule, in the order above.
    pub const ALL: [RuleId; 11] = [
        RuleId::UnusualHighPort,
        RuleId::HighConnectionCount,
        RuleId::PortScan,
        RuleId::SynFlood,
        RuleId::ConnectionBurst,
        RuleId::FanOut,
        RuleId::NewListener,
        RuleId::LargeOutbound,
        RuleId::AbnormalState,
        RuleId::NewDestination,
        RuleId::Beaconing,
    ];

    pub fn id(self) -> &'static str {
        match self {
            RuleId::UnusualHighPort => "unusual-high-port",
            RuleId::HighConnectionCount => "high-connection-count",
            RuleId::PortScan => "port-scan",
            RuleId::SynFlood => "syn-flood",
            RuleId::ConnectionBurst => "connection-burst",
            RuleId::FanOut => "fan-out",
            RuleId::NewListener => "new-listener",
            RuleId::LargeOutbound => "large-outbound",
            RuleId::AbnormalState => "abnormal-state",
            RuleId::NewDestination => "new-destination",
            RuleId::Beaconing => "beaconing",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            RuleId::UnusualHighPort => "Unusual high port",
            RuleId::HighConnectionCount => "High connection count",
            RuleId::PortScan => "Port scan",
            RuleId::SynFlood => "SYN flood",
            RuleId::ConnectionBurst => "Connection burst",
            RuleId::FanOut => "Fan-out to many hosts",
            RuleId::NewListener => "New listener",
            RuleId::LargeOutbound => "Large outbound transfer",
            RuleId::AbnormalState => "Abnormal connection states",
            RuleId::NewDestination => "New destination",
            RuleId::Beaconing => "Beaconing",
        }
    }

    /// One sentence on what the rule looks for (`rule.description`).
    pub fn description(self) -> &'static str {
        match self {
            RuleId::UnusualHighPort => {
                "A connection to or from a high port that no known service uses."
            }
            RuleId::HighConnectionCount => "One remote address holds many connections at once.",
            RuleId::PortScan => "One source tries many distinct ports within a short window.",
            RuleId::SynFlood => "Many half-open connections (SYN received, never established).",
            RuleId::ConnectionBurst => "One source opens connections at a very high rate.",
            RuleId::FanOut => "One process connects to many distinct hosts within a short window.",
            RuleId::NewListener => "A port started listening after netta started.",
            RuleId::LargeOutbound => "One connection sent an unusually large amount of data out.",
            RuleId::AbnormalState => "Many connections stuck in unusual TCP states.",
            RuleId::NewDestination => {
                "A process connected out to a network and port it never used before (after learning)."
            }
            RuleId::Beaconing => {
                "A process connects to one destination at a steady period (command and control)."
            }
        }
    }

    /// How bad what the rule finds is: the same for all its findings.
    pub fn severity(self) -> Severity {
        match self {
            RuleId::UnusualHighPort | RuleId::AbnormalState => Severity::Low,
            RuleId::HighConnectionCount
            | RuleId::ConnectionBurst
            | RuleId::FanOut
            | RuleId::NewListener
            | RuleId::NewDestination => Severity::Medium,
            RuleId::PortScan | RuleId::SynFlood | RuleId::LargeOutbound | RuleId::Beaconing => {
                Severity::High
            }
        }
    }

    /// The MITRE ATT&CK tactic and technique the rule watches for.
    pub fn attack(self) -> Attack {
        const DISCOVERY: (&str, &str) = ("TA0007", "Discovery");
        const IMPACT: (&str, &str) = ("TA0040", "Impact");
        const EXFILTRATION: (&str, &str) = ("TA0010", "Exfiltration");
        const C2: (&str, &str) = ("TA0011", "Command and Control");
        let (tactic, technique) = match self {
            RuleId::UnusualHighPort | RuleId::NewListener => (C2, ("T1571", "Non-Standard Port")),
            RuleId::PortScan | RuleId::AbnormalState => {
                (DISCOVERY, ("T1046", "Network Service Discovery"))
            }
            RuleId::FanOut => (DISCOVERY, ("T1018", "Remote System Discovery")),
            RuleId::SynFlood => (IMPACT, ("T1498", "Network Denial of Service")),
            RuleId::HighConnectionCount | RuleId::ConnectionBurst => {
                (IMPACT, ("T1499", "Endpoint Denial of Service"))
            }
            RuleId::LargeOutbound => (
                EXFILTRATION,
                ("T1048", "Exfiltration Over Alternative Protocol"),
            ),
            RuleId::NewDestination | RuleId::Beaconing => {
                (C2, ("T1071", "Application Layer Protocol"))
            }
        };
        Attack { tactic, technique }
    }
}

/// A rule's place in MITRE ATT&CK: (id, name) of its tactic and technique.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attack {
    pub tactic: (&'static str, &'static str),
    pub technique: (&'static str, &'static str),
}

impl Attack {
    pub fn technique_url(&self) -> String {
        format!("https://attack.mitre.org/techniques/{}/", self.technique.0)
    }

    pub fn tactic_url(&self) -> String {
        format!("https://attack.mitre.org/tactics/{}/", self.tactic.0)
    }
}

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum Severity {
    Low,
    Medium,
    High,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
        }
    }

    /// ECS `event.severity` (0-100, Elastic's low/medium/high risk scores).
    pub fn score(self) -> u8 {
        match self {
            Severity::Low => 21,
            Severity::Medium => 47,
            Severity::High => 73,
        }
    }
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Alert {
    pub rule: RuleId,
    pub severity: Severity,
    /// What the incident is about (a source IP, a port, a pid): one alert per key.
    pub key: String,
    /// One line for the text view, hostile strings already escaped.
    pub message: String,
    pub source_ip: Option<IpAddr>,
    pub first_ns: u64,
    pub last_ns: u64,
    /// Times evidence arrived for this incident.
    pub updates: u64,
    /// The incident ended (quiet for `rearm_after`): this is its final state.
    pub ended: bool,
    pub evidence: serde_json::Value,
}

/// A finding before incident bookkeeping: what one rule saw.
/// Its severity is the rule's ([`RuleId::severity`]).
pub(super) struct Finding {
    pub rule: RuleId,
    pub key: String,
    pub message: String,
    pub source_ip: Option<IpAddr>,
    pub first_ns: u64,
    pub evidence: serde_json::Value,
}
