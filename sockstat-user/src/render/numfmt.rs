//! C printf's `%g` and ss's rate and timer formats, which Rust's formatter has no
//! equivalent for.

/// Appends `n` in decimal (the listing's hot path: core::fmt costs several times more).
pub fn push_uint(s: &mut String, n: impl itoa::Integer) {
    s.push_str(itoa::Buffer::new().format(n));
}

/// Appends `n` left-aligned in at least `width` columns, like printf's `%-6d`.
pub fn push_uint_padded(s: &mut String, n: impl itoa::Integer, width: usize) {
    let mut buf = itoa::Buffer::new();
    let digits = buf.format(n);
    s.push_str(digits);
    for _ in digits.len()..width {
        s.push(' ');
    }
}

/// Appends a dotted-quad IPv4 address.
pub fn push_ipv4(s: &mut String, octets: [u8; 4]) {
    for (i, o) in octets.iter().enumerate() {
        if i > 0 {
            s.push('.');
        }
        push_uint(s, *o);
    }
}

/// `%.{precision}g`: shortest of fixed or exponent form, trailing zeros removed.
pub fn g(x: f64, precision: usize) -> String {
    if x == 0.0 {
        return "0".into();
    }
    if !x.is_finite() {
        return format!("{x}");
    }
    let p = precision.max(1);
    let sci = format!("{:.*e}", p - 1, x);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if exp < -4 || exp >= p as i32 {
        let m = strip_zeros(mantissa);
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{m}e{sign}{:02}", exp.abs())
    } else {
        let decimals = (p as i32 - 1 - exp).max(0) as usize;
        strip_zeros(&format!("{x:.decimals$}")).to_string()
    }
}

fn strip_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// ss's `sprint_bw`: bits per second with a k/M/G/T suffix (`%.3g`), or a plain integer
/// with `-n`. The caller appends "bps".
pub fn bandwidth(bps: f64, numeric: bool) -> String {
    if numeric {
        return format!("{bps:.0}");
    }
    for (scale, unit) in [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")] {
        if bps >= scale {
            return format!("{}{unit}", g(bps / scale, 3));
        }
    }
    g(bps, 6)
}

/// ss's `print_ms_timer` (with the iproute2 7.x fix: `1.500sec`, not `1.500ms`).
/// A duration for people, in at most 7 characters: 12µs, 3.4ms, 340ms, 1.2s, 45s, 2m05s,
/// 3h07m, 12d03h.
pub fn duration(ns: u64) -> String {
    let us = ns / 1_000;
    match us {
        0..=999 => format!("{us}µs"),
        1_000..=9_999 => format!("{:.1}ms", us as f64 / 1e3),
        10_000..=999_999 => format!("{}ms", us / 1_000),
        1_000_000..=9_999_999 => format!("{:.1}s", us as f64 / 1e6),
        10_000_000..=59_999_999 => format!("{}s", us / 1_000_000),
        _ => {
            let s = us / 1_000_000;
            if s < 3_600 {
                format!("{}m{:02}s", s / 60, s % 60)
            } else if s < 86_400 {
                format!("{}h{:02}m", s / 3_600, s % 3_600 / 60)
            } else {
                format!("{}d{:02}h", s / 86_400, s % 86_400 / 3_600)
            }
        }
    }
}

/// A byte count for people, in at most 5 characters: 812, 12.3k, 456k, 4.5M, 1.2G (powers
/// of 1024: these are sizes).
pub fn bytes(n: u64) -> String {
    let scaled = |v: f64, unit: char| {
        if v < 100.0 {
            format!("{v:.1}{unit}")
        } else {
            format!("{v:.0}{unit}")
        }
    };
    let f = n as f64;
    match n {
        0..=9_999 => n.to_string(),
        10_000..=1_023_999 => scaled(f / 1024.0, 'k'),
        1_024_000..=1_048_575_999 => scaled(f / 1_048_576.0, 'M'),
        _ => scaled(f / 1_073_741_824.0, 'G'),
    }
}

pub fn ms_timer(ms: u32) -> String {
    let mut secs = ms / 1000;
    let minutes = secs / 60;
    secs %= 60;
    let mut msecs = ms % 1000;
    let mut out = String::new();
    if minutes > 0 {
        msecs = 0;
        out.push_str(&format!("{minutes}min"));
        if minutes > 9 {
            secs = 0;
        }
    }
    if secs > 0 {
        if secs > 9 {
            msecs = 0;
        }
        out.push_str(&format!("{secs}{}", if msecs > 0 { "." } else { "sec" }));
    }
    if msecs > 0 {
        out.push_str(&format!(
            "{msecs:03}{}",
            if secs > 0 { "sec" } else { "ms" }
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes_for_people() {
        let cases = [
            (12_000, "12µs"),
            (3_400_000, "3.4ms"),
            (340_000_000, "340ms"),
            (1_230_000_000, "1.2s"),
            (45_000_000_000, "45s"),
            (125_000_000_000, "2m05s"),
            (11_220_000_000_000, "3h07m"),
            (1_047_600_000_000_000, "12d03h"),
        ];
        for (ns, want) in cases {
            assert_eq!(duration(ns), want, "{ns}");
        }
        for (n, want) in [
            (812, "812"),
            (12_600, "12.3k"),
            (466_944, "456k"),
            (4_718_592, "4.5M"),
            (1_288_490_189, "1.2G"),
        ] {
            assert_eq!(bytes(n), want, "{n}");
        }
    }

    #[test]
    fn percent_g() {
        assert_eq!(g(0.04, 6), "0.04");
        assert_eq!(g(204.0, 6), "204");
        assert_eq!(g(5.648, 6), "5.648");
        assert_eq!(g(19.04, 3), "19");
        assert_eq!(g(25.41, 3), "25.4");
        assert_eq!(g(145.6, 3), "146");
        assert_eq!(g(1234567.0, 6), "1.23457e+06");
        assert_eq!(g(0.00001, 6), "1e-05");
        assert_eq!(g(2.88671875, 6), "2.88672");
    }

    #[test]
    fn fast_integers_and_addresses() {
        let mut s = String::new();
        push_uint_padded(&mut s, 42u32, 6);
        push_uint(&mut s, 65535u16);
        s.push(' ');
        push_ipv4(&mut s, [127, 0, 0, 1]);
        push_uint_padded(&mut s, 1234567u32, 6);
        assert_eq!(s, "42    65535 127.0.0.11234567");
    }

    #[test]
    fn rates_and_timers() {
        assert_eq!(bandwidth(944_000_000.0, false), "944M");
        assert_eq!(bandwidth(19_040_000_000.0, false), "19G");
        assert_eq!(bandwidth(25_410_000.0, false), "25.4M");
        assert_eq!(bandwidth(512.0, false), "512");
        assert_eq!(bandwidth(145635555556.0, true), "145635555556");
        assert_eq!(ms_timer(384), "384ms");
        assert_eq!(ms_timer(5), "005ms");
        assert_eq!(ms_timer(1500), "1.500sec");
        assert_eq!(ms_timer(12345), "12sec");
        assert_eq!(ms_timer(61000), "1min1sec");
        assert_eq!(ms_timer(7_140_000), "119min");
        assert_eq!(ms_timer(0), "");
    }
}
