//! Splits a template into text and the tokens of its actions, as Go's
//! `text/template/parse` lexer does: `{{-`/`-}}` trim the whitespace
//! (spaces, tabs, newlines) beside them when a space separates the dash
//! from the action (`{{-3}}` is the number -3), comments sit right inside
//! the delimiters, strings are Go literals (their `\x` escapes may make
//! bytes that are not UTF-8), and each token knows whether a space came
//! before it, which is what tells `$x.Field` (a chain) from `$x .Field`
//! (two arguments).

use super::SyntaxError;

#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    Text(Vec<u8>),
    /// The left delimiter of an action.
    Open,
    /// The right delimiter of an action.
    Close,
    /// `.Name`, without the dot.
    Field(String),
    /// `$name` (`$` alone is the root), with the `$`.
    Variable(String),
    Dot,
    Ident(String),
    Keyword(Keyword),
    Bool(bool),
    Nil,
    Str(Vec<u8>),
    /// A character constant: its code point.
    Char(i64),
    /// A number literal's text, converted by the parser.
    Number(String),
    Pipe,
    LParen,
    RParen,
    Comma,
    Declare,
    Assign,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keyword {
    If,
    Else,
    End,
    Range,
    With,
    Define,
    Template,
    Block,
    Break,
    Continue,
}

#[derive(Debug, Clone)]
pub struct Token {
    pub tok: Tok,
    /// Byte offset of the token in the source.
    pub pos: usize,
    /// A space separates this token from the one before (inside an action).
    pub spaced: bool,
}

pub struct Lexer<'a> {
    src: &'a [u8],
    left: &'a [u8],
    right: &'a [u8],
    pos: usize,
    tokens: Vec<Token>,
    paren_depth: usize,
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_alnum(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

/// Lexes `src` with the given delimiters.
pub fn lex(src: &[u8], left: &[u8], right: &[u8]) -> Result<Vec<Token>, SyntaxError> {
    let mut l = Lexer {
        src,
        left,
        right,
        pos: 0,
        tokens: Vec::new(),
        paren_depth: 0,
    };
    l.run()?;
    Ok(l.tokens)
}

impl<'a> Lexer<'a> {
    fn error(&self, pos: usize, msg: impl Into<String>) -> SyntaxError {
        SyntaxError {
            pos,
            msg: msg.into(),
        }
    }

    fn emit(&mut self, tok: Tok, pos: usize, spaced: bool) {
        self.tokens.push(Token { tok, pos, spaced });
    }

    fn starts_with(&self, at: usize, s: &[u8]) -> bool {
        self.src.get(at..).is_some_and(|rest| rest.starts_with(s))
    }

    fn run(&mut self) -> Result<(), SyntaxError> {
        let mut trim_next = false;
        loop {
            let start = self.pos;
            let found = find(&self.src[start..], self.left).map(|i| start + i);
            let end = found.unwrap_or(self.src.len());
            let mut text = &self.src[start..end];
            if trim_next {
                let skip = text.iter().take_while(|b| is_space(**b)).count();
                text = &text[skip..];
            }
            let Some(open) = found else {
                if !text.is_empty() {
                    self.emit(Tok::Text(text.to_vec()), end - text.len(), false);
                }
                return Ok(());
            };
            // `{{- ` trims the text before it.
            let after_left = open + self.left.len();
            let trim_left = self.src.get(after_left) == Some(&b'-')
                && self.src.get(after_left + 1).copied().is_some_and(is_space);
            if trim_left {
                while let Some(last) = text.last() {
                    if !is_space(*last) {
                        break;
                    }
                    text = &text[..text.len() - 1];
                }
            }
            if !text.is_empty() {
                let text_pos = if trim_next { end - text.len() } else { start };
                self.emit(Tok::Text(text.to_vec()), text_pos, false);
            }
            self.pos = if trim_left {
                after_left + 2
            } else {
                after_left
            };
            if self.starts_with(self.pos, b"/*") {
                trim_next = self.comment(open)?;
            } else {
                self.emit(Tok::Open, open, false);
                trim_next = self.action(open)?;
            }
        }
    }

    /// Skips `/* ... */` and the right delimiter; returns whether it trims.
    fn comment(&mut self, open: usize) -> Result<bool, SyntaxError> {
        let body = self.pos + 2;
        let Some(end) = find(&self.src[body..], b"*/").map(|i| body + i + 2) else {
            return Err(self.error(open, "unclosed comment"));
        };
        if self.starts_with(end, self.right) {
            self.pos = end + self.right.len();
            return Ok(false);
        }
        if self.src.get(end).copied().is_some_and(is_space)
            && self.src.get(end + 1) == Some(&b'-')
            && self.starts_with(end + 2, self.right)
        {
            self.pos = end + 2 + self.right.len();
            return Ok(true);
        }
        Err(self.error(open, "comment ends before closing delimiter"))
    }

    /// At the right delimiter (optionally ` -` before it)? Returns
    /// (length to skip, trims).
    fn at_right(&self) -> Option<(usize, bool)> {
        if self.starts_with(self.pos, self.right) {
            return Some((self.right.len(), false));
        }
        let trim = self.src.get(self.pos).copied().is_some_and(is_space)
            && self.src.get(self.pos + 1) == Some(&b'-')
            && self.starts_with(self.pos + 2, self.right);
        trim.then_some((2 + self.right.len(), true))
    }

    fn peek_char(&self) -> Option<char> {
        let rest = self.src.get(self.pos..)?;
        let len = utf8_len(*rest.first()?);
        std::str::from_utf8(rest.get(..len)?)
            .ok()
            .and_then(|s| s.chars().next())
    }

    /// Lexes one action up to and including its right delimiter; returns
    /// whether the delimiter trims the text after it.
    fn action(&mut self, open: usize) -> Result<bool, SyntaxError> {
        let mut spaced = false;
        loop {
            if let Some((len, trim)) = self.at_right() {
                if self.paren_depth > 0 {
                    return Err(self.error(self.pos, "unclosed left paren"));
                }
                let at = self.pos + len - self.right.len();
                self.pos += len;
                self.emit(Tok::Close, at, spaced || trim);
                return Ok(trim);
            }
            let start = self.pos;
            let Some(c) = self.peek_char() else {
                if self.pos >= self.src.len() {
                    return Err(self.error(open, "unclosed action"));
                }
                return Err(self.error(start, "invalid UTF-8 in action"));
            };
            if c.is_whitespace() {
                self.pos += c.len_utf8();
                spaced = true;
                continue;
            }
            let tok = self.token(c, start)?;
            self.emit(tok, start, spaced);
            spaced = false;
        }
    }

    /// One token of an action, starting with `c` at `start`.
    fn token(&mut self, c: char, start: usize) -> Result<Tok, SyntaxError> {
        let single = |l: &mut Self, tok: Tok| {
            l.pos += 1;
            Ok(tok)
        };
        match c {
            '|' => single(self, Tok::Pipe),
            ',' => single(self, Tok::Comma),
            '=' => single(self, Tok::Assign),
            '(' => {
                self.paren_depth += 1;
                single(self, Tok::LParen)
            }
            ')' => {
                if self.paren_depth == 0 {
                    return Err(self.error(start, "unexpected right paren"));
                }
                self.paren_depth -= 1;
                single(self, Tok::RParen)
            }
            ':' => {
                if self.src.get(self.pos + 1) != Some(&b'=') {
                    return Err(self.error(start, "expected :="));
                }
                self.pos += 2;
                Ok(Tok::Declare)
            }
            '"' => Ok(Tok::Str(self.quoted()?)),
            '`' => Ok(Tok::Str(self.raw()?)),
            '\'' => Ok(Tok::Char(self.char_const()?)),
            '$' => {
                self.pos += 1;
                let name = self.word();
                self.check_terminator()?;
                Ok(Tok::Variable(format!("${name}")))
            }
            '.' if !self
                .src
                .get(self.pos + 1)
                .is_some_and(|b| b.is_ascii_digit()) =>
            {
                self.pos += 1;
                let name = self.word();
                self.check_terminator()?;
                Ok(if name.is_empty() {
                    Tok::Dot
                } else {
                    Tok::Field(name)
                })
            }
            '.' | '+' | '-' | '0'..='9' => Ok(Tok::Number(self.number()?)),
            c if is_alnum(c) => {
                let word = self.word();
                self.check_terminator()?;
                Ok(word_token(word))
            }
            other => Err(self.error(start, format!("unexpected {other:?} in command"))),
        }
    }

    /// Letters, digits and underscores from the current position.
    fn word(&mut self) -> String {
        let mut out = String::new();
        while let Some(c) = self.peek_char() {
            if !is_alnum(c) {
                break;
            }
            out.push(c);
            self.pos += c.len_utf8();
        }
        out
    }

    /// After a word, Go requires a space, punctuation or the delimiter.
    fn check_terminator(&self) -> Result<(), SyntaxError> {
        let Some(c) = self.peek_char() else {
            return Ok(());
        };
        if c.is_whitespace() || matches!(c, '.' | ',' | '|' | ':' | ')' | '(') {
            return Ok(());
        }
        if self.at_right().is_some() {
            return Ok(());
        }
        Err(self.error(self.pos, format!("bad character {c:?}")))
    }

    fn number(&mut self) -> Result<String, SyntaxError> {
        let start = self.pos;
        if matches!(self.src.get(self.pos), Some(b'+' | b'-')) {
            self.pos += 1;
        }
        let mut digits: &[u8] = b"0123456789_";
        if self.src.get(self.pos) == Some(&b'0') {
            match self.src.get(self.pos + 1) {
                Some(b'x' | b'X') => {
                    self.pos += 2;
                    digits = b"0123456789abcdefABCDEF_";
                }
                Some(b'o' | b'O') => {
                    self.pos += 2;
                    digits = b"01234567_";
                }
                Some(b'b' | b'B') => {
                    self.pos += 2;
                    digits = b"01_";
                }
                _ => {}
            }
        }
        let run = |l: &mut Self, set: &[u8]| {
            while l.src.get(l.pos).is_some_and(|b| set.contains(b)) {
                l.pos += 1;
            }
        };
        run(self, digits);
        if self.src.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            run(self, digits);
        }
        let exp: &[u8] = if digits.len() > 12 { b"pP" } else { b"eEpP" };
        if self.src.get(self.pos).is_some_and(|b| exp.contains(b)) {
            self.pos += 1;
            if matches!(self.src.get(self.pos), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            run(self, b"0123456789_");
        }
        let text = String::from_utf8_lossy(&self.src[start..self.pos]).into_owned();
        if self.peek_char().is_some_and(is_alnum) {
            self.word();
            let bad = String::from_utf8_lossy(&self.src[start..self.pos]).into_owned();
            return Err(self.error(start, format!("bad number syntax: {bad:?}")));
        }
        Ok(text)
    }

    fn quoted(&mut self) -> Result<Vec<u8>, SyntaxError> {
        let start = self.pos;
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            let Some(&b) = self.src.get(self.pos) else {
                return Err(self.error(start, "unterminated quoted string"));
            };
            match b {
                b'"' => {
                    self.pos += 1;
                    return Ok(out);
                }
                b'\n' => return Err(self.error(start, "unterminated quoted string")),
                b'\\' => {
                    self.pos += 1;
                    self.escape(b'"', &mut out, start)?;
                }
                _ => {
                    out.push(b);
                    self.pos += 1;
                }
            }
        }
    }

    /// One escape after a backslash, as Go's `strconv.Unquote` reads it.
    fn escape(&mut self, quote: u8, out: &mut Vec<u8>, start: usize) -> Result<(), SyntaxError> {
        let bad = |l: &Self| l.error(start, "invalid syntax in quoted string");
        let Some(&c) = self.src.get(self.pos) else {
            return Err(bad(self));
        };
        self.pos += 1;
        let simple = match c {
            b'a' => Some(0x07),
            b'b' => Some(0x08),
            b'f' => Some(0x0c),
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            b'v' => Some(0x0b),
            b'\\' => Some(b'\\'),
            c if c == quote => Some(c),
            _ => None,
        };
        if let Some(b) = simple {
            out.push(b);
            return Ok(());
        }
        let hex = |l: &mut Self, n: usize| -> Result<u32, SyntaxError> {
            let digits = l.src.get(l.pos..l.pos + n).ok_or_else(|| bad(l))?;
            let text = std::str::from_utf8(digits).map_err(|_| bad(l))?;
            let v = u32::from_str_radix(text, 16).map_err(|_| bad(l))?;
            l.pos += n;
            Ok(v)
        };
        match c {
            b'x' => out.push(hex(self, 2)? as u8),
            b'0'..=b'7' => {
                let digits = self
                    .src
                    .get(self.pos - 1..self.pos + 2)
                    .ok_or_else(|| bad(self))?;
                let text = std::str::from_utf8(digits).map_err(|_| bad(self))?;
                let v = u32::from_str_radix(text, 8).map_err(|_| bad(self))?;
                if v > 255 {
                    return Err(bad(self));
                }
                self.pos += 2;
                out.push(v as u8);
            }
            b'u' | b'U' => {
                let v = hex(self, if c == b'u' { 4 } else { 8 })?;
                let ch = char::from_u32(v).ok_or_else(|| bad(self))?;
                out.extend_from_slice(ch.encode_utf8(&mut [0; 4]).as_bytes());
            }
            _ => return Err(bad(self)),
        }
        Ok(())
    }

    fn raw(&mut self) -> Result<Vec<u8>, SyntaxError> {
        let start = self.pos;
        let body = start + 1;
        let Some(end) = self.src[body..].iter().position(|b| *b == b'`') else {
            return Err(self.error(start, "unterminated raw quoted string"));
        };
        self.pos = body + end + 1;
        // Go drops carriage returns from raw strings.
        Ok(self.src[body..body + end]
            .iter()
            .copied()
            .filter(|b| *b != b'\r')
            .collect())
    }

    fn char_const(&mut self) -> Result<i64, SyntaxError> {
        let start = self.pos;
        self.pos += 1;
        let mut bytes = Vec::new();
        match self.src.get(self.pos) {
            Some(b'\\') => {
                self.pos += 1;
                self.escape(b'\'', &mut bytes, start)?;
            }
            Some(b'\'') | Some(b'\n') | None => {
                return Err(self.error(start, "unterminated character constant"))
            }
            Some(_) => {
                let c = self
                    .peek_char()
                    .ok_or_else(|| self.error(start, "invalid character constant"))?;
                self.pos += c.len_utf8();
                bytes.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
            }
        }
        if self.src.get(self.pos) != Some(&b'\'') {
            return Err(self.error(start, "unterminated character constant"));
        }
        self.pos += 1;
        let value = match std::str::from_utf8(&bytes) {
            Ok(s) if s.chars().count() == 1 => s.chars().next().map(|c| c as i64),
            _ if bytes.len() == 1 => Some(bytes[0] as i64),
            _ => None,
        };
        value.ok_or_else(|| self.error(start, "invalid character constant"))
    }
}

/// A keyword, a boolean, `nil`, or a function name.
fn word_token(word: String) -> Tok {
    match word.as_str() {
        "if" => Tok::Keyword(Keyword::If),
        "else" => Tok::Keyword(Keyword::Else),
        "end" => Tok::Keyword(Keyword::End),
        "range" => Tok::Keyword(Keyword::Range),
        "with" => Tok::Keyword(Keyword::With),
        "define" => Tok::Keyword(Keyword::Define),
        "template" => Tok::Keyword(Keyword::Template),
        "block" => Tok::Keyword(Keyword::Block),
        "break" => Tok::Keyword(Keyword::Break),
        "continue" => Tok::Keyword(Keyword::Continue),
        "true" => Tok::Bool(true),
        "false" => Tok::Bool(false),
        "nil" => Tok::Nil,
        _ => Tok::Ident(word),
    }
}

fn utf8_len(first: u8) -> usize {
    match first {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf7 => 4,
        _ => 1,
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(src: &str) -> Vec<Tok> {
        lex(src.as_bytes(), b"{{", b"}}")
            .unwrap()
            .into_iter()
            .map(|t| t.tok)
            .collect()
    }

    fn text(s: &str) -> Tok {
        Tok::Text(s.as_bytes().to_vec())
    }

    #[test]
    fn trim_markers_eat_whitespace_including_newlines() {
        assert_eq!(
            toks("a \n {{- .X -}} \n\t b"),
            vec![
                text("a"),
                Tok::Open,
                Tok::Field("X".into()),
                Tok::Close,
                text("b")
            ]
        );
        // Without the space `{{-3}}` is the number -3.
        assert_eq!(
            toks("a {{-3}} b"),
            vec![
                text("a "),
                Tok::Open,
                Tok::Number("-3".into()),
                Tok::Close,
                text(" b")
            ]
        );
    }

    #[test]
    fn comments_vanish_and_can_trim() {
        assert_eq!(toks("a{{/* x */}}b"), vec![text("a"), text("b")]);
        assert_eq!(toks("a  {{- /* x */ -}}  b"), vec![text("a"), text("b")]);
        let e = lex(b"{{ /* x */ }}", b"{{", b"}}").unwrap_err();
        assert!(e.msg.contains("unexpected"), "{e:?}");
        let e = lex(b"{{/* x */ .X}}", b"{{", b"}}").unwrap_err();
        assert_eq!(e.msg, "comment ends before closing delimiter");
    }

    #[test]
    fn variables_fields_and_chains() {
        let t = lex(b"{{$x.A .B $}}", b"{{", b"}}").unwrap();
        let got: Vec<(Tok, bool)> = t.into_iter().map(|t| (t.tok, t.spaced)).collect();
        assert_eq!(
            got[1..5],
            [
                (Tok::Variable("$x".into()), false),
                (Tok::Field("A".into()), false),
                (Tok::Field("B".into()), true),
                (Tok::Variable("$".into()), true),
            ]
        );
    }

    #[test]
    fn strings_and_numbers() {
        assert_eq!(
            toks(r#"{{"a\tb\x41\377" `r\n` 'x' 0x1F 1.5e3 -2}}"#)[1..7],
            [
                Tok::Str(b"a\tbA\xff".to_vec()),
                Tok::Str(b"r\\n".to_vec()),
                Tok::Char('x' as i64),
                Tok::Number("0x1F".into()),
                Tok::Number("1.5e3".into()),
                Tok::Number("-2".into()),
            ]
        );
        assert!(lex(b"{{\"abc}}", b"{{", b"}}").is_err());
        assert!(lex(b"{{ 3x }}", b"{{", b"}}").is_err());
    }

    #[test]
    fn custom_delimiters() {
        assert_eq!(
            toks_with("a [[.X]] {{b}}", b"[[", b"]]"),
            vec![
                text("a "),
                Tok::Open,
                Tok::Field("X".into()),
                Tok::Close,
                text(" {{b}}")
            ]
        );
    }

    fn toks_with(src: &str, l: &[u8], r: &[u8]) -> Vec<Tok> {
        lex(src.as_bytes(), l, r)
            .unwrap()
            .into_iter()
            .map(|t| t.tok)
            .collect()
    }

    #[test]
    fn unclosed_action_and_parens() {
        assert_eq!(
            lex(b"{{ .X ", b"{{", b"}}").unwrap_err().msg,
            "unclosed action"
        );
        assert_eq!(
            lex(b"{{ (.X }}", b"{{", b"}}").unwrap_err().msg,
            "unclosed left paren"
        );
        assert_eq!(
            lex(b"{{ .X) }}", b"{{", b"}}").unwrap_err().msg,
            "unexpected right paren"
        );
    }
}
