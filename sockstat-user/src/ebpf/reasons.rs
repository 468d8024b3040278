//! Names of the kernel's reason enums (`enum skb_drop_reason`, `enum sk_rst_reason`) as
//! sockstat prints them: `SKB_DROP_REASON_TCP_CSUM` is `tcp-csum`. Read from the running
//! kernel's BTF, so reasons a newer kernel adds are named without a change here, and the
//! numbers (which move between kernels) are the kernel's own.
use std::{borrow::Cow, collections::HashMap};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReasonNames {
    by_value: HashMap<u32, String>,
    /// The members that are reasons: named with the prefix, less the `..._MAX` sentinel
    /// (`SKB_NOT_DROPPED_YET` and `SKB_CONSUMED` are never a drop's reason), ascending.
    reasons: Vec<u32>,
}

impl ReasonNames {
    /// From an enum's members (value, name), each name with `prefix` cut off.
    pub fn new(members: impl IntoIterator<Item = (u32, String)>, prefix: &str) -> Self {
        let mut reasons = Vec::new();
        let by_value = members
            .into_iter()
            .map(|(value, name)| {
                let short = match name.strip_prefix(prefix) {
                    Some(short) => {
                        if short != "MAX" {
                            reasons.push(value);
                        }
                        short
                    }
                    None => &name,
                };
                (value, short.to_ascii_lowercase().replace('_', "-"))
            })
            .collect();
        reasons.sort_unstable();
        reasons.dedup();
        Self { by_value, reasons }
    }

    /// Every reason's value (see `reasons`).
    pub fn values(&self) -> &[u32] {
        &self.reasons
    }

    /// The name of `value`, or `reason-N` where the kernel's BTF has none.
    pub fn name(&self, value: u32) -> Cow<'_, str> {
        match self.by_value.get(&value) {
            Some(name) => Cow::Borrowed(name),
            None => Cow::Owned(format!("reason-{value}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_short_lowercase_and_fall_back_to_the_number() {
        let names = ReasonNames::new(
            [
                (0, "SKB_NOT_DROPPED_YET".to_string()),
                (4, "SKB_DROP_REASON_TCP_CSUM".to_string()),
                (2, "SKB_DROP_REASON_NO_SOCKET".to_string()),
                (5, "SKB_DROP_REASON_MAX".to_string()),
            ],
            "SKB_DROP_REASON_",
        );
        assert_eq!(names.name(4), "tcp-csum");
        // Only the reasons, in order: not the not-dropped marker, not the sentinel.
        assert_eq!(names.values(), [2, 4]);
        assert_eq!(names.name(2), "no-socket");
        assert_eq!(names.name(99), "reason-99");
    }
}
