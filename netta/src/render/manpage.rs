//! Man pages in section 8, one per command (`netta(8)`, `netta-list(8)`, ...),
//! from the clap definitions: clap_mangen's NAME, SYNOPSIS, DESCRIPTION, OPTIONS
//! and SUBCOMMANDS, then EXIT STATUS, ENVIRONMENT, FILES and SEE ALSO, made from
//! the defaults (`settings::defaults`) and the names of the variables and files
//! the code itself reads, so the pages cannot drift from the program.
use clap_mangen::roff::{bold, italic, roman, Inline, Roff};

use crate::host::{btf, ebpf, identity, notify, probe, services, tracefs};
use crate::render::style;
use crate::settings::defaults;

pub const SECTION: &str = "8";

/// One page: its name (`netta-list`), file name (`netta-list.8`) and roff text.
pub struct Page {
    pub name: String,
    pub roff: String,
}

impl Page {
    pub fn file_name(&self) -> String {
        format!("{}.{SECTION}", self.name)
    }
}

/// What a command does with the machine, for the pages' ENVIRONMENT and FILES.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `completions`, `manpage`: print text, read nothing.
    Text,
    /// `doctor`: loads the programs, reads no agent.
    Doctor,
    /// `agent`: serves the API, writes the store, talks to systemd.
    Agent,
    /// Everything else: a view on the agent, or on an agent of its own.
    View,
}

fn kind(path: &str) -> Kind {
    let first = path.split('-').nth(1).unwrap_or("");
    match first {
        "completions" | "manpage" => Kind::Text,
        "doctor" => Kind::Doctor,
        "agent" => Kind::Agent,
        _ => Kind::View,
    }
}

/// `netta` and every visible command under it (nested ones too), in order.
pub fn pages(cli: clap::Command) -> std::io::Result<Vec<Page>> {
    let mut root = cli.disable_help_subcommand(true);
    root.build();
    let mut cmds = Vec::new();
    collect(&root, &mut cmds);
    let names: Vec<String> = cmds.iter().map(name_of).collect();
    cmds.iter()
        .map(|c| {
            let name = name_of(c);
            let mut out = Vec::new();
            clap_mangen::Man::new(c.clone())
                .title(name.to_uppercase())
                .section(SECTION)
                .manual("System Administration")
                .source(format!("netta {}", env!("CARGO_PKG_VERSION")))
                .render(&mut out)?;
            let mut extra = Roff::new();
            sections(&mut extra, &name, &names);
            let mut roff = String::from_utf8_lossy(&out).into_owned();
            roff.push_str(&extra.render());
            Ok(Page { name, roff })
        })
        .collect()
}

fn name_of(c: &clap::Command) -> String {
    c.get_display_name().unwrap_or(c.get_name()).to_string()
}

fn collect(c: &clap::Command, out: &mut Vec<clap::Command>) {
    out.push(c.clone());
    for sub in c.get_subcommands().filter(|s| !s.is_hide_set()) {
        collect(sub, out);
    }
}

/// `.TP` items: a bold term, then its text.
fn items(roff: &mut Roff, list: &[(String, String)]) {
    for (term, text) in list {
        roff.control("TP", []);
        roff.text([bold(term.as_str())]);
        roff.text([roman(text.as_str())]);
    }
}

fn sections(roff: &mut Roff, name: &str, all: &[String]) {
    let k = kind(name);
    roff.control("SH", ["EXIT STATUS"]);
    let status: Vec<(String, String)> = match k {
        Kind::Doctor => vec![
            ("0".into(), "Full eBPF mode: every capability has a working hook.".into()),
            (
                "1".into(),
                "Anything less: a capability is degraded, or eBPF cannot load and netta would poll /proc (the report says why).".into(),
            ),
            ("2".into(), "Usage or configuration error (a bad flag, a bad config or rules file).".into()),
        ],
        _ => vec![
            ("0".into(), "Success.".into()),
            (
                "1".into(),
                match k {
                    Kind::Text => "The text could not be written.".into(),
                    Kind::Agent => "Runtime error: a sink that cannot be opened, a metrics address in use, a sink that failed. systemd restarts the unit (Restart=on-failure).".into(),
                    _ => "Runtime error, for example an unwritable export path or no agent to ask (netta history).".into(),
                },
            ),
            (
                "2".into(),
                if k == Kind::Agent {
                    "Usage or configuration error (a bad flag, a bad config or rules file); the shipped unit does not restart on it (RestartPreventExitStatus=2).".into()
                } else {
                    "Usage or configuration error (a bad flag, a bad config or rules file).".into()
                },
            ),
        ],
    };
    items(roff, &status);

    roff.control("SH", ["ENVIRONMENT"]);
    let mut env: Vec<(String, String)> = Vec::new();
    if k == Kind::Text {
        roff.text([roman("None is read.")]);
    } else {
        if k != Kind::Doctor {
            env.push((
                defaults::API_ENV.into(),
                format!(
                    "The agent's API socket when --api is not given (default {}). {}",
                    defaults::API_SOCKET,
                    if k == Kind::Agent {
                        "Read by clients; the agent serves --api, the config file's api, or the default."
                    } else {
                        "The command attaches to the agent there; without one it runs its own (see --standalone)."
                    }
                ),
            ));
        }
        if k == Kind::View {
            env.push((
                style::NO_COLOR.into(),
                "Set and not empty: no colour in text output or in netta top.".into(),
            ));
        }
        env.push((
            probe::DISABLE_HOOKS_ENV.into(),
            "Kernel hooks to rule out, comma-separated labels or prefixes (fexit, tracepoint:sock:sock_recv_length), to exercise the fallbacks; netta doctor shows the result.".into(),
        ));
        if k != Kind::Doctor {
            env.push((
                ebpf::BPF_STATS_ENV.into(),
                "Set: print each eBPF program's kernel run time at exit (with the sysctl kernel.bpf_stats_enabled=1).".into(),
            ));
            env.push((
                probe::NO_IDENTITY_ENV.into(),
                "1: no process identity (no exec, fork and exit hooks, no uid or cgroup in records, no process lookup), to measure what it costs (cargo xtask bench --only features).".into(),
            ));
            env.push((
                env_logger::DEFAULT_FILTER_ENV.into(),
                "Log filter for the messages on stderr (env_logger syntax, for example debug); overrides -v.".into(),
            ));
        }
        if k == Kind::Agent {
            env.push((
                notify::NOTIFY_SOCKET.into(),
                "Set by systemd (Type=notify): READY=1 is sent there once the programs are attached and the table is seeded, STOPPING=1 on the way out.".into(),
            ));
            env.push((
                format!("{}, {}", notify::WATCHDOG_USEC, notify::WATCHDOG_PID),
                "Set by systemd (WatchdogSec=): WATCHDOG=1 is sent every half period.".into(),
            ));
        }
        items(roff, &env);
    }

    roff.control("SH", ["FILES"]);
    if k == Kind::Text {
        roff.text([roman("None is read.")]);
    } else {
        let mut files: Vec<(String, String)> = vec![(
            defaults::CONFIG_PATH.into(),
            "The configuration file, read when present (--config FILE names another; an error in it is exit status 2). Flags override it.".into(),
        )];
        files.push((
            "--rules FILE".into(),
            "The detection rules file (thresholds, windows, allowlists), when --rules or the config file's rules names one; none by default.".into(),
        ));
        if k != Kind::Doctor {
            files.push((
                defaults::API_SOCKET.into(),
                if k == Kind::Agent {
                    "The local API socket the agent serves (mode 0660), which views attach to."
                        .into()
                } else {
                    "The agent's local API socket, attached to unless --standalone.".into()
                },
            ));
            files.push((
                format!("{}/{}", defaults::STATE_DIR, defaults::HISTORY_FILE),
                if k == Kind::Agent {
                    "The history store (SQLite, with its -wal file) in the state directory (--state-dir, state_dir); kept within --retention-age and --retention-size, none with --no-store.".into()
                } else {
                    "The agent's history store: read through the agent, or directly by a standalone view (state_dir in the config file) and by --store FILE.".into()
                },
            ));
        }
        if k != Kind::Doctor {
            files.push((
                "/proc/net/tcp, tcp6, udp, udp6; /proc/PID/fd".into(),
                "The socket tables and their owners: the table is seeded from them and healed every --reconcile-interval, or polled without eBPF.".into(),
            ));
        }
        files.push((
            tracefs::TRACEFS.into(),
            "tracefs: tracepoint formats and ids (mounted here when missing, with CAP_SYS_ADMIN)."
                .into(),
        ));
        files.push((
            btf::KERNEL_BTF.into(),
            "The kernel's BTF: struct offsets and the hooks it offers.".into(),
        ));
        if k != Kind::Doctor {
            files.push((services::SERVICES_PATH.into(), "Port names.".into()));
            files.push((
                identity::MACHINE_ID.into(),
                "host.id of event lines (and, hashed, agent.id).".into(),
            ));
        }
        items(roff, &files);
    }

    roff.control("SH", ["SEE ALSO"]);
    let mut refs: Vec<Inline> = Vec::new();
    for other in all.iter().filter(|n| n.as_str() != name) {
        if !refs.is_empty() {
            refs.push(roman(", "));
        }
        refs.push(bold(other.as_str()));
        refs.push(roman(format!("({SECTION})")));
    }
    for (page, sec) in [("ss", "8"), ("systemd.service", "5")] {
        refs.push(roman(", "));
        refs.push(bold(page));
        refs.push(roman(format!("({sec})")));
    }
    roff.text(refs);
    roff.control("PP", []);
    roff.text([
        roman("The event format, sinks and operations: "),
        italic("docs/events.md"),
        roman(" and "),
        italic("docs/operations.md"),
        roman(" in the netta sources."),
    ]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// The sections every page has after clap_mangen's.
    const SECTIONS: [&str; 4] = ["EXIT STATUS", "ENVIRONMENT", "FILES", "SEE ALSO"];

    #[test]
    fn every_command_has_a_page_with_the_operator_sections() {
        let pages = pages(crate::settings::cli::Cli::command()).unwrap();
        let names: Vec<&str> = pages.iter().map(|p| p.name.as_str()).collect();
        for want in [
            "netta",
            "netta-events",
            "netta-list",
            "netta-agent",
            "netta-doctor",
            "netta-history",
            "netta-baseline",
            "netta-baseline-show",
        ] {
            assert!(names.contains(&want), "{want} missing from {names:?}");
        }
        assert!(!names
            .iter()
            .any(|n| n.contains("bench") || n.ends_with("-help")));
        for p in &pages {
            assert!(
                p.roff
                    .contains(&format!("\n.TH {} 8 ", p.name.to_uppercase())),
                "{}",
                p.name
            );
            for s in SECTIONS {
                assert!(
                    p.roff.contains(&format!(".SH \"{s}\""))
                        || p.roff.contains(&format!(".SH {s}")),
                    "{} lacks {s}",
                    p.name
                );
            }
        }
        let page = |n: &str| &pages.iter().find(|p| p.name == n).unwrap().roff;
        // The defaults and variables the code uses, not copies.
        let agent = page("netta-agent");
        for s in [
            defaults::CONFIG_PATH,
            defaults::API_SOCKET,
            defaults::STATE_DIR,
            notify::NOTIFY_SOCKET,
        ] {
            assert!(
                agent.contains(&s.replace('-', "\\-")),
                "agent page lacks {s}"
            );
        }
        assert!(page("netta-doctor").contains("Full eBPF mode"));
        assert!(page("netta-list").contains(defaults::API_ENV));
        assert!(page("netta-events").contains("\\-\\-dport"));
    }
}
