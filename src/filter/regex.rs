//! `matches` patterns: Go's `regexp` (RE2 syntax) run on the `regex` crate.
//!
//! The two accept almost the same language. Where they differ the pattern
//! is rewritten before it is compiled, so it means what it means in Go:
//!
//! * `\d \w \s \b` are ASCII in Go and Unicode in the crate;
//! * `\Q...\E`, octal escapes (`\012`) and `\p{^Greek}` exist only in Go;
//! * a `{` that starts no repetition is a literal in Go;
//! * inside a class Go reads `[`, `&&`, `~~` and `--` literally, the crate
//!   as nesting and set operations; `\<` `\>` are literals in Go and word
//!   boundaries in the crate;
//! * Go refuses `a**`, repeat counts above 1000, unknown `[:name:]` classes
//!   and flags other than `imsU`, and allows `(?ii)` and `(?)`.
//!
//! Compile errors are reported in Go's words, `error parsing regexp:
//! <what>: `<where>``, with the part of the pattern Go would quote.

/// A compiled `matches` pattern.
pub type Pattern = regex::Regex;

/// Compiles `pattern` as Go's `regexp.Compile` would; the error is Go's
/// text.
pub fn compile(pattern: &[u8]) -> Result<Pattern, String> {
    let text = match std::str::from_utf8(pattern) {
        Ok(text) => text,
        Err(e) => {
            let rest = &pattern[e.valid_up_to()..];
            return Err(go_error("invalid UTF-8", &String::from_utf8_lossy(rest)));
        }
    };
    let t = translate(text)?;
    match regex::RegexBuilder::new(&t.text).build() {
        Ok(re) => Ok(re),
        Err(e) => Err(explain(text, &t, e)),
    }
}

fn go_error(code: &str, expr: &str) -> String {
    format!("error parsing regexp: {code}: `{expr}`")
}

/// The rewritten pattern, and for each of its bytes the offset in the
/// original it came from (one more entry for the end).
struct Translation {
    text: String,
    origin: Vec<usize>,
}

impl Translation {
    fn push(&mut self, s: &str, from: usize) {
        self.text.push_str(s);
        self.origin.extend(std::iter::repeat_n(from, s.len()));
    }

    fn original(&self, at: usize) -> usize {
        self.origin.get(at).copied().unwrap_or(usize::MAX)
    }
}

const PERL_CLASSES: &[(char, &str)] = &[
    ('d', "[0-9]"),
    ('D', "[^0-9]"),
    ('s', "[\\t\\n\\x0C\\r ]"),
    ('S', "[^\\t\\n\\x0C\\r ]"),
    ('w', "[0-9A-Za-z_]"),
    ('W', "[^0-9A-Za-z_]"),
];

const POSIX_CLASSES: &[&str] = &[
    "alnum", "alpha", "ascii", "blank", "cntrl", "digit", "graph", "lower", "print", "punct",
    "space", "upper", "word", "xdigit",
];

fn translate(p: &str) -> Result<Translation, String> {
    let mut t = Translation {
        text: String::with_capacity(p.len() + 8),
        origin: Vec::with_capacity(p.len() + 8),
    };
    let b = p.as_bytes();
    let mut i = 0;
    // Inside `[...]`: where a `]` would still be a literal.
    let mut class: Option<usize> = None;
    // Where the last repetition operator began, while it is the last token.
    let mut last_repeat: Option<usize> = None;
    while i < b.len() {
        let c = p[i..].chars().next().unwrap_or('\0');
        if let Some(first) = class {
            i = translate_in_class(p, i, c, first, &mut class, &mut t)?;
            continue;
        }
        let repeat_end = repetition_at(p, i)?;
        if let Some(end) = repeat_end {
            if let Some(prev) = last_repeat {
                return Err(go_error(
                    "invalid nested repetition operator",
                    &p[prev..end],
                ));
            }
            last_repeat = Some(i);
            t.push(&p[i..end], i);
            i = end;
            continue;
        }
        last_repeat = None;
        match c {
            '[' => {
                t.push("[", i);
                let mut first = i + 1;
                if b.get(first) == Some(&b'^') {
                    t.push("^", first);
                    first += 1;
                }
                class = Some(first);
                i = first;
            }
            '{' => {
                // Not a repetition (that was handled above): a literal.
                t.push("\\{", i);
                i += 1;
            }
            '(' if p[i..].starts_with("(?") => i = translate_group(p, i, &mut t)?,
            '\\' => i = translate_escape(p, i, false, &mut t),
            c => {
                t.push(&p[i..i + c.len_utf8()], i);
                i += c.len_utf8();
            }
        }
    }
    t.origin.push(p.len());
    Ok(t)
}

/// The end of a repetition operator starting at `i` (`*`, `+`, `?`,
/// `{n}`, `{n,}`, `{n,m}`, each maybe followed by `?`), or `None`.
fn repetition_at(p: &str, i: usize) -> Result<Option<usize>, String> {
    let b = p.as_bytes();
    let mut end = match b[i] {
        b'*' | b'+' | b'?' => i + 1,
        b'{' => match repeat_count(&p[i..]) {
            None => return Ok(None),
            Some((min, max, len)) => {
                let too_big = |n: i64| !(0..=1000).contains(&n);
                if too_big(min) || max.is_some_and(|m| m != -1 && (too_big(m) || min > m)) {
                    return Err(go_error("invalid repeat count", &p[i..i + len]));
                }
                i + len
            }
        },
        _ => return Ok(None),
    };
    if b.get(end) == Some(&b'?') {
        end += 1;
    }
    Ok(Some(end))
}

/// Go's `parseRepeat`: `{min}`, `{min,}` (max -1) or `{min,max}` and its
/// length; a number too big for Go is -2.
fn repeat_count(s: &str) -> Option<(i64, Option<i64>, usize)> {
    let b = s.as_bytes();
    let mut i = 1;
    let int = |i: &mut usize| -> Option<i64> {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        let digits = &s[start..*i];
        if digits.is_empty() || (digits.len() > 1 && digits.starts_with('0')) {
            return None;
        }
        Some(if digits.len() >= 8 {
            -2
        } else {
            digits.parse().unwrap_or(-2)
        })
    };
    let min = int(&mut i)?;
    let max = match b.get(i)? {
        b',' => {
            i += 1;
            if b.get(i)? == &b'}' {
                Some(-1)
            } else {
                Some(int(&mut i)?)
            }
        }
        _ => None,
    };
    if b.get(i)? != &b'}' {
        return None;
    }
    Some((min, max, i + 1))
}

/// `(?flags)`, `(?flags:`, `(?P<name>` and `(?<name>`, as Go parses them.
fn translate_group(p: &str, i: usize, t: &mut Translation) -> Result<usize, String> {
    let rest = &p[i..];
    let named = (rest.len() > 4 && rest[2..].starts_with("P<"))
        || (rest.len() > 3 && rest[2..].starts_with('<'));
    if named {
        let Some(end) = rest.find('>') else {
            return Err(go_error("invalid named capture", rest));
        };
        let start = if rest[2..].starts_with("P<") { 4 } else { 3 };
        let name = &rest[start..end];
        let valid =
            !name.is_empty() && name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_');
        if !valid {
            return Err(go_error("invalid named capture", &rest[..=end]));
        }
        t.push(&rest[..=end], i);
        return Ok(i + end + 1);
    }
    let mut on = String::new();
    let mut off = String::new();
    let mut negated = false;
    let mut saw_flag = false;
    for (k, c) in rest[2..].char_indices() {
        let at = 2 + k + c.len_utf8();
        match c {
            'i' | 'm' | 's' | 'U' => {
                let (set, other) = if negated {
                    (&mut off, &mut on)
                } else {
                    (&mut on, &mut off)
                };
                if !set.contains(c) {
                    set.push(c);
                }
                other.retain(|x| x != c);
                saw_flag = true;
            }
            '-' if !negated => {
                negated = true;
                saw_flag = false;
            }
            ':' | ')' if !negated || saw_flag => {
                let mut out = String::new();
                if !on.is_empty() || !off.is_empty() {
                    out.push_str("(?");
                    out.push_str(&on);
                    if !off.is_empty() {
                        out.push('-');
                        out.push_str(&off);
                    }
                    out.push(c);
                } else if c == ':' {
                    out.push_str("(?:");
                }
                t.push(&out, i);
                return Ok(i + at);
            }
            _ => return Err(go_error("invalid or unsupported Perl syntax", &rest[..at])),
        }
    }
    Err(go_error("invalid or unsupported Perl syntax", rest))
}

/// One escape sequence at `i` (a `\`); returns where the next token starts.
fn translate_escape(p: &str, i: usize, in_class: bool, t: &mut Translation) -> usize {
    let Some(n) = p[i + 1..].chars().next() else {
        t.push("\\", i);
        return i + 1;
    };
    let after = i + 1 + n.len_utf8();
    if let Some((_, class)) = PERL_CLASSES.iter().find(|(k, _)| *k == n) {
        t.push(class, i);
        return after;
    }
    match n {
        'Q' if !in_class => {
            let body = &p[after..];
            let (lit, next) = match body.find("\\E") {
                Some(e) => (&body[..e], after + e + 2),
                None => (body, p.len()),
            };
            t.push(&regex_syntax::escape(lit), i);
            next
        }
        'b' | 'B' if !in_class => {
            t.push(if n == 'b' { "(?-u:\\b)" } else { "(?-u:\\B)" }, i);
            after
        }
        '<' | '>' => {
            t.push(&p[after - 1..after], i);
            after
        }
        '0'..='7' => {
            // Go: octal, `\0` and up to two more digits, or `\1`-`\7`
            // followed by a digit; a lone `\1`-`\7` is left to be refused
            // as a backreference.
            let digits: String = p[i + 1..]
                .chars()
                .take(3)
                .take_while(|c| ('0'..='7').contains(c))
                .collect();
            if n != '0' && digits.len() < 2 {
                t.push(&p[i..after], i);
                return after;
            }
            let v = u32::from_str_radix(&digits, 8).unwrap_or(0);
            t.push(&format!("\\x{{{v:X}}}"), i);
            i + 1 + digits.len()
        }
        'p' | 'P' if p[after..].starts_with("{^") => {
            let flipped = if n == 'p' { "\\P{" } else { "\\p{" };
            t.push(flipped, i);
            after + 2
        }
        _ => {
            t.push(&p[i..after], i);
            after
        }
    }
}

/// One token inside `[...]`; returns where the next one starts.
fn translate_in_class(
    p: &str,
    i: usize,
    c: char,
    first: usize,
    class: &mut Option<usize>,
    t: &mut Translation,
) -> Result<usize, String> {
    let b = p.as_bytes();
    Ok(match c {
        ']' if i == first => {
            t.push("\\]", i);
            i + 1
        }
        ']' => {
            *class = None;
            t.push("]", i);
            i + 1
        }
        '[' if p[i..].starts_with("[:") => match p[i + 2..].find(":]") {
            Some(e) => {
                let name = &p[i + 2..i + 2 + e];
                let bare = name.strip_prefix('^').unwrap_or(name);
                if !POSIX_CLASSES.contains(&bare) {
                    return Err(go_error(
                        "invalid character class range",
                        &p[i..i + 2 + e + 2],
                    ));
                }
                t.push(&p[i..i + 2 + e + 2], i);
                i + 2 + e + 2
            }
            None => {
                t.push("\\[", i);
                i + 1
            }
        },
        '[' | '&' | '~' => {
            t.push(&format!("\\{c}"), i);
            i + 1
        }
        '-' if i > first && b[i - 1] == b'-' => {
            t.push("\\-", i);
            i + 1
        }
        '\\' => translate_escape(p, i, true, t),
        c => {
            t.push(&p[i..i + c.len_utf8()], i);
            i + c.len_utf8()
        }
    })
}

/// Go's report for a pattern the crate refused.
fn explain(original: &str, t: &Translation, err: regex::Error) -> String {
    use regex_syntax::ast::ErrorKind as A;
    let parsed = regex_syntax::ParserBuilder::new().build().parse(&t.text);
    let (code, expr) = match parsed {
        Err(regex_syntax::Error::Parse(e)) => {
            let (s, end) = (
                t.original(e.span().start.offset),
                t.original(e.span().end.offset),
            );
            let span = original.get(s..end.max(s)).unwrap_or("");
            let from_span = original.get(s..).unwrap_or("");
            match e.kind() {
                A::GroupUnclosed => ("missing closing )", original),
                A::GroupUnopened => ("unexpected )", original),
                A::ClassUnclosed => ("missing closing ]", from_span),
                A::ClassRangeInvalid | A::ClassRangeLiteral => {
                    ("invalid character class range", span)
                }
                A::EscapeUnexpectedEof => ("trailing backslash at end of expression", ""),
                A::RepetitionMissing => {
                    let len = repetition_at(original, s)
                        .ok()
                        .flatten()
                        .map_or(0, |end| end - s);
                    (
                        "missing argument to repetition operator",
                        original.get(s..s + len).unwrap_or(""),
                    )
                }
                A::RepetitionCountInvalid => ("invalid repeat count", span),
                A::NestLimitExceeded(_) => ("expression nests too deeply", original),
                A::GroupNameInvalid
                | A::GroupNameEmpty
                | A::GroupNameDuplicate { .. }
                | A::GroupNameUnexpectedEof => ("invalid named capture", span),
                A::UnsupportedLookAround
                | A::FlagUnrecognized
                | A::FlagDanglingNegation
                | A::FlagDuplicate { .. }
                | A::FlagRepeatedNegation { .. }
                | A::FlagUnexpectedEof => ("invalid or unsupported Perl syntax", span),
                _ => ("invalid escape sequence", span),
            }
        }
        Err(regex_syntax::Error::Translate(e)) => {
            let (s, end) = (
                t.original(e.span().start.offset),
                t.original(e.span().end.offset),
            );
            (
                "invalid character class range",
                original.get(s..end.max(s)).unwrap_or(""),
            )
        }
        _ => {
            return match err {
                regex::Error::CompiledTooBig(_) => go_error("expression too large", original),
                e => go_error(&e.to_string(), original),
            };
        }
    };
    go_error(code, expr)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_match(pattern: &str, text: &str) -> bool {
        compile(pattern.as_bytes())
            .unwrap_or_else(|e| panic!("{pattern}: {e}"))
            .is_match(text)
    }

    fn error(pattern: &str) -> String {
        compile(pattern.as_bytes()).expect_err(pattern)
    }

    #[test]
    fn perl_classes_are_ascii_as_in_go() {
        assert!(is_match(r"^\d+$", "0123"));
        assert!(!is_match(r"^\d$", "٣"), "Arabic-Indic digit");
        assert!(!is_match(r"^\w$", "é"));
        assert!(is_match(r"^[\w-]+$", "web-1_a"));
        assert!(is_match(r"^[^\d]$", "x"));
        assert!(is_match(r"\bweb\b", "a web b"));
        assert!(is_match(r"^\s$", "\t"));
        assert!(!is_match(r"^\s$", "\u{a0}"));
    }

    #[test]
    fn go_only_syntax_means_what_it_means_in_go() {
        assert!(is_match(r"^\Qa.b*\E$", "a.b*"));
        assert!(!is_match(r"^\Qa.b\E$", "axb"));
        assert!(is_match(r"^\101$", "A"), "octal");
        assert!(is_match(r"^x{$", "x{"), "a {{ that starts no repetition");
        assert!(is_match(r"^x{,2}$", "x{,2}"));
        assert!(is_match(r"^a{2}$", "aa"));
        assert!(is_match(r"^[a[]+$", "[a["));
        assert!(is_match(r"^[a&&b]+$", "a&b"));
        assert!(is_match(r"^\<x\>$", "<x>"));
        assert!(is_match(r"^\p{^Greek}$", "a"));
        assert!(!is_match(r"^\p{^Greek}$", "α"));
        assert!(is_match(r"(?ii)^A$", "a"));
        assert!(is_match(r"(?i-i)^A$", "A"));
        assert!(is_match(r"^(?)a$", "a"));
        assert!(is_match(r"^[[:alpha:]]+$", "abc"));
        assert!(is_match("web", "my-web-1"), "unanchored");
    }

    #[test]
    fn errors_are_gos() {
        assert_eq!(error("(a"), "error parsing regexp: missing closing ): `(a`");
        assert_eq!(error("a)"), "error parsing regexp: unexpected ): `a)`");
        assert_eq!(
            error("x[ab"),
            "error parsing regexp: missing closing ]: `[ab`"
        );
        assert_eq!(
            error("*a"),
            "error parsing regexp: missing argument to repetition operator: `*`"
        );
        assert_eq!(
            error("a**"),
            "error parsing regexp: invalid nested repetition operator: `**`"
        );
        assert_eq!(
            error("a+?*"),
            "error parsing regexp: invalid nested repetition operator: `+?*`"
        );
        assert_eq!(
            error(r"\q"),
            "error parsing regexp: invalid escape sequence: `\\q`"
        );
        assert_eq!(
            error(r"a\1"),
            "error parsing regexp: invalid escape sequence: `\\1`"
        );
        assert_eq!(
            error("[z-a]"),
            "error parsing regexp: invalid character class range: `z-a`"
        );
        assert_eq!(
            error("[[:foo:]]"),
            "error parsing regexp: invalid character class range: `[:foo:]`"
        );
        assert_eq!(
            error("a\\"),
            "error parsing regexp: trailing backslash at end of expression: ``"
        );
        assert_eq!(
            error("a{1001}"),
            "error parsing regexp: invalid repeat count: `{1001}`"
        );
        assert_eq!(
            error("a{2,1}"),
            "error parsing regexp: invalid repeat count: `{2,1}`"
        );
        assert_eq!(
            error("(?x)a"),
            "error parsing regexp: invalid or unsupported Perl syntax: `(?x`"
        );
        assert_eq!(
            error("(?=a)"),
            "error parsing regexp: invalid or unsupported Perl syntax: `(?=`"
        );
        assert_eq!(
            error("(?i-)a"),
            "error parsing regexp: invalid or unsupported Perl syntax: `(?i-)`"
        );
        assert_eq!(
            error("(?P<a-b>x)"),
            "error parsing regexp: invalid named capture: `(?P<a-b>`"
        );
        assert_eq!(
            error(r"[\d"),
            "error parsing regexp: missing closing ]: `[\\d`"
        );
        assert_eq!(
            compile(b"\xffa").expect_err("bytes"),
            "error parsing regexp: invalid UTF-8: `\u{fffd}a`"
        );
    }
}
