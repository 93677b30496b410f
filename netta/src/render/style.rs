//! Terminal colour, added to already-rendered text at print time so renderers stay
//! plain (and snapshot-testable). Off when stdout is not a terminal or NO_COLOR is set.
use std::io::IsTerminal;

/// Set and not empty: no colour anywhere (<https://no-color.org>).
pub const NO_COLOR: &str = "NO_COLOR";

/// Colour is wanted, wherever it goes.
pub fn wanted() -> bool {
    std::env::var_os(NO_COLOR).is_none_or(|v| v.is_empty())
}

pub fn enabled() -> bool {
    wanted() && std::io::stdout().is_terminal()
}

const BOLD: &str = "\x1b[1m";
const DIM: &str = "\x1b[2m";
const YELLOW: &str = "\x1b[33m";
const GREEN: &str = "\x1b[32m";
const CYAN: &str = "\x1b[36m";
const RESET: &str = "\x1b[0m";

/// Colours section titles, rules, warnings and banners. Process names in the text
/// were escaped when rendered, so no ESC byte in it comes from outside.
pub fn paint(text: &str) -> String {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let body = |i: usize| lines.get(i).map_or("", |l| l.trim_end_matches('\n'));
    let mut out = String::with_capacity(text.len() + 64);
    for (i, line) in lines.iter().enumerate() {
        let b = body(i);
        let nl = &line[b.len()..];
        // A title sits between two heavy rules.
        let title = i > 0 && body(i - 1).starts_with('═') && body(i + 1).starts_with('═');
        let code = if b.starts_with('═') || b.starts_with('─') {
            Some(DIM)
        } else if b.starts_with('╔') || b.starts_with('║') || b.starts_with('╚') {
            Some(CYAN)
        } else if b.trim_start().starts_with('⚠') {
            Some(YELLOW)
        } else if b.starts_with('✓') {
            Some(GREEN)
        } else if title && !b.is_empty() {
            Some(BOLD)
        } else {
            None
        };
        match code {
            Some(c) => {
                out.push_str(c);
                out.push_str(b);
                out.push_str(RESET);
                out.push_str(nl);
            }
            None => out.push_str(line),
        }
    }
    out
}

/// `paint` when colour is enabled, else the text unchanged.
pub fn for_stdout(text: &str) -> std::borrow::Cow<'_, str> {
    if enabled() {
        paint(text).into()
    } else {
        text.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_rules_and_warnings_get_colour() {
        let text = "═══\nTITLE\n═══\nbody\n  ⚠  bad\n";
        let p = paint(text);
        assert!(p.contains("\x1b[1mTITLE\x1b[0m\n"));
        assert!(p.contains("\x1b[33m  ⚠  bad\x1b[0m"));
        assert!(p.contains("body\n") && !p.contains("\x1b[1mbody"));
        // Stripping the codes gives the input back.
        let plain = p
            .replace(BOLD, "")
            .replace(DIM, "")
            .replace(YELLOW, "")
            .replace(RESET, "");
        assert_eq!(plain, text);
    }
}
