//! `netta top` in a real terminal: tmux (its own server, started and stopped
//! here) runs it while a paced transfer goes on; keys go in with `send-keys`,
//! the screen comes out with `capture-pane`. The sender shows by name, port and
//! rate; the filter narrows the table to the test's port; sorting moves the
//! sender; `?` shows the help; `q` and Ctrl+C give the terminal back. Needs root
//! (eBPF) and tmux.
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use netta_tests::*;

/// A private tmux server with one session, killed when dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(cmd: &str) -> Tmux {
        let t = Tmux {
            socket: format!("netta-top-{}", std::process::id()),
        };
        let out = t.run(&[
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            "top",
            "-x",
            "200",
            "-y",
            "50",
            cmd,
        ]);
        assert!(
            out.status.success(),
            "tmux new-session: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        t
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("run tmux")
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "top"];
        args.extend_from_slice(keys);
        assert!(self.run(&args).status.success());
    }

    fn text(&self, text: &str) {
        assert!(self
            .run(&["send-keys", "-t", "top", "-l", text])
            .status
            .success());
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", "top"]).stdout).to_string()
    }

    fn show(&self, format: &str) -> String {
        let out = self.run(&["display-message", "-p", "-t", "top", format]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// The screen once `cond` holds on it (fails the test after `within`).
    fn wait(&self, what: &str, within: Duration, cond: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + within;
        loop {
            let s = self.screen();
            if cond(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "waited for {what}; the screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

/// The screen line that shows `needle`, and its row number.
fn line_with(screen: &str, needle: &str) -> Option<(usize, String)> {
    screen
        .lines()
        .enumerate()
        .find(|(_, l)| l.contains(needle))
        .map(|(i, l)| (i, l.to_string()))
}

#[test]
fn top_shows_a_transfer_sorts_filters_and_restores_the_terminal() {
    require_ebpf!("top_tmux");
    require_server!("top_tmux", "tmux", "tmux");
    let mut sink = Traffic::spawn(&["tcp-server", "127.0.0.1:0", "2", "0", "nt-top-sink"]);
    let sport = sink.expect_line("port ");
    let to = format!("127.0.0.1:{sport}");
    // Longer than the test can take on a loaded machine (it is killed at the end): the
    // sender must still be moving data when the last sort is checked.
    let mut sender = Traffic::spawn(&["paced-send", &to, "4000000", "300", "nt-top-send"]);
    let port = sender.expect_line("local ");
    // An idle connection on the same port, named to sort first by process.
    let mut idle = Traffic::spawn(&["hold", &to, "1", "nt-aa-idle"]);
    idle.expect_line("held");

    // After each run the shell says how it ended and whether the tty is back in
    // canonical mode (`TTY icanon`; raw mode left on would print `TTY -icanon`).
    let tty = "stty -a | tr ' ;' '\\n\\n' | grep -x -e icanon -e -icanon | sed 's/^/TTY /'";
    let cmd = format!(
        "env NETTA_API={api} NO_COLOR=1 {netta} top; echo TOP-EXITED $?; {tty}; \
         env NETTA_API={api} {netta} top; echo TOP2-EXITED $?; {tty}; sleep 60",
        api = isolated_api().display(),
        netta = netta_bin().display()
    );
    let tmux = Tmux::start(&cmd);
    let patience = ready_patience() + Duration::from_secs(10);

    // The sender, by name, with its port and a rate in B/s units.
    let s = tmux.wait("the sender with a rate", patience, |s| {
        line_with(s, "nt-top-send").is_some_and(|(_, l)| {
            l.contains(&format!(":{port}")) && (l.contains("MiB/s") || l.contains("KiB/s"))
        })
    });
    assert!(s.contains("netta top"), "{s}");
    assert_eq!(
        tmux.show("#{alternate_on}"),
        "1",
        "top draws on the alternate screen"
    );

    // Only this test's port.
    tmux.keys(&["/"]);
    tmux.text(&format!("port:{sport}"));
    tmux.keys(&["Enter"]);
    let s = tmux.wait("the filter", patience, |s| {
        s.contains(&format!("filter:port:{sport}")) && s.contains("nt-aa-idle")
    });
    for l in s.lines().filter(|l| l.contains("ESTABLISHED")) {
        assert!(
            l.contains(&format!(":{sport}")),
            "a row of another port: {l}\n{s}"
        );
    }

    // By rate the sender is above the idle connection; by process name below it.
    tmux.keys(&["r"]);
    let s = tmux.wait("sort by rate", patience, |s| {
        s.contains("sort:rate") && s.contains("nt-top-send") && s.contains("nt-aa-idle")
    });
    let (send_at, _) = line_with(&s, "nt-top-send").unwrap();
    let (idle_at, _) = line_with(&s, "nt-aa-idle").unwrap();
    assert!(send_at < idle_at, "by rate:\n{s}");
    tmux.keys(&["n"]);
    let s = tmux.wait("sort by process", patience, |s| {
        s.contains("sort:process") && s.contains("nt-top-send") && s.contains("nt-aa-idle")
    });
    let (send_at, _) = line_with(&s, "nt-top-send").expect("sender listed");
    let (idle_at, _) = line_with(&s, "nt-aa-idle").expect("idle listed");
    assert!(idle_at < send_at, "by process:\n{s}");

    // Help, closed by any key.
    tmux.keys(&["?"]);
    tmux.wait("the help", patience, |s| {
        s.contains("Help") && s.contains("quit")
    });
    tmux.keys(&["x"]);
    tmux.wait("the help closed", patience, |s| !s.contains(" Help "));

    // q ends it; the shell starts the second run, which is a fresh top (sorted by
    // rate, no filter). Ctrl+C ends that one.
    tmux.keys(&["q"]);
    tmux.wait("the second top", patience, |s| {
        s.contains("netta top") && s.contains("sort:rate") && !s.contains("filter:")
    });
    assert_eq!(tmux.show("#{alternate_on}"), "1");
    tmux.keys(&["C-c"]);
    // Both gave the terminal back: the normal screen shows the shell's lines.
    let s = tmux.wait("top to exit on Ctrl+C", patience, |s| {
        s.contains("TOP2-EXITED") && s.matches("TTY ").count() == 2
    });
    assert!(
        s.contains("TOP-EXITED 0") && s.contains("TOP2-EXITED 0"),
        "{s}"
    );
    assert_eq!(s.matches("TTY icanon").count(), 2, "{s}");
    assert_eq!(
        tmux.show("#{alternate_on}"),
        "0",
        "alternate screen left:\n{s}"
    );
    assert_eq!(tmux.show("#{cursor_flag}"), "1", "cursor shown again");
    assert!(!s.contains("TTY -icanon"), "raw mode left on:\n{s}");
    drop(tmux);
    drop(idle);
    drop(sender);
    let _ = sink.child.kill();
}
