//! `netta top`: the live full-screen view. This file owns the terminal (raw
//! mode, the alternate screen, keys) and the loop; the state and its figures
//! are `core::top`, the drawing `render::top`. The terminal is given back on
//! every way out: `q`, Ctrl+C, SIGTERM/SIGHUP, an error, and a panic (hook).
use std::io::{self, IsTerminal, Write};
use std::time::Duration;

use crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use crossterm::{cursor, execute, terminal};
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;
use tokio::sync::mpsc;

use crate::agent::Record;
use crate::app::source::Source;
use crate::core::clock::boot_now;
use crate::core::top::{AlertLine, Command, Input, Top};
use crate::settings::cli::TopArgs;
use crate::settings::Settings;

/// Gives the terminal back: leaves raw mode and the alternate screen, shows the cursor.
fn restore() {
    let _ = terminal::disable_raw_mode();
    let _ = execute!(io::stdout(), terminal::LeaveAlternateScreen, cursor::Show);
}

/// Restores the terminal when dropped, however the loop ends.
struct Screen;

impl Screen {
    fn enter() -> io::Result<Screen> {
        // A panic anywhere prints its message on a usable terminal.
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
        terminal::enable_raw_mode()?;
        let guard = Screen;
        execute!(io::stdout(), terminal::EnterAlternateScreen, cursor::Hide)?;
        Ok(guard)
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore();
    }
}

enum Key {
    Input(Input),
    Resize,
}

fn input_of(code: KeyCode, mods: KeyModifiers) -> Option<Input> {
    Some(match code {
        KeyCode::Char('c') if mods.contains(KeyModifiers::CONTROL) => Input::Interrupt,
        KeyCode::Char(c) => Input::Char(c),
        KeyCode::Up => Input::Up,
        KeyCode::Down => Input::Down,
        KeyCode::PageUp => Input::PageUp,
        KeyCode::PageDown => Input::PageDown,
        KeyCode::Enter => Input::Enter,
        KeyCode::Esc => Input::Esc,
        KeyCode::Backspace => Input::Backspace,
        KeyCode::Tab => Input::Tab,
        _ => return None,
    })
}

/// Terminal events, read on a thread of their own (reading blocks).
fn keys() -> mpsc::Receiver<Key> {
    let (tx, rx) = mpsc::channel(64);
    std::thread::spawn(move || loop {
        if tx.is_closed() {
            break;
        }
        match event::poll(Duration::from_millis(100)) {
            Ok(false) => continue,
            Ok(true) => {}
            Err(_) => break,
        }
        let key = match event::read() {
            Ok(Event::Key(k)) if k.kind != KeyEventKind::Release => {
                match input_of(k.code, k.modifiers) {
                    Some(i) => Key::Input(i),
                    None => continue,
                }
            }
            Ok(Event::Resize(..)) => Key::Resize,
            Ok(_) => continue,
            Err(_) => break,
        };
        if tx.blocking_send(key).is_err() {
            break;
        }
    });
    rx
}

fn alert_lines(alerts: &[crate::detect::Alert]) -> Vec<AlertLine> {
    alerts
        .iter()
        .map(|a| AlertLine {
            last_ns: a.last_ns,
            severity: a.severity.name(),
            rule: a.rule.id(),
            key: a.key.clone(),
            message: a.message.clone(),
        })
        .collect()
}

pub async fn run(s: &Settings, args: &TopArgs) -> anyhow::Result<()> {
    if !io::stdout().is_terminal() {
        anyhow::bail!("netta top needs a terminal (for a stream of lines, try `netta monitor`)");
    }
    let src = Source::open(&s.global, crate::app::agent_options(s)).await?;
    src.announce();
    let result = show(&src, args).await;
    src.close().await;
    result
}

async fn show(src: &Source, args: &TopArgs) -> anyhow::Result<()> {
    let color = crate::render::style::wanted();
    let started_ns = src.started_ns();
    let mut records = src.subscribe(4096).await?;
    let mut top = Top::new(src.mode(), src.services().clone());
    top.set_filter(&args.filter.filter().words());
    let screen = Screen::enter()?;
    let mut term = Terminal::new(CrosstermBackend::new(io::stdout()))?;
    term.clear()?;
    let mut keys = keys();
    let mut tick = tokio::time::interval(args.interval);
    let stop = crate::app::output::stop_signal();
    tokio::pin!(stop);
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = hangup.recv() => break,
            k = keys.recv() => match k {
                Some(Key::Input(i)) => {
                    if top.key(i) == Command::Quit {
                        break;
                    }
                }
                Some(Key::Resize) => {}
                None => break,
            },
            r = records.recv() => {
                match r {
                    Some(Record::Event(ev)) => top.event(&ev),
                    Some(_) => {}
                    None => anyhow::bail!("the agent stopped"),
                }
                continue;
            }
            _ = tick.tick() => {
                let now = boot_now();
                top.update(&src.picture(now).await?, now, started_ns);
                top.set_alerts(alert_lines(&src.incidents().await?));
            }
        }
        term.draw(|f| crate::render::top::draw(f, &mut top, color))?;
    }
    drop(term);
    drop(screen);
    let _ = io::stdout().flush();
    Ok(())
}
