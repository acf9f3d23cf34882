//! Go-style durations (`10s`, `1m30s`, `1.5h`, `300ms`), as Consul accepts them
//! in JSON bodies, query parameters (`?wait=`) and config files, and as it
//! prints them back (`time.Duration.String()`).

use std::time::Duration;

/// Parses a Go duration string (`time.ParseDuration`). A bare `0` is allowed;
/// any other number needs a unit.
pub fn parse(s: &str) -> Result<Duration, String> {
    let orig = s;
    let mut s = s.trim();
    if s.is_empty() {
        return Err(format!("time: invalid duration \"{orig}\""));
    }
    let mut neg = false;
    if let Some(rest) = s.strip_prefix('-') {
        neg = true;
        s = rest;
    } else if let Some(rest) = s.strip_prefix('+') {
        s = rest;
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total: f64 = 0.0;
    while !s.is_empty() {
        let num_end = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        if num_end == 0 {
            return Err(format!("time: invalid duration \"{orig}\""));
        }
        let value: f64 = s[..num_end]
            .parse()
            .map_err(|_| format!("time: invalid duration \"{orig}\""))?;
        s = &s[num_end..];
        let unit_end = s
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(s.len());
        let unit = &s[..unit_end];
        s = &s[unit_end..];
        let nanos_per = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => return Err(format!("time: missing unit in duration \"{orig}\"")),
            _ => {
                return Err(format!(
                    "time: unknown unit \"{unit}\" in duration \"{orig}\""
                ))
            }
        };
        total += value * nanos_per;
    }
    if neg && total > 0.0 {
        return Err(format!("time: negative duration \"{orig}\""));
    }
    if total > u64::MAX as f64 {
        return Err(format!("time: invalid duration \"{orig}\""));
    }
    Ok(Duration::from_nanos(total as u64))
}

/// Formats like Go's `time.Duration.String()`: `0s`, `1.5s`, `1m30s`, `10ms`.
pub fn format(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return format!("{}µs", trim_frac(nanos as f64 / 1e3));
    }
    if nanos < 1_000_000_000 {
        return format!("{}ms", trim_frac(nanos as f64 / 1e6));
    }
    let total_secs = nanos / 1_000_000_000;
    let frac_nanos = nanos % 1_000_000_000;
    let h = total_secs / 3600;
    let m = (total_secs % 3600) / 60;
    let s = total_secs % 60;
    let mut secs = s.to_string();
    if frac_nanos > 0 {
        let frac = format!("{frac_nanos:09}");
        secs.push('.');
        secs.push_str(frac.trim_end_matches('0'));
    }
    if h > 0 {
        format!("{h}h{m}m{secs}s")
    } else if m > 0 {
        format!("{m}m{secs}s")
    } else {
        format!("{secs}s")
    }
}

fn trim_frac(v: f64) -> String {
    let s = format!("{v:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_forms() {
        assert_eq!(parse("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse("90m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse("120000ms").unwrap(), Duration::from_secs(120));
        assert_eq!(parse("1.5h").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse("0").unwrap(), Duration::ZERO);
        assert!(parse("10").is_err());
        assert!(parse("ten").is_err());
        assert!(parse("").is_err());
        assert!(parse("5y").is_err());
        assert!(parse("-5s").is_err());
    }

    #[test]
    fn formats_like_go() {
        assert_eq!(format(Duration::from_secs(10)), "10s");
        assert_eq!(format(Duration::from_secs(90)), "1m30s");
        assert_eq!(format(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(format(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format(Duration::from_millis(10)), "10ms");
        assert_eq!(format(Duration::ZERO), "0s");
    }
}
