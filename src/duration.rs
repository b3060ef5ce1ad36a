//! Human durations as written in annotations and the admin config: `30m`, `1h30m`,
//! `45s`, `2d`. Units are d, h, m, s; every number is a whole number.
use std::time::Duration;

/// Parse a duration such as `1h30m`. Zero and empty strings are errors: a
/// namespace that should never idle-sleep says `off` instead.
pub fn parse(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("empty duration".into());
    }
    let mut total: u64 = 0;
    let mut num: Option<u64> = None;
    for c in t.chars() {
        if let Some(d) = c.to_digit(10) {
            let n = num.unwrap_or(0);
            num = Some(
                n.checked_mul(10)
                    .and_then(|n| n.checked_add(u64::from(d)))
                    .ok_or_else(|| format!("duration {s:?} is too large"))?,
            );
            continue;
        }
        let unit = match c {
            'd' => 86_400,
            'h' => 3_600,
            'm' => 60,
            's' => 1,
            _ => {
                return Err(format!(
                    "duration {s:?}: unexpected {c:?}, expected a number followed by d, h, m or s (for example 1h30m)"
                ));
            }
        };
        let n = num
            .take()
            .ok_or_else(|| format!("duration {s:?}: unit {c:?} without a number"))?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("duration {s:?} is too large"))?;
    }
    if num.is_some() {
        return Err(format!(
            "duration {s:?}: number without a unit (use s, m, h or d)"
        ));
    }
    if total == 0 {
        return Err(format!("duration {s:?} is zero; use \"off\" to disable"));
    }
    if total > 366 * 86_400 {
        return Err(format!("duration {s:?} is longer than a year"));
    }
    Ok(Duration::from_secs(total))
}

/// Render a duration the way [`parse`] reads it.
pub fn format(d: Duration) -> String {
    let mut s = d.as_secs();
    if s == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, len) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if s >= len {
            out.push_str(&format!("{}{unit}", s / len));
            s %= len;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_the_documented_forms() {
        assert_eq!(parse("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("2d"), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse(" 45s "), Ok(Duration::from_secs(45)));
    }

    #[test]
    fn rejects_what_is_not_a_duration() {
        for bad in [
            "",
            "banana",
            "30",
            "m",
            "0s",
            "1.5h",
            "-5m",
            "99999999999999999999s",
            "400d",
        ] {
            assert!(parse(bad).is_err(), "{bad} should be rejected");
        }
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,20}") { let _ = parse(&s); }

        #[test]
        fn format_then_parse_is_identity(secs in 1u64..(366 * 86_400)) {
            let d = Duration::from_secs(secs);
            prop_assert_eq!(parse(&format(d)), Ok(d));
        }
    }
}
