//! The parts of Go's `strconv` a filter goes through, with Go's results and
//! error texts: `Unquote` for string literals, `Quote` for the `%q` in
//! every error message, and `ParseInt`/`ParseUint`/`ParseBool` for values
//! coerced to a field's type (go-bexpr's `coerce.go`, base 0).

/// Go's `strconv.Unquote` of a `"..."` or `` `...` `` literal (quotes
/// included). `None` is Go's `invalid syntax`.
pub fn unquote(lit: &str) -> Option<Vec<u8>> {
    let bytes = lit.as_bytes();
    if bytes.len() < 2 {
        return None;
    }
    let (quote, body) = (bytes[0], &lit[1..lit.len() - 1]);
    if bytes[bytes.len() - 1] != quote {
        return None;
    }
    match quote {
        b'`' => {
            if body.contains('`') {
                return None;
            }
            // Carriage returns are dropped from raw strings.
            Some(body.bytes().filter(|b| *b != b'\r').collect())
        }
        b'"' => unquote_double(body),
        _ => None,
    }
}

fn unquote_double(body: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(body.len());
    let mut chars = body.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        match c {
            '"' | '\n' => return None,
            '\\' => {}
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                continue;
            }
        }
        let (_, e) = chars.next()?;
        let simple = match e {
            'a' => Some(0x07),
            'b' => Some(0x08),
            'f' => Some(0x0c),
            'n' => Some(b'\n'),
            'r' => Some(b'\r'),
            't' => Some(b'\t'),
            'v' => Some(0x0b),
            '\\' => Some(b'\\'),
            '"' => Some(b'"'),
            _ => None,
        };
        if let Some(b) = simple {
            out.push(b);
            continue;
        }
        match e {
            'x' | 'u' | 'U' => {
                let n = match e {
                    'x' => 2,
                    'u' => 4,
                    _ => 8,
                };
                let mut v: u32 = 0;
                for _ in 0..n {
                    let (_, h) = chars.next()?;
                    v = (v << 4) | h.to_digit(16)?;
                }
                if e == 'x' {
                    // One byte, UTF-8 or not.
                    out.push(v as u8);
                } else {
                    let ch = char::from_u32(v)?;
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                }
            }
            '0'..='7' => {
                let mut v = e.to_digit(8)?;
                for _ in 0..2 {
                    let (_, d) = chars.next()?;
                    v = (v << 3) | d.to_digit(8)?;
                }
                if v > 255 {
                    return None;
                }
                out.push(v as u8);
            }
            _ => return None,
        }
    }
    Some(out)
}

/// Go's `strconv.Quote` (what `%q` prints for a string).
pub fn quote(s: &[u8]) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    let mut rest = s;
    while !rest.is_empty() {
        let (ch, width) = decode_rune(rest);
        match ch {
            None => {
                out.push_str(&format!("\\x{:02x}", rest[0]));
            }
            Some(c) => escape_rune(&mut out, c),
        }
        rest = &rest[width..];
    }
    out.push('"');
    out
}

/// The first UTF-8 sequence of `s`: the char and its width, or `None` and
/// width 1 for a byte that starts no valid sequence.
fn decode_rune(s: &[u8]) -> (Option<char>, usize) {
    let max = s.len().min(4);
    for w in 1..=max {
        if let Ok(t) = std::str::from_utf8(&s[..w]) {
            return (t.chars().next(), w);
        }
    }
    (None, 1)
}

fn escape_rune(out: &mut String, c: char) {
    if c == '"' || c == '\\' {
        out.push('\\');
        out.push(c);
        return;
    }
    if is_print(c) {
        out.push(c);
        return;
    }
    match c {
        '\x07' => out.push_str("\\a"),
        '\x08' => out.push_str("\\b"),
        '\x0c' => out.push_str("\\f"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\x0b' => out.push_str("\\v"),
        c if (c as u32) < 0x20 || c as u32 == 0x7f => {
            out.push_str(&format!("\\x{:02x}", c as u32));
        }
        c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
        c => out.push_str(&format!("\\U{:08x}", c as u32)),
    }
}

/// Go's `unicode.IsPrint`, as far as the standard library can tell it:
/// control characters, spaces other than U+0020, format characters, private
/// use and non-characters are not printable.
fn is_print(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    let u = c as u32;
    let format = matches!(u,
        0x00AD | 0x0600..=0x0605 | 0x061C | 0x06DD | 0x070F | 0x08E2 | 0x180E
        | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x2064 | 0x2066..=0x206F
        | 0xFEFF | 0xFFF9..=0xFFFB | 0x110BD | 0x110CD | 0x1BCA0..=0x1BCA3
        | 0x1D173..=0x1D17A | 0xE0001 | 0xE0020..=0xE007F);
    let private = matches!(u, 0xE000..=0xF8FF | 0xF0000..=0xFFFFD | 0x100000..=0x10FFFD);
    let nonchar = (0xFDD0..=0xFDEF).contains(&u) || u & 0xFFFE == 0xFFFE;
    !(format || private || nonchar)
}

/// A `strconv` parse failure, displayed as Go displays a `*NumError`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumError {
    func: &'static str,
    num: Vec<u8>,
    range: bool,
}

impl std::fmt::Display for NumError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "strconv.{}: parsing {}: {}",
            self.func,
            quote(&self.num),
            if self.range {
                "value out of range"
            } else {
                "invalid syntax"
            }
        )
    }
}

fn syntax(func: &'static str, s: &[u8]) -> NumError {
    NumError {
        func,
        num: s.to_vec(),
        range: false,
    }
}

fn range(func: &'static str, s: &[u8]) -> NumError {
    NumError {
        func,
        num: s.to_vec(),
        range: true,
    }
}

/// Go's `strconv.ParseUint(s, 0, bits)`.
pub fn parse_uint(s: &[u8], bits: u32) -> Result<u64, NumError> {
    const FUNC: &str = "ParseUint";
    if s.is_empty() {
        return Err(syntax(FUNC, s));
    }
    let b = s;
    let (base, digits): (u64, &[u8]) = if b[0] == b'0' {
        match b.get(1).map(u8::to_ascii_lowercase) {
            Some(b'b') if b.len() >= 3 => (2, &b[2..]),
            Some(b'o') if b.len() >= 3 => (8, &b[2..]),
            Some(b'x') if b.len() >= 3 => (16, &b[2..]),
            _ => (8, &b[1..]),
        }
    } else {
        (10, b)
    };
    let max: u64 = if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    };
    let cutoff = u64::MAX / base + 1;
    let mut underscores = false;
    let mut n: u64 = 0;
    for &c in digits {
        let d = match c {
            b'_' => {
                underscores = true;
                continue;
            }
            b'0'..=b'9' => c - b'0',
            c if c.is_ascii_alphabetic() => c.to_ascii_lowercase() - b'a' + 10,
            _ => return Err(syntax(FUNC, s)),
        };
        if u64::from(d) >= base {
            return Err(syntax(FUNC, s));
        }
        if n >= cutoff {
            return Err(range(FUNC, s));
        }
        n *= base;
        let n1 = n.wrapping_add(u64::from(d));
        if n1 < n || n1 > max {
            return Err(range(FUNC, s));
        }
        n = n1;
    }
    if underscores && !underscore_ok(s) {
        return Err(syntax(FUNC, s));
    }
    Ok(n)
}

/// Go's `strconv.ParseInt(s, 0, bits)`.
pub fn parse_int(s: &[u8], bits: u32) -> Result<i64, NumError> {
    const FUNC: &str = "ParseInt";
    if s.is_empty() {
        return Err(syntax(FUNC, s));
    }
    let (neg, rest) = match s[0] {
        b'+' => (false, &s[1..]),
        b'-' => (true, &s[1..]),
        _ => (false, s),
    };
    let un = match parse_uint(rest, bits) {
        Ok(v) => v,
        Err(e) if e.range => u64::MAX,
        Err(_) => return Err(syntax(FUNC, s)),
    };
    let cutoff = 1u64 << (bits.clamp(1, 64) - 1);
    if !neg && un >= cutoff {
        return Err(range(FUNC, s));
    }
    if neg && un > cutoff {
        return Err(range(FUNC, s));
    }
    Ok(if neg {
        (un as i64).wrapping_neg()
    } else {
        un as i64
    })
}

/// Go's `strconv.ParseBool`.
pub fn parse_bool(s: &[u8]) -> Result<bool, NumError> {
    match s {
        b"1" | b"t" | b"T" | b"TRUE" | b"true" | b"True" => Ok(true),
        b"0" | b"f" | b"F" | b"FALSE" | b"false" | b"False" => Ok(false),
        _ => Err(syntax("ParseBool", s)),
    }
}

/// Go's `underscoreOK`: underscores only between digits (or after a base
/// prefix), as in Go number literals.
fn underscore_ok(s: &[u8]) -> bool {
    let mut b = s;
    if let Some(&c) = b.first() {
        if c == b'+' || c == b'-' {
            b = &b[1..];
        }
    }
    let mut saw = b'^';
    let mut i = 0;
    let mut hex = false;
    if b.len() >= 2 && b[0] == b'0' && matches!(b[1].to_ascii_lowercase(), b'b' | b'o' | b'x') {
        i = 2;
        saw = b'0';
        hex = b[1].eq_ignore_ascii_case(&b'x');
    }
    while i < b.len() {
        let c = b[i];
        i += 1;
        if c.is_ascii_digit() || (hex && c.is_ascii_hexdigit()) {
            saw = b'0';
            continue;
        }
        if c == b'_' {
            if saw != b'0' {
                return false;
            }
            saw = b'_';
            continue;
        }
        if saw == b'_' {
            return false;
        }
        saw = b'!';
    }
    saw != b'_'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unquote_is_gos() {
        assert_eq!(unquote(r#""a\tb""#), Some(b"a\tb".to_vec()));
        assert_eq!(
            unquote(r#""\x41\101\u00e9\U0001F600""#),
            Some("AAé😀".as_bytes().to_vec())
        );
        assert_eq!(unquote(r#""\xff""#), Some(vec![0xff]));
        assert_eq!(unquote("`a\\n\r`"), Some(b"a\\n".to_vec()));
        assert_eq!(unquote(r#""\q""#), None, "unknown escape");
        assert_eq!(unquote(r#""\'""#), None, "\\' is only for runes");
        assert_eq!(unquote("\"a\nb\""), None, "raw newline");
        assert_eq!(unquote(r#""\400""#), None, "octal above 255");
        assert_eq!(unquote(r#""\ud800""#), None, "surrogate");
        assert_eq!(unquote(r#""\x4""#), None);
    }

    #[test]
    fn quote_is_gos() {
        assert_eq!(quote(b"Service.Port"), r#""Service.Port""#);
        assert_eq!(quote(b"a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(quote(b"\x01\n\x7f"), r#""\x01\n\x7f""#);
        assert_eq!(quote(&[0xff, b'a']), r#""\xffa""#);
        assert_eq!(quote("é\u{a0}\u{200b}".as_bytes()), "\"é\\u00a0\\u200b\"");
    }

    #[test]
    fn ints_parse_as_go_base_zero() {
        assert_eq!(parse_int(b"80", 64), Ok(80));
        assert_eq!(parse_int(b"0x50", 64), Ok(80));
        assert_eq!(parse_int(b"0o17", 64), Ok(15));
        assert_eq!(parse_int(b"017", 64), Ok(15));
        assert_eq!(parse_int(b"0b101", 64), Ok(5));
        assert_eq!(parse_int(b"-1_000", 64), Ok(-1000));
        assert_eq!(parse_int(b"0", 64), Ok(0));
        assert_eq!(parse_int(b"-9223372036854775808", 64), Ok(i64::MIN));
        assert_eq!(
            parse_int(b"abc", 64).unwrap_err().to_string(),
            r#"strconv.ParseInt: parsing "abc": invalid syntax"#
        );
        assert_eq!(
            parse_int(b"9223372036854775808", 64)
                .unwrap_err()
                .to_string(),
            r#"strconv.ParseInt: parsing "9223372036854775808": value out of range"#
        );
        assert_eq!(
            parse_int(b"1__0", 64).unwrap_err().to_string(),
            r#"strconv.ParseInt: parsing "1__0": invalid syntax"#
        );
        assert!(parse_int(b"", 64).is_err());
        assert!(parse_int(b"0x", 64).is_err());
        assert!(parse_int(b"08", 64).is_err(), "octal");
        assert_eq!(
            parse_uint(b"300", 8).unwrap_err().to_string(),
            r#"strconv.ParseUint: parsing "300": value out of range"#
        );
        assert_eq!(
            parse_uint(b"-1", 16).unwrap_err().to_string(),
            r#"strconv.ParseUint: parsing "-1": invalid syntax"#
        );
        assert_eq!(parse_uint(b"255", 8), Ok(255));
    }

    #[test]
    fn bools_parse_as_go() {
        assert_eq!(parse_bool(b"T"), Ok(true));
        assert_eq!(parse_bool(b"False"), Ok(false));
        assert_eq!(
            parse_bool(b"yes").unwrap_err().to_string(),
            r#"strconv.ParseBool: parsing "yes": invalid syntax"#
        );
    }
}
