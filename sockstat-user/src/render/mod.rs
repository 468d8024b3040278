//! Views of collected records. Printers write to any `io::Write`; the format is chosen once.
#[cfg(test)]
mod golden;
pub mod ifaces;
pub mod lab;
mod line;
pub mod list;
pub mod list_json;
pub mod numfmt;
pub mod report;
pub mod routes;
pub mod stats;
pub mod summary;
pub mod table;
pub mod top;
pub mod trace;

/// One JSON value on one line: the `--json` output of every command that prints one
/// object (or one per interval).
pub fn json_line(
    out: &mut (impl std::io::Write + ?Sized),
    value: &impl serde::Serialize,
) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, value).map_err(std::io::Error::from)?;
    out.write_all(b"\n")
}

/// `text` wrapped to `width` columns: the first line indented by `first` spaces, the rest
/// by `rest`. A word longer than a line stays whole. Widths count characters (the texts
/// wrapped here carry no escape codes).
pub fn wrap(text: &str, first: usize, rest: usize, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    let mut col = 0;
    for word in text.split_whitespace() {
        let len = word.chars().count();
        if col > 0 && col + 1 + len > width {
            lines.push(std::mem::take(&mut line));
            col = 0;
        }
        if col == 0 {
            let indent = if lines.is_empty() { first } else { rest };
            line.extend(std::iter::repeat_n(' ', indent));
            col = indent;
        } else {
            line.push(' ');
            col += 1;
        }
        line.push_str(word);
        col += len;
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

/// The width of the terminal stdout is, if it is one.
pub fn terminal_width() -> Option<usize> {
    use std::io::IsTerminal as _;
    if !std::io::stdout().is_terminal() {
        return None;
    }
    terminal_size::terminal_size_of(std::io::stdout()).map(|(w, _)| usize::from(w.0))
}

#[cfg(test)]
mod tests {
    #[test]
    fn wrap_hangs_and_keeps_long_words_whole() {
        assert_eq!(
            super::wrap("aaa bbb ccc ddd", 2, 4, 10),
            ["  aaa bbb", "    ccc", "    ddd"]
        );
        assert_eq!(
            super::wrap("averyveryverylongword x", 0, 2, 8),
            ["averyveryverylongword", "  x"]
        );
        assert_eq!(super::wrap("", 3, 3, 10), [""]);
    }
}
