//! Draws `netta top` (ratatui) from its state, `core::top::Top`: header,
//! connections / processes / alerts, the detail pane, the filter prompt and the
//! help. Drawing only: nothing here computes a figure. Process names are
//! escaped (`Comm`'s `Display`); colour only when `color` (NO_COLOR honoured by
//! the caller).
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Clear, Paragraph, Row, Sparkline, Table, TableState};
use ratatui::Frame;

use crate::core::format::{duration, human_bytes, owner};
use crate::core::top::{Pane, Row as TopRow, Top};

/// `1.2 MiB/s`, `0 B/s`.
fn rate(n: u64) -> String {
    format!("{}/s", human_bytes(n))
}

struct Look {
    color: bool,
}

impl Look {
    fn title(&self) -> Style {
        if self.color {
            Style::default()
                .add_modifier(Modifier::BOLD)
                .fg(Color::Cyan)
        } else {
            Style::default()
        }
    }
    fn head(&self) -> Style {
        if self.color {
            Style::default().add_modifier(Modifier::BOLD | Modifier::REVERSED)
        } else {
            Style::default().add_modifier(Modifier::UNDERLINED)
        }
    }
    fn selected(&self) -> Style {
        Style::default().add_modifier(Modifier::REVERSED)
    }
    fn warn(&self) -> Style {
        if self.color {
            Style::default().fg(Color::Yellow)
        } else {
            Style::default()
        }
    }
}

pub fn draw(f: &mut Frame, top: &mut Top, color: bool) {
    let look = Look { color };
    let [head, body, foot] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(f.area());
    header(f, head, top, &look);
    match top.pane {
        Pane::Connections if top.detail => {
            let [list, detail_area] =
                Layout::vertical([Constraint::Percentage(50), Constraint::Percentage(50)])
                    .areas(body);
            connections(f, list, top, &look);
            detail(f, detail_area, top, &look);
        }
        Pane::Connections => connections(f, body, top, &look),
        Pane::Processes => processes(f, body, top, &look),
        Pane::Alerts => alerts(f, body, top, &look),
    }
    footer(f, foot, top, &look);
    if top.help {
        let area = f.area();
        help(f, area, &look);
    }
}

fn header(f: &mut Frame, area: Rect, top: &Top, look: &Look) {
    let h = &top.header;
    let mut first = vec![
        Span::styled("netta top", look.title()),
        Span::raw(format!("  {}  up {}", h.mode, duration(h.uptime_ns))),
        Span::raw(format!("  sort:{}", top.sort.name())),
    ];
    if !top.filter_text.is_empty() {
        first.push(Span::raw(format!("  filter:{}", top.filter_text)));
    }
    if top.paused {
        first.push(Span::styled("  [paused]", look.warn()));
    }
    let loss = if h.lost + h.evicted > 0 {
        look.warn()
    } else {
        Style::default()
    };
    let second = Line::from(format!(
        "new {:.1}/s  close {:.1}/s  fail {:.1}/s  in {}  out {}",
        h.new_per_s,
        h.closes_per_s,
        h.failed_per_s,
        rate(h.in_per_s),
        rate(h.out_per_s),
    ));
    let third = Line::from(vec![
        Span::raw(format!("live {}  listening {}  ", h.live, h.listening)),
        Span::styled(format!("lost {}  evicted {}", h.lost, h.evicted), loss),
    ]);
    f.render_widget(Paragraph::new(vec![Line::from(first), second, third]), area);
}

fn remote_text(top: &Top, r: &TopRow) -> String {
    if !r.has_peer {
        return "*".into();
    }
    match top.service(r) {
        Some(s) => format!("{} ({s})", r.remote),
        None => r.remote.to_string(),
    }
}

/// A column of the connections table: its title, width, and how much it matters
/// when the screen is narrow (0 first).
struct Column {
    title: &'static str,
    width: u16,
    priority: u8,
    cell: fn(&Top, &TopRow) -> String,
}

fn dash_if_zero(n: u32, text: impl FnOnce() -> String) -> String {
    if n == 0 {
        "-".into()
    } else {
        text()
    }
}

const COLUMNS: [Column; 11] = [
    Column {
        title: "PROCESS",
        width: 15,
        priority: 0,
        cell: |_, r| {
            if r.comm.is_empty() {
                "-".into()
            } else {
                r.comm.to_string()
            }
        },
    },
    Column {
        title: "PID",
        width: 7,
        priority: 6,
        cell: |_, r| dash_if_zero(r.pid, || r.pid.to_string()),
    },
    // The local address, or only its port where the screen is narrow.
    Column {
        title: "LOCAL",
        width: 21,
        priority: 10,
        cell: |_, r| r.local.to_string(),
    },
    Column {
        title: "LPORT",
        width: 6,
        priority: 4,
        cell: |_, r| r.local.port().to_string(),
    },
    Column {
        title: "REMOTE",
        width: 22,
        priority: 1,
        cell: remote_text,
    },
    Column {
        title: "STATE",
        width: 11,
        priority: 7,
        cell: |_, r| r.state.name().into(),
    },
    Column {
        title: "IN/s",
        width: 10,
        priority: 3,
        cell: |_, r| rate(r.rate_in),
    },
    Column {
        title: "OUT/s",
        width: 10,
        priority: 2,
        cell: |_, r| rate(r.rate_out),
    },
    Column {
        title: "TOTAL",
        width: 9,
        priority: 5,
        cell: |_, r| human_bytes(r.total()),
    },
    Column {
        title: "AGE",
        width: 6,
        priority: 8,
        cell: |_, r| r.age_ns.map_or("-".into(), duration),
    },
    Column {
        title: "RTT",
        width: 6,
        priority: 9,
        cell: |_, r| dash_if_zero(r.rtt_us, || duration(u64::from(r.rtt_us) * 1000)),
    },
];

/// The columns that fit `width`, most important first, shown in table order.
fn columns_for(width: u16) -> Vec<&'static Column> {
    let mut by_priority: Vec<usize> = (0..COLUMNS.len()).collect();
    by_priority.sort_by_key(|i| COLUMNS[*i].priority);
    let mut chosen = Vec::new();
    let mut used = 0u16;
    for i in by_priority {
        let c = &COLUMNS[i];
        let need = c.width + u16::from(!chosen.is_empty());
        if used + need > width {
            continue;
        }
        used += need;
        chosen.push(i);
    }
    // The full local address makes its port column redundant.
    if chosen.iter().any(|i| COLUMNS[*i].title == "LOCAL") {
        chosen.retain(|i| COLUMNS[*i].title != "LPORT");
    }
    chosen.sort_unstable();
    chosen.into_iter().map(|i| &COLUMNS[i]).collect()
}

/// The first row to show so that `selected` is in a window of `height` rows,
/// moving `offset` as little as possible (as ratatui's own scrolling does).
fn window(offset: usize, selected: usize, len: usize, height: usize) -> usize {
    let height = height.max(1);
    let offset = offset.min(len.saturating_sub(1));
    if selected < offset {
        selected
    } else if selected >= offset + height {
        selected + 1 - height
    } else {
        offset
    }
}

/// Rows a table fits in `area` under a top border and its header line.
fn table_rows(area: Rect) -> usize {
    usize::from(area.height.saturating_sub(2))
}

fn connections(f: &mut Frame, area: Rect, top: &mut Top, look: &Look) {
    let cols = columns_for(area.width);
    let head = Row::new(cols.iter().map(|c| c.title)).style(look.head());
    // Only the rows on screen are formatted: a frame costs the same with 10
    // connections or 100,000.
    let height = table_rows(area);
    let offset = window(top.offset, top.selected, top.rows.len(), height);
    let end = (offset + height).min(top.rows.len());
    let shown = &top.rows[offset.min(end)..end];
    let rows = shown
        .iter()
        .map(|r| Row::new(cols.iter().map(|c| Cell::from((c.cell)(top, r)))));
    let widths: Vec<Constraint> = cols
        .iter()
        .map(|c| {
            if c.title == "REMOTE" {
                Constraint::Min(c.width)
            } else {
                Constraint::Length(c.width)
            }
        })
        .collect();
    let title = format!(" Connections ({}) ", top.rows.len());
    let table = Table::new(rows, widths)
        .header(head)
        .block(Block::default().borders(Borders::TOP).title(title))
        .column_spacing(1)
        .row_highlight_style(look.selected());
    let mut state = TableState::default()
        .with_selected((!shown.is_empty()).then_some(top.selected.saturating_sub(offset)));
    f.render_stateful_widget(table, area, &mut state);
    top.offset = offset;
}

/// Who owns the selected connection and where: user, executable, parent, age;
/// network namespace, container, pod and process entity id. (Escaped text only.)
fn owner_lines(r: &crate::core::top::Row, top: &Top) -> [Line<'static>; 2] {
    static NOBODY: std::sync::LazyLock<crate::core::event::Who> =
        std::sync::LazyLock::new(Default::default);
    let now_ns = top.now_ns;
    let w = top.owner(r).unwrap_or(&NOBODY);
    let p = w.process.as_deref();
    let user = match (&w.user, w.uid) {
        (Some(n), Some(u)) => format!("{n} ({u})"),
        _ => crate::render::list::user_cell(w),
    };
    let up = p
        .filter(|p| p.start_ns != 0 && p.start_ns <= now_ns)
        .map_or("-".into(), |p| duration(now_ns - p.start_ns));
    let parent = p
        .filter(|p| p.ppid != 0)
        .map_or("-".into(), |p| p.ppid.to_string());
    let netns = if r.netns == 0 {
        "-".to_string()
    } else {
        r.netns.to_string()
    };
    [
        Line::from(format!(
            "user {user}  exe {}  parent {parent}  up {up}",
            w.executable().unwrap_or("-")
        )),
        Line::from(format!(
            "netns {netns}  container {}  pod {}  entity {}",
            crate::render::list::container_cell(w),
            crate::render::list::pod_cell(w),
            p.map_or("-", |p| &p.entity_id)
        )),
    ]
}

fn detail(f: &mut Frame, area: Rect, top: &Top, look: &Look) {
    let block = Block::default().borders(Borders::TOP).title(" Detail ");
    let inner = block.inner(area);
    f.render_widget(block, area);
    let Some(r) = top.selected_row() else {
        f.render_widget(Paragraph::new("no connection selected"), inner);
        return;
    };
    let [info, spark, rest] = Layout::vertical([
        Constraint::Length(4),
        Constraint::Length(3),
        Constraint::Min(0),
    ])
    .areas(inner);
    let mut lines = vec![
        Line::from(format!(
            "{} {} {} -> {}  {}",
            r.proto.upper(),
            owner(r.pid, &r.comm),
            r.local,
            remote_text(top, r),
            r.state.name()
        )),
        Line::from(format!(
            "sent {}  received {}  in {}  out {}  rtt {}  retransmits {}",
            human_bytes(r.sent),
            human_bytes(r.recv),
            rate(r.rate_in),
            rate(r.rate_out),
            if r.rtt_us == 0 {
                "-".into()
            } else {
                duration(u64::from(r.rtt_us) * 1000)
            },
            r.retrans
        )),
    ];
    lines.extend(owner_lines(r, top));
    f.render_widget(Paragraph::new(lines), info);
    let data = top.sparkline();
    let peak = data.iter().copied().max().unwrap_or(0);
    f.render_widget(
        Sparkline::default()
            .block(Block::default().title(format!("bytes/s (peak {})", rate(peak))))
            .data(&data)
            .style(look.title()),
        spark,
    );
    let mut text: Vec<Line> = top
        .selected_events()
        .iter()
        .rev()
        .map(|(ts, a)| {
            Line::from(format!(
                "{} {} ago",
                a.name(),
                duration(top.now_ns.saturating_sub(*ts))
            ))
        })
        .collect();
    for a in top.selected_alerts() {
        text.push(Line::styled(
            format!("alert {} {}: {}", a.severity, a.rule, a.message),
            look.warn(),
        ));
    }
    if text.is_empty() {
        text.push(Line::from("no events or alerts for it since top started"));
    }
    f.render_widget(Paragraph::new(text), rest);
}

fn processes(f: &mut Frame, area: Rect, top: &Top, look: &Look) {
    let head = Row::new(["PROCESS", "PID", "CONNS", "IN/s", "OUT/s", "TOTAL"]).style(look.head());
    let height = table_rows(area);
    let offset = window(0, top.selected, top.procs.len(), height);
    let end = (offset + height).min(top.procs.len());
    let shown = &top.procs[offset.min(end)..end];
    let rows = shown.iter().map(|p| {
        Row::new([
            if p.comm.is_empty() {
                "-".to_string()
            } else {
                p.comm.to_string()
            },
            if p.pid == 0 {
                "-".into()
            } else {
                p.pid.to_string()
            },
            p.connections.to_string(),
            rate(p.rate_in),
            rate(p.rate_out),
            human_bytes(p.total),
        ])
    });
    let widths = [
        Constraint::Length(16),
        Constraint::Length(8),
        Constraint::Length(6),
        Constraint::Length(12),
        Constraint::Length(12),
        Constraint::Length(12),
    ];
    let table = Table::new(rows, widths)
        .header(head)
        .block(
            Block::default()
                .borders(Borders::TOP)
                .title(format!(" Processes ({}) ", top.procs.len())),
        )
        .row_highlight_style(look.selected());
    let mut state = TableState::default()
        .with_selected((!shown.is_empty()).then_some(top.selected.saturating_sub(offset)));
    f.render_stateful_widget(table, area, &mut state);
}

fn alerts(f: &mut Frame, area: Rect, top: &Top, look: &Look) {
    let lines: Vec<Line> = if top.alerts.is_empty() {
        vec![Line::from("no alerts")]
    } else {
        top.alerts
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let l = Line::from(format!("{:<8} {:<20} {}", a.severity, a.rule, a.message));
                if i == top.selected {
                    l.style(look.selected())
                } else {
                    l
                }
            })
            .collect()
    };
    let scroll = top
        .selected
        .saturating_sub(area.height.saturating_sub(2) as usize) as u16;
    f.render_widget(
        Paragraph::new(lines).scroll((scroll, 0)).block(
            Block::default()
                .borders(Borders::TOP)
                .title(format!(" Alerts ({}) ", top.alerts.len())),
        ),
        area,
    );
}

fn footer(f: &mut Frame, area: Rect, top: &Top, look: &Look) {
    let line = if let Some(t) = &top.editing {
        Line::from(format!("filter: {t}_  (Enter apply, Esc cancel)"))
    } else if let Some(e) = &top.filter_error {
        Line::styled(format!("filter: {e}"), look.warn())
    } else {
        Line::from("q quit  ? help  / filter  s sort  p pause  Enter detail  Tab next view")
    };
    f.render_widget(Paragraph::new(line), area);
}

pub const HELP: &[(&str, &str)] = &[
    ("q, Ctrl+C", "quit"),
    ("?", "this help (any key closes it)"),
    (
        "/",
        "filter, as list: state:S proto:P port:N pid:N process:NAME",
    ),
    ("", "  and the ECS ends: sport:N dport:N src:CIDR dst:CIDR"),
    ("s", "next sort key (rate, bytes, age, process)"),
    ("r b a n", "sort by rate, bytes, age, process"),
    ("p, Space", "pause (the picture stays; keys still work)"),
    ("Up/Down j/k", "select; PgUp/PgDn, g/G: jump"),
    ("Enter, d", "detail of the selected connection (Esc closes)"),
    ("Tab, 1 2 3", "connections, processes, alerts"),
];

fn help(f: &mut Frame, area: Rect, look: &Look) {
    let w = area.width.min(76);
    let h = (HELP.len() as u16 + 2).min(area.height);
    let popup = Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    };
    let lines: Vec<Line> = HELP
        .iter()
        .map(|(k, v)| {
            Line::from(vec![
                Span::styled(format!("{k:<12} "), look.title()),
                Span::raw(*v),
            ])
        })
        .collect();
    f.render_widget(Clear, popup);
    f.render_widget(
        Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title(" Help ")),
        popup,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::event::{Action, ConnEvent, Direction, Proto, State};
    use crate::core::services::Services;
    use crate::core::table::Snapshot;
    use crate::core::top::{AlertLine, Input, Picture};
    use crate::fixture::conn;
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    const SEC: u64 = 1_000_000_000;

    fn screen(top: &mut Top, w: u16, h: u16) -> String {
        let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
        t.draw(|f| draw(f, top, false)).unwrap();
        let buf = t.backend().buffer();
        let mut out = String::new();
        for y in 0..buf.area.height {
            let line: String = (0..buf.area.width)
                .map(|x| buf[(x, y)].symbol().to_string())
                .collect();
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    /// A fixed picture: a busy upload, an ssh session, a listener, a hostile name.
    fn state() -> Top {
        let mut up = conn(
            1,
            Proto::Tcp,
            "127.0.0.1:40000",
            "127.0.0.1:443",
            State::Established,
            Direction::Egress,
            4242,
            b"uploader",
        );
        up.bytes_sent = 80 << 20;
        up.bytes_recv = 4 << 10;
        up.live.rate_sent = 8_000_000;
        up.live.rate_recv = 1_200;
        up.live.rtt_us = 45;
        let mut ssh = conn(
            2,
            Proto::Tcp,
            "10.0.0.1:22",
            "10.0.0.2:53000",
            State::Established,
            Direction::Ingress,
            900,
            b"sshd",
        );
        ssh.bytes_sent = 3_000;
        ssh.bytes_recv = 2_000;
        ssh.live.rate_sent = 120;
        ssh.live.rtt_us = 1_500;
        ssh.netns = crate::fixture::HOST_NETNS;
        ssh.who = crate::fixture::owned();
        // On the kernel's clock, as live rows have it: up 52 s.
        let mut p = crate::core::process::Process::clone(ssh.who.process.as_ref().unwrap());
        p.start_ns = 150 * SEC;
        ssh.who.process = Some(std::sync::Arc::new(p));
        let listener = conn(
            3,
            Proto::Tcp,
            "0.0.0.0:8080",
            "0.0.0.0:0",
            State::Listen,
            Direction::Unknown,
            77,
            b"nginx",
        );
        let evil = conn(
            4,
            Proto::Tcp,
            "127.0.0.1:40001",
            "127.0.0.1:9",
            State::CloseWait,
            Direction::Egress,
            5,
            b"x\x1b[31mred",
        );
        let mut snap = Snapshot {
            conns: vec![up.clone(), ssh, listener, evil],
            ..Snapshot::default()
        };
        let mut top = Top::new("eBPF, ring buffer".into(), Services::builtin());
        top.update(
            &Picture::of_snapshot(&snap, 200 * SEC),
            200 * SEC,
            100 * SEC,
        );
        snap.counters.opened = 10;
        snap.counters.closed = 4;
        snap.counters.lost = 2;
        top.update(
            &Picture::of_snapshot(&snap, 202 * SEC),
            202 * SEC,
            100 * SEC,
        );
        let mut ev = ConnEvent::blank(Action::Opened, 150 * SEC);
        ev.local = up.local;
        ev.remote = up.remote;
        top.event(&ev);
        top.set_alerts(vec![AlertLine {
            last_ns: 201 * SEC,
            severity: "high",
            rule: "large-outbound",
            key: "127.0.0.1:40000->127.0.0.1:443".into(),
            message: "Large outbound transfer: 127.0.0.1:40000 -> 127.0.0.1:443 sent 80.0 MiB"
                .into(),
        }]);
        top
    }

    #[test]
    fn connections_at_80x24() {
        let mut top = state();
        let s = screen(&mut top, 80, 24);
        assert!(!s.contains('\x1b'), "escaped names only");
        insta::assert_snapshot!(s);
    }

    #[test]
    fn wide_screen_sorted_by_process_with_the_detail_pane() {
        let mut top = state();
        top.key(Input::Char('n'));
        top.key(Input::Enter);
        insta::assert_snapshot!(screen(&mut top, 140, 30));
    }

    #[test]
    fn processes_alerts_help_and_filter_prompt() {
        let mut top = state();
        top.key(Input::Tab);
        let procs = screen(&mut top, 100, 12);
        top.key(Input::Tab);
        let alerts = screen(&mut top, 100, 8);
        top.key(Input::Char('?'));
        let help = screen(&mut top, 80, 16);
        top.key(Input::Char('x'));
        top.key(Input::Char('1'));
        for c in "/port:22".chars() {
            top.key(Input::Char(c));
        }
        let typing = screen(&mut top, 80, 8);
        top.key(Input::Enter);
        let filtered = screen(&mut top, 80, 8);
        insta::assert_snapshot!(format!(
            "{procs}---\n{alerts}---\n{help}---\n{typing}---\n{filtered}"
        ));
    }

    #[test]
    fn only_the_rows_on_screen_are_drawn_and_the_selection_stays_in_view() {
        let conns = (0..500u16)
            .map(|i| {
                let mut c = conn(
                    u64::from(i) + 1,
                    Proto::Tcp,
                    &format!("127.0.0.1:{}", 20_000 + i),
                    "127.0.0.1:443",
                    State::Established,
                    Direction::Egress,
                    1,
                    format!("p{i}").as_bytes(),
                );
                c.bytes_sent = u64::from(i) * 1000;
                c
            })
            .collect();
        let snap = Snapshot {
            conns,
            ..Snapshot::default()
        };
        let mut top = Top::new("test".into(), Services::builtin());
        top.update(&Picture::of_snapshot(&snap, 2 * SEC), 2 * SEC, SEC);
        top.key(Input::Char('b'));
        // 14 lines: 3 header, a border, the column titles, 8 rows, the footer.
        let names = |s: &str| -> Vec<String> {
            s.lines()
                .skip(5)
                .take(8)
                .map(|l| l.split_whitespace().next().unwrap_or("").to_string())
                .collect()
        };
        let first = screen(&mut top, 100, 14);
        assert_eq!(names(&first)[0], "p499", "{first}");
        assert_eq!(names(&first)[7], "p492");
        top.key(Input::Char('G'));
        let last = screen(&mut top, 100, 14);
        assert_eq!(names(&last)[7], "p0", "{last}");
        assert_eq!(top.offset, 492);
        // Moving up inside the window does not scroll it.
        for _ in 0..7 {
            top.key(Input::Up);
        }
        assert_eq!(names(&screen(&mut top, 100, 14))[0], "p7");
        top.key(Input::Up);
        assert_eq!(names(&screen(&mut top, 100, 14))[0], "p8");
        assert_eq!(top.offset, 491);
        top.key(Input::Char('g'));
        assert_eq!(names(&screen(&mut top, 100, 14))[0], "p499");
        assert_eq!(top.offset, 0);
    }

    #[test]
    fn keys_sort_pause_filter_and_quit() {
        let mut top = state();
        assert_eq!(top.rows[0].comm.to_string(), "uploader", "by rate");
        top.key(Input::Char('a'));
        assert_eq!(top.sort.name(), "age");
        top.key(Input::Char('n'));
        assert_eq!(top.rows[0].comm.to_string(), "sshd");
        top.key(Input::Char('p'));
        assert!(top.paused);
        top.set_filter("bogus:1");
        assert!(top.filter_error.is_some());
        assert_eq!(top.rows.len(), 3, "the old filter stays");
        top.set_filter("process:upl");
        assert_eq!(top.rows.len(), 1);
        assert_eq!(top.key(Input::Char('q')), crate::core::top::Command::Quit);
        assert_eq!(top.key(Input::Interrupt), crate::core::top::Command::Quit);
    }
}
