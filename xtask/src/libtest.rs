//! What libtest printed: the counts of its "test result:" lines, the tests that failed, and
//! the first lines of each failure's message. Host runs (`cargo xtask test`) and guest suites
//! (`cargo xtask vmtest`) read their output through this, and both end with the failures and
//! why, so a CI log's tail says why a run failed, not only that it did.

/// Tests counted from libtest's "test result:" lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub passed: u64,
    pub failed: u64,
    pub ignored: u64,
}

impl Totals {
    /// Adds the counts of `line` if it is a "test result:" line; false otherwise.
    fn add_result_line(&mut self, line: &str) -> bool {
        let Some(rest) = line.strip_prefix("test result: ") else {
            return false;
        };
        for part in rest.split([';', '.']) {
            let mut words = part.split_whitespace();
            let (Some(n), Some(what)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(n) = n.parse::<u64>() else { continue };
            match what {
                "passed" => self.passed += n,
                "failed" => self.failed += n,
                "ignored" => self.ignored += n,
                _ => {}
            }
        }
        true
    }
}

/// How much of a failed test's message is kept.
const REASON_LINES: usize = 4;
const REASON_WIDTH: usize = 200;

/// One or more test binaries' output, read line by line.
#[derive(Clone, Debug, Default)]
pub struct Results {
    pub counts: Totals,
    /// Tests reported as "test NAME ... FAILED", in order.
    pub failed: Vec<String>,
    /// The first lines of each failed test's message, by test name.
    reasons: Vec<(String, Vec<String>)>,
    /// Inside a "---- NAME ----" block of the failures section.
    in_block: bool,
}

impl Results {
    pub fn read(output: &str) -> Results {
        let mut r = Results::default();
        for line in output.lines() {
            r.add_line(line);
        }
        r
    }

    pub fn add_line(&mut self, line: &str) {
        let line = line.trim_end();
        // The failures section: "---- name ----" (or "---- name stdout ----"), then the
        // message, up to the next block or the closing "failures:" list.
        if let Some(name) = line
            .strip_prefix("---- ")
            .and_then(|l| l.strip_suffix(" ----"))
        {
            let name = name.strip_suffix(" stdout").unwrap_or(name);
            self.reasons.push((name.trim().to_string(), Vec::new()));
            self.in_block = true;
            return;
        }
        if line == "failures:" || line.starts_with("test result:") {
            self.in_block = false;
        }
        if self.in_block {
            if let Some((_, why)) = self.reasons.last_mut()
                && !line.trim().is_empty()
                && why.len() < REASON_LINES
            {
                why.push(line.chars().take(REASON_WIDTH).collect());
            }
            return;
        }
        if self.counts.add_result_line(line) {
            return;
        }
        if let Some(name) = line
            .strip_prefix("test ")
            .and_then(|l| l.strip_suffix(" ... FAILED"))
        {
            self.failed.push(name.trim().to_string());
        }
    }

    /// The first lines of `test`'s failure message (empty when none was printed).
    pub fn reason(&self, test: &str) -> &[String] {
        self.reasons
            .iter()
            .rev()
            .find(|(name, _)| name == test)
            .map(|(_, why)| why.as_slice())
            .unwrap_or_default()
    }

    /// "FAILED{context}: NAME" and its message's first lines, indented, per failed test.
    pub fn failure_lines(&self, context: &str) -> String {
        let mut s = String::new();
        for name in &self.failed {
            s.push_str(&format!("FAILED{context}: {name}\n"));
            for line in self.reason(name) {
                s.push_str(&format!("    {line}\n"));
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_failures_and_why() {
        let log = "running 3 tests\ntest a ... ok\ntest b_c ... FAILED\ntest d ... FAILED\n\n\
                   failures:\n\n---- b_c ----\ngot 1, want 2\n\n---- d stdout ----\ntimed out; screen:\n\
                   l1\nl2\nl3\nl4\n\nfailures:\n    b_c\n    d\n\n\
                   test result: FAILED. 1 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.00s\n\
                   test result: ok. 4 passed; 0 failed; 1 ignored\n";
        let r = Results::read(log);
        assert_eq!(
            r.counts,
            Totals {
                passed: 5,
                failed: 2,
                ignored: 1
            }
        );
        assert_eq!(r.failed, ["b_c", "d"]);
        assert_eq!(r.reason("b_c"), ["got 1, want 2"]);
        assert_eq!(r.reason("d"), ["timed out; screen:", "l1", "l2", "l3"]);
        assert_eq!(
            r.failure_lines(" on 6.1: root"),
            "FAILED on 6.1: root: b_c\n    got 1, want 2\nFAILED on 6.1: root: d\n    \
             timed out; screen:\n    l1\n    l2\n    l3\n"
        );
        assert!(Results::read("").failed.is_empty());
    }
}
