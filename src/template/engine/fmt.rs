//! Go's `fmt` as templates reach it: how an action prints a value
//! (`fmt.Sprint`), `print`, `println` and `printf` with the common verbs,
//! flags, width and precision, and Go's float formatting (`%v` of a
//! float64 is the shortest `%g`, so `8080.0` prints `8080` and `1e6`
//! prints `1e+06`).

use super::value::Value;

/// Appends `v` as `%v` formats it.
pub fn write_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Nil => out.extend_from_slice(b"<nil>"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Int(i) => out.extend_from_slice(i.to_string().as_bytes()),
        Value::Float(f) => out.extend_from_slice(format_g(*f, None).as_bytes()),
        Value::Str(s) => out.extend_from_slice(s),
        Value::List(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                write_value(out, item);
            }
            out.push(b']');
        }
        Value::Map(m) => {
            out.extend_from_slice(b"map[");
            for (i, (k, item)) in m.entries.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                out.extend_from_slice(k.as_bytes());
                out.push(b':');
                write_value(out, item);
            }
            out.push(b']');
        }
        Value::Struct(s) => {
            out.push(b'{');
            for (i, (_, item)) in s.fields.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                write_value(out, item);
            }
            out.push(b'}');
        }
    }
}

/// `fmt.Sprint`: spaces between operands when neither is a string.
pub fn sprint(args: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 && !matches!(a, Value::Str(_)) && !matches!(args[i - 1], Value::Str(_)) {
            out.push(b' ');
        }
        write_value(&mut out, a);
    }
    out
}

/// `fmt.Sprintln`: spaces between all operands and a final newline.
pub fn sprintln(args: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        write_value(&mut out, a);
    }
    out.push(b'\n');
    out
}

#[derive(Default, Clone, Copy)]
struct Spec {
    minus: bool,
    plus: bool,
    sharp: bool,
    zero: bool,
    space: bool,
    width: Option<usize>,
    prec: Option<usize>,
}

/// `fmt.Sprintf`, with Go's `%!verb(type=value)` texts for mismatches.
pub fn sprintf(format: &[u8], args: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut next = 0usize;
    let mut i = 0usize;
    while i < format.len() {
        let c = format[i];
        if c != b'%' {
            out.push(c);
            i += 1;
            continue;
        }
        i += 1;
        let mut spec = Spec::default();
        while i < format.len() {
            match format[i] {
                b'-' => spec.minus = true,
                b'+' => spec.plus = true,
                b'#' => spec.sharp = true,
                b'0' => spec.zero = true,
                b' ' => spec.space = true,
                _ => break,
            }
            i += 1;
        }
        let (width, after) = number_or_star(format, i, args, &mut next);
        spec.width = width;
        i = after;
        if i < format.len() && format[i] == b'.' {
            i += 1;
            let (prec, after) = number_or_star(format, i, args, &mut next);
            spec.prec = Some(prec.unwrap_or(0));
            i = after;
        }
        let Some(&verb) = format.get(i) else {
            out.extend_from_slice(b"%!(NOVERB)");
            break;
        };
        i += 1;
        if verb == b'%' {
            out.push(b'%');
            continue;
        }
        let Some(arg) = args.get(next) else {
            out.extend_from_slice(format!("%!{}(MISSING)", verb as char).as_bytes());
            continue;
        };
        next += 1;
        let body = format_verb(verb, &spec, arg);
        pad(
            &mut out,
            &body,
            &spec,
            matches!(arg, Value::Int(_) | Value::Float(_)),
        );
    }
    if next < args.len() {
        out.extend_from_slice(b"%!(EXTRA ");
        for (n, a) in args[next..].iter().enumerate() {
            if n > 0 {
                out.extend_from_slice(b", ");
            }
            out.extend_from_slice(a.type_name().as_bytes());
            out.push(b'=');
            write_value(&mut out, a);
        }
        out.push(b')');
    }
    out
}

fn number_or_star(
    format: &[u8],
    mut i: usize,
    args: &[Value],
    next: &mut usize,
) -> (Option<usize>, usize) {
    if format.get(i) == Some(&b'*') {
        let n = match args.get(*next) {
            Some(Value::Int(n)) => usize::try_from(*n).ok().filter(|n| *n <= MAX_WIDTH),
            _ => None,
        };
        *next += 1;
        return (n, i + 1);
    }
    let start = i;
    while i < format.len() && format[i].is_ascii_digit() {
        i += 1;
    }
    if i == start {
        return (None, i);
    }
    let n = std::str::from_utf8(&format[start..i])
        .ok()
        .and_then(|s| s.parse().ok());
    match n {
        // Go gives up on the rest of the format (`%!(NOVERB)`).
        Some(n) if n <= MAX_WIDTH => (Some(n), i),
        _ => (None, format.len()),
    }
}

/// Go's `fmt` refuses widths and precisions above a million.
const MAX_WIDTH: usize = 1_000_000;

fn bad_verb(verb: u8, arg: &Value) -> Vec<u8> {
    let mut out = format!("%!{}(", verb as char).into_bytes();
    out.extend_from_slice(arg.type_name().as_bytes());
    out.push(b'=');
    write_value(&mut out, arg);
    out.push(b')');
    out
}

fn format_verb(verb: u8, spec: &Spec, arg: &Value) -> Vec<u8> {
    match (verb, arg) {
        (b'v', Value::Float(f)) => format_g(*f, spec.prec).into_bytes(),
        (b'v', Value::Int(i)) | (b'd', Value::Int(i)) => {
            signed(i.unsigned_abs().to_string(), *i >= 0, spec)
        }
        (b'v', _) => {
            let mut out = Vec::new();
            write_value(&mut out, arg);
            out
        }
        (b's', Value::Str(s)) => truncate(s, spec.prec),
        (b's', Value::List(_) | Value::Map(_) | Value::Struct(_)) => {
            let mut out = Vec::new();
            write_value(&mut out, arg);
            out
        }
        (b'q', Value::Str(s)) => quote(s).into_bytes(),
        (b'q', Value::Int(i)) => match u32::try_from(*i).ok().and_then(char::from_u32) {
            Some(c) => format!("{c:?}").into_bytes(),
            None => bad_verb(verb, arg),
        },
        (b't', Value::Bool(b)) => b.to_string().into_bytes(),
        (b'c', Value::Int(i)) => u32::try_from(*i)
            .ok()
            .and_then(char::from_u32)
            .map(|c| c.to_string().into_bytes())
            .unwrap_or_else(|| "\u{FFFD}".into()),
        (b'x' | b'X', Value::Int(i)) => {
            let digits = format!("{:x}", i.unsigned_abs());
            let digits = if verb == b'X' {
                digits.to_uppercase()
            } else {
                digits
            };
            let digits = if spec.sharp {
                format!("0{}{digits}", verb as char)
            } else {
                digits
            };
            signed(digits, *i >= 0, spec)
        }
        (b'x' | b'X', Value::Str(s)) => {
            let hex: String = s.iter().map(|b| format!("{b:02x}")).collect();
            if verb == b'X' {
                hex.to_uppercase().into_bytes()
            } else {
                hex.into_bytes()
            }
        }
        (b'o', Value::Int(i)) => signed(format!("{:o}", i.unsigned_abs()), *i >= 0, spec),
        (b'b', Value::Int(i)) => signed(format!("{:b}", i.unsigned_abs()), *i >= 0, spec),
        (b'f' | b'F', Value::Float(f)) => {
            float_signed(format!("{:.*}", spec.prec.unwrap_or(6), f.abs()), *f, spec)
        }
        (b'e' | b'E', Value::Float(f)) => {
            let s = format_e(f.abs(), spec.prec.unwrap_or(6));
            let s = if verb == b'E' { s.to_uppercase() } else { s };
            float_signed(s, *f, spec)
        }
        (b'g' | b'G', Value::Float(f)) => {
            let s = format_g(f.abs(), spec.prec);
            float_signed(s, *f, spec)
        }
        (b'f' | b'F' | b'e' | b'g', Value::Int(_)) => bad_verb(verb, arg),
        _ => bad_verb(verb, arg),
    }
}

fn signed(digits: String, non_negative: bool, spec: &Spec) -> Vec<u8> {
    let sign = if !non_negative {
        "-"
    } else if spec.plus {
        "+"
    } else if spec.space {
        " "
    } else {
        ""
    };
    format!("{sign}{digits}").into_bytes()
}

fn float_signed(body: String, f: f64, spec: &Spec) -> Vec<u8> {
    if f.is_nan() {
        return b"NaN".to_vec();
    }
    signed(body, !f.is_sign_negative(), spec)
}

fn truncate(s: &[u8], prec: Option<usize>) -> Vec<u8> {
    match (prec, std::str::from_utf8(s)) {
        (Some(p), Ok(text)) => text.chars().take(p).collect::<String>().into_bytes(),
        (Some(p), Err(_)) => s[..p.min(s.len())].to_vec(),
        (None, _) => s.to_vec(),
    }
}

/// Pads `body` to the spec's width (counted in characters, as Go does).
fn pad(out: &mut Vec<u8>, body: &[u8], spec: &Spec, numeric: bool) {
    let len = String::from_utf8_lossy(body).chars().count();
    let Some(width) = spec.width.filter(|w| *w > len) else {
        out.extend_from_slice(body);
        return;
    };
    let fill = width - len;
    if spec.minus {
        out.extend_from_slice(body);
        out.extend(std::iter::repeat_n(b' ', fill));
    } else if spec.zero && numeric {
        // Zero padding goes after the sign.
        let (sign, digits) = match body.first() {
            Some(b'-' | b'+' | b' ') => body.split_at(1),
            _ => body.split_at(0),
        };
        out.extend_from_slice(sign);
        out.extend(std::iter::repeat_n(b'0', fill));
        out.extend_from_slice(digits);
    } else {
        out.extend(std::iter::repeat_n(b' ', fill));
        out.extend_from_slice(body);
    }
}

/// The shortest decimal digits of `f` (no sign) and its decimal exponent:
/// `1234.5` is `("12345", 3)`, meaning 1.2345e3.
fn shortest_digits(f: f64) -> (String, i32) {
    let s = format!("{:e}", f.abs());
    let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    (digits, exp.parse().unwrap_or(0))
}

/// Go's `%e` with a precision: `1.500000e+03`.
pub fn format_e(f: f64, prec: usize) -> String {
    let s = format!("{:.*e}", prec, f);
    let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exp.abs())
}

/// Go's `%g` (`prec` None: the shortest representation, as `%v` uses).
pub fn format_g(f: f64, prec: Option<usize>) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    let neg = if f.is_sign_negative() && f != 0.0 {
        "-"
    } else {
        ""
    };
    if f == 0.0 {
        return format!("{neg}0");
    }
    let (digits, exp) = match prec {
        None => shortest_digits(f),
        Some(p) => {
            let p = p.max(1);
            let s = format!("{:.*e}", p - 1, f.abs());
            let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
            let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
            let digits = digits.trim_end_matches('0').to_string();
            let digits = if digits.is_empty() {
                "0".into()
            } else {
                digits
            };
            (digits, exp.parse().unwrap_or(0))
        }
    };
    // Go switches to the exponent form below 1e-4 and from the precision
    // up (6 for the shortest form).
    let eprec = match prec {
        None => 6,
        Some(p) => p.max(1) as i32,
    };
    if exp < -4 || exp >= eprec {
        let (first, rest) = digits.split_at(1);
        let sign = if exp < 0 { '-' } else { '+' };
        let frac = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        return format!("{neg}{first}{frac}e{sign}{:02}", exp.abs());
    }
    let body = if exp < 0 {
        format!("0.{}{digits}", "0".repeat((-exp - 1) as usize))
    } else {
        let int_len = exp as usize + 1;
        if digits.len() <= int_len {
            format!("{digits}{}", "0".repeat(int_len - digits.len()))
        } else {
            format!("{}.{}", &digits[..int_len], &digits[int_len..])
        }
    };
    format!("{neg}{body}")
}

/// Go's `strconv.Quote`: a double-quoted string with Go escapes; bytes
/// that are not UTF-8 become `\x..`.
pub fn quote(s: &[u8]) -> String {
    let mut out = String::from("\"");
    let mut rest = s;
    while !rest.is_empty() {
        let (valid, invalid) = match std::str::from_utf8(rest) {
            Ok(text) => (text, &[][..]),
            Err(e) => {
                let (good, bad) = rest.split_at(e.valid_up_to());
                // Only the valid prefix is text; the rest is handled below.
                (std::str::from_utf8(good).unwrap_or_default(), bad)
            }
        };
        for c in valid.chars() {
            match c {
                '\x07' => out.push_str("\\a"),
                '\x08' => out.push_str("\\b"),
                '\x0c' => out.push_str("\\f"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\x0b' => out.push_str("\\v"),
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                    out.push_str(&format!("\\x{:02x}", c as u32))
                }
                c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
                c => out.push(c),
            }
        }
        match invalid.first() {
            Some(b) => {
                out.push_str(&format!("\\x{b:02x}"));
                rest = &invalid[1..];
            }
            None => rest = invalid,
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn printf(f: &str, args: &[Value]) -> String {
        String::from_utf8(sprintf(f.as_bytes(), args)).unwrap()
    }

    #[test]
    fn floats_print_as_go_does() {
        assert_eq!(format_g(8080.0, None), "8080");
        assert_eq!(format_g(1.5, None), "1.5");
        assert_eq!(format_g(100000.0, None), "100000");
        assert_eq!(format_g(1e6, None), "1e+06");
        assert_eq!(format_g(123456789.0, None), "1.23456789e+08");
        assert_eq!(format_g(0.0001, None), "0.0001");
        assert_eq!(format_g(0.00001, None), "1e-05");
        assert_eq!(format_g(-2.5, None), "-2.5");
        assert_eq!(format_g(0.0, None), "0");
        assert_eq!(format_e(1500.0, 6), "1.500000e+03");
    }

    #[test]
    fn printf_verbs() {
        let s = Value::string;
        assert_eq!(printf("%s:%d", &[s("web"), Value::Int(80)]), "web:80");
        assert_eq!(printf("%5s|%-5s|", &[s("a"), s("b")]), "    a|b    |");
        assert_eq!(
            printf(
                "%05d %+d %x %X %o",
                &[
                    Value::Int(-42),
                    Value::Int(3),
                    Value::Int(255),
                    Value::Int(255),
                    Value::Int(8)
                ]
            ),
            "-0042 +3 ff FF 10"
        );
        assert_eq!(
            printf(
                "%.2f %v %t",
                &[Value::Float(1.23456), Value::Float(2.0), Value::Bool(true)]
            ),
            "1.23 2 true"
        );
        assert_eq!(printf("%q", &[s("a\"b\n")]), r#""a\"b\n""#);
        assert_eq!(printf("%v", &[Value::list(vec![s("a"), s("b")])]), "[a b]");
        assert_eq!(printf("100%%", &[]), "100%");
        assert_eq!(printf("%d", &[s("x")]), "%!d(string=x)");
        assert_eq!(printf("%s %s", &[s("x")]), "x %!s(MISSING)");
        assert_eq!(printf("%s", &[s("x"), Value::Int(1)]), "x%!(EXTRA int=1)");
        assert_eq!(printf("%.1s", &[s("héllo")]), "h");
    }

    #[test]
    fn sprint_spaces_only_between_non_strings() {
        let out = sprint(&[
            Value::Int(1),
            Value::Int(2),
            Value::string("a"),
            Value::Int(3),
        ]);
        assert_eq!(out, b"1 2a3");
        assert_eq!(sprintln(&[Value::string("a"), Value::Int(1)]), b"a 1\n");
    }

    #[test]
    fn quote_escapes_invalid_utf8() {
        assert_eq!(quote(b"a\xffb"), r#""a\xffb""#);
        assert_eq!(quote("é\t".as_bytes()), "\"é\\t\"");
    }
}
