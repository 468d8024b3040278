//! Leak indicators. Each returns a finding only when there is something to flag.
use std::time::Duration;

use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Finding {
    pub kind: &'static str,
    pub count: u64,
    pub message: String,
}

/// CLOSE-WAIT means the peer has closed and the local application has not: a socket that
/// stays there is a descriptor the program forgot to close. Any count is worth a look; the
/// age (known when the live table saw the transition) says how stale it is.
pub fn close_wait(count: u64, oldest: Option<Duration>) -> Option<Finding> {
    if count == 0 {
        return None;
    }
    let age = oldest.map_or(String::new(), |d| {
        format!(", oldest {:.0} s", d.as_secs_f64())
    });
    Some(Finding {
        kind: "close-wait",
        count,
        message: format!(
            "{count} socket(s) in CLOSE-WAIT{age}: the peer closed, the application never did (a descriptor leak)"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_wait_is_flagged_with_its_age() {
        assert_eq!(close_wait(0, None), None);
        let f = close_wait(3, Some(Duration::from_secs(75))).unwrap();
        assert_eq!(f.count, 3);
        assert!(
            f.message
                .starts_with("3 socket(s) in CLOSE-WAIT, oldest 75 s")
        );
    }
}
