//! ss's column layout (iproute2 `render()`): every cell is a token; a column is as wide as its
//! widest token plus its left delimiter; address columns are right-aligned so `addr:` meets
//! the port column. On a terminal the spare width is spread over the columns as ss does.
//!
//! Cells live in one string with offsets, so 100k rows cost a handful of allocations.
use std::io::{self, Write};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

#[derive(Clone, Copy, Debug)]
pub struct Column {
    pub header: &'static str,
    /// Printed before the cell unless it starts the line.
    pub delim: &'static str,
    pub align: Align,
}

pub struct Table {
    columns: Vec<Column>,
    text: String,
    /// End offset of every cell, row after row.
    ends: Vec<u32>,
    max_len: Vec<usize>,
    with_header: bool,
    /// How many times rows were written out and dropped.
    generation: u64,
}

/// A position in the table to go back to (see [`Table::truncate`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mark {
    cells: usize,
    bytes: usize,
    generation: u64,
}

impl Table {
    /// The column layout, to build a wider table from it.
    pub fn into_columns(self) -> Vec<Column> {
        self.columns
    }

    pub fn new(columns: Vec<Column>, with_header: bool) -> Self {
        let mut t = Table {
            max_len: vec![0; columns.len()],
            columns,
            text: String::new(),
            ends: Vec::new(),
            with_header,
            generation: 0,
        };
        if with_header {
            let headers: Vec<&str> = t.columns.iter().map(|c| c.header).collect();
            for h in headers {
                t.text.push_str(h);
                t.end_cell();
            }
        }
        t
    }

    /// Reserves room for `bytes` of cell text and `cells` cells, so a batch fills without
    /// reallocating (a doubling would briefly hold two copies).
    pub fn reserve(&mut self, bytes: usize, cells: usize) {
        self.text.reserve(bytes);
        self.ends.reserve(cells);
    }

    /// The cell being written; finish it with [`Table::end_cell`].
    pub fn cell(&mut self) -> &mut String {
        &mut self.text
    }

    pub fn end_cell(&mut self) {
        let start = self.ends.last().copied().unwrap_or(0) as usize;
        let len = self.text.len() - start;
        let col = self.ends.len() % self.columns.len();
        if len > self.max_len[col] {
            self.max_len[col] = len;
        }
        self.ends.push(self.text.len() as u32);
    }

    pub fn push(&mut self, value: &str) {
        self.text.push_str(value);
        self.end_cell();
    }

    /// Rows buffered (header excluded).
    pub fn rows(&self) -> usize {
        let header = usize::from(self.with_header && self.generation == 0);
        (self.ends.len() / self.columns.len()).saturating_sub(header)
    }

    /// Bytes of cell text buffered.
    pub fn buffered_bytes(&self) -> usize {
        self.text.len()
    }

    pub fn mark(&self) -> Mark {
        Mark {
            cells: self.ends.len(),
            bytes: self.text.len(),
            generation: self.generation,
        }
    }

    /// Drops the rows added since `mark`; false if they were already written out.
    pub fn truncate(&mut self, mark: Mark) -> bool {
        if mark.generation != self.generation {
            return false;
        }
        self.ends.truncate(mark.cells);
        self.text.truncate(mark.bytes);
        true
    }

    /// Writes the buffered rows and forgets them, keeping the column widths seen so far, as
    /// ss does for large outputs: memory stays bounded however many sockets there are.
    pub fn flush_rows(
        &mut self,
        out: &mut impl Write,
        screen_width: Option<usize>,
    ) -> io::Result<()> {
        self.flush_rows_with(out, screen_width, &mut |_, _| {})
    }

    /// Like [`Table::flush_rows`], with `late` adding text at the start of each data row's
    /// last cell (row numbers count from 0 within this batch). The last column is never
    /// padded, so text added there cannot change the layout.
    pub fn flush_rows_with(
        &mut self,
        out: &mut impl Write,
        screen_width: Option<usize>,
        late: &mut dyn FnMut(usize, &mut Vec<u8>),
    ) -> io::Result<()> {
        self.write_with(out, screen_width, late)?;
        self.text.clear();
        self.ends.clear();
        self.generation += 1;
        Ok(())
    }

    /// Column widths: compact (pipes, files) unless `screen_width` is given (a terminal).
    fn widths(&self, screen_width: Option<usize>) -> Vec<usize> {
        let mut first = true;
        let mut widths: Vec<usize> = self
            .columns
            .iter()
            .zip(&self.max_len)
            .map(|(c, &len)| {
                let w = if !first && len != 0 {
                    len + c.delim.len()
                } else {
                    len
                };
                if w != 0 {
                    first = false;
                }
                w
            })
            .collect();
        if let Some(screen) = screen_width {
            spread(&mut widths, screen);
        }
        widths
    }

    #[cfg(test)]
    pub fn write(&self, out: &mut impl Write, screen_width: Option<usize>) -> io::Result<()> {
        self.write_with(out, screen_width, &mut |_, _| {})
    }

    fn write_with(
        &self,
        out: &mut impl Write,
        screen_width: Option<usize>,
        late: &mut dyn FnMut(usize, &mut Vec<u8>),
    ) -> io::Result<()> {
        let header_rows = usize::from(self.with_header && self.generation == 0);
        let widths = self.widths(screen_width);
        let ncol = self.columns.len();
        let last_col = ncol - 1;
        let mut start = 0usize;
        let mut line = Vec::with_capacity(256);
        for (i, &end) in self.ends.iter().enumerate() {
            let end = end as usize;
            let cell = &self.text.as_bytes()[start..end];
            start = end;
            let col = i % ncol;
            let c = &self.columns[col];
            let mut printed = 0;
            if !line.is_empty() {
                line.extend_from_slice(c.delim.as_bytes());
                printed = c.delim.len();
            }
            let width = widths[col];
            if c.align == Align::Right && width > cell.len() + printed {
                let pad = width - cell.len() - printed;
                line.resize(line.len() + pad, b' ');
                printed += pad;
            }
            if col == last_col && i / ncol >= header_rows {
                late(i / ncol - header_rows, &mut line);
            }
            line.extend_from_slice(cell);
            printed += cell.len();
            if c.align == Align::Left && width > printed {
                line.resize(line.len() + width - printed, b' ');
            }
            if col == last_col {
                // No trailing padding at the end of a line (iproute2 7.x behaviour), nor
                // before the line breaks inside the last cell (-m, -i, -e details).
                if cell.contains(&b'\n') {
                    line.push(b'\n');
                    trim_before_newlines(&mut line);
                } else {
                    while line.last() == Some(&b' ') {
                        line.pop();
                    }
                    line.push(b'\n');
                }
                out.write_all(&line)?;
                line.clear();
            }
        }
        Ok(())
    }
}

/// Drops the spaces that end each line of `text`.
fn trim_before_newlines(text: &mut Vec<u8>) {
    let mut kept = 0;
    let mut spaces = 0;
    for i in 0..text.len() {
        let b = text[i];
        if b == b' ' {
            spaces += 1;
            continue;
        }
        if b != b'\n' {
            // Spaces inside a line stay.
            for _ in 0..spaces {
                text[kept] = b' ';
                kept += 1;
            }
        }
        spaces = 0;
        text[kept] = b;
        kept += 1;
    }
    text.truncate(kept);
}

/// ss's terminal layout: columns are grouped into screen lines and each group's spare space
/// is shared out, the remainder going to the rightmost columns.
fn spread(widths: &mut [usize], screen: usize) {
    let n = widths.len();
    let mut len = 0usize;
    let mut linecols = 0usize;
    let mut line_start = 0usize;
    let mut c = 0usize;
    while c < n {
        if widths[c] == 0 {
            c += 1;
            continue;
        }
        linecols += 1;
        len += widths[c];
        let last = widths[c + 1..].iter().all(|&w| w == 0);
        if !last && len < screen {
            c += 1;
            continue;
        }
        let mut end = c;
        if len > screen && linecols > 1 {
            len -= widths[c];
            linecols -= 1;
            end = c - 1;
        } else {
            c += 1;
        }
        if len < screen && linecols > 0 {
            let pad = screen - len;
            let spacing = pad / linecols;
            let mut rem = pad % linecols;
            for t in (line_start..=end).rev() {
                if widths[t] != 0 {
                    widths[t] += spacing;
                    if rem > 0 {
                        widths[t] += 1;
                        rem -= 1;
                    }
                }
            }
        }
        line_start = end + 1;
        c = c.max(line_start);
        len = 0;
        linecols = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols() -> Vec<Column> {
        vec![
            Column {
                header: "State",
                delim: "",
                align: Align::Left,
            },
            Column {
                header: "Local Address:",
                delim: " ",
                align: Align::Right,
            },
            Column {
                header: "Port",
                delim: "",
                align: Align::Left,
            },
            Column {
                header: "Process",
                delim: " ",
                align: Align::Left,
            },
        ]
    }

    #[test]
    fn compact_layout_aligns_addresses_on_the_colon() {
        let mut t = Table::new(cols(), true);
        for (s, a, p) in [("LISTEN", "0.0.0.0:", "22"), ("ESTAB", "[::1]:", "40000")] {
            t.push(s);
            t.push(a);
            t.push(p);
            t.push("");
        }
        let mut out = Vec::new();
        t.write(&mut out, None).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "State  Local Address:Port  Process\nLISTEN       0.0.0.0:22\nESTAB          [::1]:40000\n"
        );
        assert_eq!(t.rows(), 2);
    }

    #[test]
    fn terminal_layout_fills_the_screen() {
        let mut w = vec![5, 0, 15, 5, 8];
        spread(&mut w, 40);
        // 7 spare columns over 4: one each, the remaining 3 to the rightmost columns.
        assert_eq!(w, vec![6, 0, 17, 7, 10]);
    }

    #[test]
    fn no_line_ends_in_spaces_even_inside_the_last_cell() {
        let mut text = b"a  b   \n\t skmem:(r0)  \n".to_vec();
        trim_before_newlines(&mut text);
        assert_eq!(text, b"a  b\n\t skmem:(r0)\n");
    }
}
