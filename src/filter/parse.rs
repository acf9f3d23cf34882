//! The filter grammar (go-bexpr v0.1.2 `grammar.peg`) as a PEG parser that
//! reports errors the way the pigeon-generated Go parser does:
//!
//! * a predicate that fails with a message (`Unmatched parentheses`,
//!   `Invalid index`, `Unclosed index expression`, `Invalid number
//!   literal`, `Unterminated string literal`, `Invalid selector`) or a
//!   string literal `strconv.Unquote` refuses is recorded as
//!   `L:C (O): rule "<rule>": <message>`, and any recorded message fails
//!   the parse, even one recorded in an alternative that lost;
//! * otherwise a failed parse reports every terminal that was tried at the
//!   furthest offset reached, sorted, as `L:C (O): no match found,
//!   expected: "!=", ".", "==", "[", [ \t\r\n] or [a-zA-Z0-9_]`, with a
//!   tried end of input as `EOF` last.
//!
//! Positions are pigeon's: the column counts runes from 1, the offset
//! counts bytes from 0, and a newline belongs to the line it starts.
//!
//! The grammar is followed rule by rule, alternative by alternative, so
//! the set of terminals tried (what the expected-list is made of) is
//! pigeon's. Two shapes are restructured where pigeon backtracks and
//! re-parses the same text: `a or b or c` (right recursion) is read as a
//! loop, and the alternatives of a parenthesised group that share the
//! prefix `"(" Or` parse it once. Re-parsing tries exactly the terminals
//! the first parse tried, so the reports are unchanged; pigeon without
//! memoisation takes time exponential in the nesting depth doing it.
//! Parentheses may nest [`MAX_NESTING`] deep (go-bexpr has no limit, but
//! takes exponential time long before a deep filter would matter).

use super::ast::{Expr, Match, MatchOp, Selector};
use super::strconv::unquote;
use std::collections::BTreeSet;

/// How deep parentheses may nest.
pub const MAX_NESTING: usize = 128;

const GROUPING: &str = "\"grouping\"";
const MATCH: &str = "\"match\"";
const INDEX: &str = "\"index\"";
const NUMBER: &str = "\"number\"";
const STRING: &str = "\"string\"";

/// Parses a filter; the error is the parser's report.
pub fn parse(src: &str) -> Result<Expr, String> {
    let mut p = Parser::new(src);
    let result = p.input();
    if result.is_none() && p.errors.is_empty() {
        let mut wanted: BTreeSet<String> = std::mem::take(&mut p.expected).into_iter().collect();
        let eof = wanted.remove("!.");
        let mut list: Vec<String> = wanted.into_iter().collect();
        if eof {
            list.push("EOF".into());
        }
        let at = p.max_fail;
        p.error(
            at,
            None,
            &format!("no match found, expected: {}", list_join(&list)),
        );
    }
    match result {
        Some(expr) if p.errors.is_empty() => Ok(expr),
        _ => Err(p.errors.join("\n")),
    }
}

/// Go's `listJoin(list, ", ", "or")`.
fn list_join(list: &[String]) -> String {
    match list {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {}", init.join(", "), last),
    }
}

#[derive(Debug, Clone, Copy)]
struct Pos {
    offset: usize,
    line: usize,
    col: usize,
}

struct Parser<'a> {
    src: &'a str,
    /// The position of the next rune.
    pt: Pos,
    /// Where the furthest failure was, and what was tried there.
    max_fail: Pos,
    expected: Vec<String>,
    /// Inside a `!` lookahead (toggled per level).
    invert: bool,
    errors: Vec<String>,
    depth: usize,
}

fn is_ws(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn is_alpha(c: char) -> bool {
    c.is_ascii_alphabetic()
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn is_digit(c: char) -> bool {
    c.is_ascii_digit()
}

fn is_nonzero(c: char) -> bool {
    ('1'..='9').contains(&c)
}

impl<'a> Parser<'a> {
    fn new(src: &'a str) -> Self {
        let mut p = Parser {
            src,
            pt: Pos {
                offset: 0,
                line: 1,
                col: 0,
            },
            max_fail: Pos {
                offset: 0,
                line: 1,
                col: 1,
            },
            expected: Vec::new(),
            invert: false,
            errors: Vec::new(),
            depth: 0,
        };
        p.step(0);
        p
    }

    fn cur(&self) -> Option<char> {
        self.src[self.pt.offset..].chars().next()
    }

    /// Moves past `width` bytes and accounts for the rune now current, as
    /// pigeon's `read` does.
    fn step(&mut self, width: usize) {
        self.pt.offset += width;
        self.pt.col += 1;
        if self.cur() == Some('\n') {
            self.pt.line += 1;
            self.pt.col = 0;
        }
    }

    fn read(&mut self) {
        let w = self.cur().map_or(0, char::len_utf8);
        self.step(w);
    }

    /// pigeon's `failAt`: note what was tried at `pos` if it counts as a
    /// failure here (a miss, or a hit inside a `!`).
    fn fail_at(&mut self, matched: bool, pos: Pos, want: &str) {
        if matched != self.invert {
            return;
        }
        if pos.offset < self.max_fail.offset {
            return;
        }
        if pos.offset > self.max_fail.offset {
            self.max_fail = pos;
            self.expected.clear();
        }
        if self.invert {
            self.expected.push(format!("!{want}"));
        } else {
            self.expected.push(want.to_string());
        }
    }

    fn error(&mut self, pos: Pos, rule: Option<&str>, msg: &str) {
        let mut s = format!("{}:{} ({})", pos.line, pos.col, pos.offset);
        if let Some(rule) = rule {
            s.push_str(": rule ");
            s.push_str(rule);
        }
        s.push_str(": ");
        s.push_str(msg);
        if !self.errors.contains(&s) {
            self.errors.push(s);
        }
    }

    /// A literal; `shown` is how pigeon names it (Go-quoted).
    fn lit(&mut self, s: &str, shown: &str) -> bool {
        let start = self.pt;
        for want in s.chars() {
            if self.cur() != Some(want) {
                self.fail_at(false, start, shown);
                self.pt = start;
                return false;
            }
            self.read();
        }
        self.fail_at(true, start, shown);
        true
    }

    fn class(&mut self, shown: &str, pred: fn(char) -> bool) -> bool {
        let start = self.pt;
        match self.cur() {
            Some(c) if pred(c) => {
                self.read();
                self.fail_at(true, start, shown);
                true
            }
            _ => {
                self.fail_at(false, start, shown);
                false
            }
        }
    }

    /// `.`
    fn any(&mut self) -> bool {
        let start = self.pt;
        if self.cur().is_none() {
            self.fail_at(false, start, ".");
            return false;
        }
        self.read();
        self.fail_at(true, start, ".");
        true
    }

    /// `!e`: succeeds where `e` fails; consumes nothing.
    fn not(&mut self, e: impl FnOnce(&mut Self) -> bool) -> bool {
        let pt = self.pt;
        self.invert = !self.invert;
        let ok = e(self);
        self.invert = !self.invert;
        self.pt = pt;
        !ok
    }

    /// `&e`: succeeds where `e` does; consumes nothing.
    fn ahead(&mut self, e: impl FnOnce(&mut Self) -> bool) -> bool {
        let pt = self.pt;
        let ok = e(self);
        self.pt = pt;
        ok
    }

    /// `_ "whitespace" <- [ \t\r\n]+`
    fn ws(&mut self) -> bool {
        if !self.class("[ \\t\\r\\n]", is_ws) {
            return false;
        }
        while self.class("[ \\t\\r\\n]", is_ws) {}
        true
    }

    /// `_?`
    fn ws_opt(&mut self) {
        self.ws();
    }

    /// `EOF <- !.`
    fn eof(&mut self) -> bool {
        self.not(|p| p.any())
    }

    /// `Input <- _? "(" _? Or _? ")" _? EOF / _? Or _? EOF`
    fn input(&mut self) -> Option<Expr> {
        let start = self.pt;
        self.ws_opt();
        if self.lit("(", "\"(\"") {
            self.ws_opt();
            if let Some(e) = self.or_expr() {
                self.ws_opt();
                if self.lit(")", "\")\"") {
                    self.ws_opt();
                    if self.eof() {
                        return Some(e);
                    }
                }
            }
        }
        self.pt = start;
        self.ws_opt();
        if let Some(e) = self.or_expr() {
            self.ws_opt();
            if self.eof() {
                return Some(e);
            }
        }
        self.pt = start;
        None
    }

    /// `Or <- And _ "or" _ Or / And`, read as `And (_ "or" _ And)*`.
    fn or_expr(&mut self) -> Option<Expr> {
        self.chain("or", "\"or\"", Self::and_expr, Expr::Or)
    }

    /// `And <- Not _ "and" _ And / Not`
    fn and_expr(&mut self) -> Option<Expr> {
        self.chain("and", "\"and\"", Self::not_expr, Expr::And)
    }

    fn chain(
        &mut self,
        word: &str,
        shown: &str,
        item: fn(&mut Self) -> Option<Expr>,
        join: fn(Vec<Expr>) -> Expr,
    ) -> Option<Expr> {
        let mut items = vec![item(self)?];
        loop {
            let save = self.pt;
            if self.ws() && self.lit(word, shown) && self.ws() {
                if let Some(e) = item(self) {
                    items.push(e);
                    continue;
                }
            }
            self.pt = save;
            break;
        }
        Some(if items.len() == 1 {
            items.remove(0)
        } else {
            join(items)
        })
    }

    /// `Not <- "not" _ Not / Paren`. A `not` whose operand does not parse
    /// falls back to a group starting at that `not` (`not == 1` compares
    /// the selector `not`); two `not`s cancel, as in go-bexpr.
    fn not_expr(&mut self) -> Option<Expr> {
        let mut starts = vec![self.pt];
        loop {
            let save = self.pt;
            if self.lit("not", "\"not\"") && self.ws() {
                starts.push(self.pt);
                continue;
            }
            self.pt = save;
            break;
        }
        for (nots, at) in starts.iter().enumerate().rev() {
            self.pt = *at;
            if let Some(e) = self.paren_expr() {
                return Some(if nots % 2 == 1 {
                    Expr::Not(Box::new(e))
                } else {
                    e
                });
            }
        }
        self.pt = starts[0];
        None
    }

    /// `Paren "grouping" <- "(" _? Or _? ")" / Match / "(" _? Or _? !")" &{Unmatched parentheses}`
    fn paren_expr(&mut self) -> Option<Expr> {
        let start = self.pt;
        if self.lit("(", "\"(\"") {
            if self.depth >= MAX_NESTING {
                let at = self.pt;
                self.error(
                    at,
                    Some(GROUPING),
                    &format!("Parentheses nest more than {MAX_NESTING} deep"),
                );
                self.pt = start;
                return None;
            }
            self.depth += 1;
            self.ws_opt();
            let inner = self.or_expr();
            self.depth -= 1;
            if let Some(e) = inner {
                self.ws_opt();
                let after = self.pt;
                if self.lit(")", "\")\"") {
                    return Some(e);
                }
                // The second alternative, tried at the "(", cannot match
                // but is tried all the same.
                self.pt = start;
                if let Some(m) = self.match_expr() {
                    return Some(Expr::Match(m));
                }
                self.pt = after;
                if self.not(|p| p.lit(")", "\")\"")) {
                    let at = self.pt;
                    self.error(at, Some(GROUPING), "Unmatched parentheses");
                }
                self.pt = start;
                return None;
            }
        }
        // The first alternative failed before `)`; the third fails the
        // same way.
        self.pt = start;
        self.match_expr().map(Expr::Match)
    }

    /// `Match "match" <- MatchSelectorOpValue / MatchSelectorOp / MatchValueOpSelector`
    fn match_expr(&mut self) -> Option<Match> {
        if let Some(m) = self.match_selector_op_value() {
            return Some(m);
        }
        if let Some(m) = self.match_selector_op() {
            return Some(m);
        }
        self.match_value_op_selector()
    }

    /// `Selector (== / != / contains / not contains / matches / not matches) Value`
    fn match_selector_op_value(&mut self) -> Option<Match> {
        let start = self.pt;
        let selector = self.selector()?;
        let op = if self.op_symbol("==", "\"==\"") {
            MatchOp::Equal
        } else if self.op_symbol("!=", "\"!=\"") {
            MatchOp::NotEqual
        } else if self.op_words(&[("contains", "\"contains\"")], true) {
            MatchOp::In
        } else if self.op_words(&[("not", "\"not\""), ("contains", "\"contains\"")], true) {
            MatchOp::NotIn
        } else if self.op_words(&[("matches", "\"matches\"")], true) {
            MatchOp::Matches
        } else if self.op_words(&[("not", "\"not\""), ("matches", "\"matches\"")], true) {
            MatchOp::NotMatches
        } else {
            self.pt = start;
            return None;
        };
        let Some(value) = self.value() else {
            self.pt = start;
            return None;
        };
        Some(Match {
            selector,
            op,
            value: Some(value),
        })
    }

    /// `Selector (is empty / is not empty)`
    fn match_selector_op(&mut self) -> Option<Match> {
        let start = self.pt;
        let selector = self.selector()?;
        let op = if self.op_words(&[("is", "\"is\""), ("empty", "\"empty\"")], false) {
            MatchOp::IsEmpty
        } else if self.op_words(
            &[("is", "\"is\""), ("not", "\"not\""), ("empty", "\"empty\"")],
            false,
        ) {
            MatchOp::IsNotEmpty
        } else {
            self.pt = start;
            return None;
        };
        Some(Match {
            selector,
            op,
            value: None,
        })
    }

    /// `Value (in / not in) Selector / Value (in / not in) !Selector &{Invalid selector}`
    fn match_value_op_selector(&mut self) -> Option<Match> {
        let start = self.pt;
        if let Some(value) = self.value() {
            if let Some(op) = self.op_in() {
                if let Some(selector) = self.selector() {
                    return Some(Match {
                        selector,
                        op,
                        value: Some(value),
                    });
                }
            }
        }
        self.pt = start;
        if self.value().is_some() && self.op_in().is_some() && self.not(|p| p.selector().is_some())
        {
            let at = self.pt;
            self.error(at, Some(MATCH), "Invalid selector");
        }
        self.pt = start;
        None
    }

    fn op_in(&mut self) -> Option<MatchOp> {
        if self.op_words(&[("in", "\"in\"")], true) {
            Some(MatchOp::In)
        } else if self.op_words(&[("not", "\"not\""), ("in", "\"in\"")], true) {
            Some(MatchOp::NotIn)
        } else {
            None
        }
    }

    /// `_? "==" _?`
    fn op_symbol(&mut self, sym: &str, shown: &str) -> bool {
        let start = self.pt;
        self.ws_opt();
        if !self.lit(sym, shown) {
            self.pt = start;
            return false;
        }
        self.ws_opt();
        true
    }

    /// `_ "not" _ "in" _` and the like: each word after whitespace.
    fn op_words(&mut self, words: &[(&str, &str)], trailing_ws: bool) -> bool {
        let start = self.pt;
        for (word, shown) in words {
            if !(self.ws() && self.lit(word, shown)) {
                self.pt = start;
                return false;
            }
        }
        if trailing_ws && !self.ws() {
            self.pt = start;
            return false;
        }
        true
    }

    /// `Selector "selector" <- Identifier ("." Identifier / Index)*`
    fn selector(&mut self) -> Option<Selector> {
        let mut parts = vec![self.identifier()?];
        loop {
            let save = self.pt;
            if self.lit(".", "\".\"") {
                if let Some(id) = self.identifier() {
                    parts.push(id);
                    continue;
                }
            }
            self.pt = save;
            if let Some(key) = self.index_expr() {
                parts.push(key);
                continue;
            }
            break;
        }
        Some(Selector(parts))
    }

    /// `Identifier <- [a-zA-Z] [a-zA-Z0-9_]*`
    fn identifier(&mut self) -> Option<Vec<u8>> {
        let start = self.pt.offset;
        if !self.class("[a-zA-Z]", is_alpha) {
            return None;
        }
        while self.class("[a-zA-Z0-9_]", is_ident) {}
        Some(self.src.as_bytes()[start..self.pt.offset].to_vec())
    }

    /// `Index "index" <- "[" _? String _? "]" / "[" _? !String &{Invalid index}
    ///     / "[" _? String _? !"]" &{Unclosed index expression}`
    fn index_expr(&mut self) -> Option<Vec<u8>> {
        let start = self.pt;
        if self.lit("[", "\"[\"") {
            self.ws_opt();
            if let Some(key) = self.string_lit() {
                self.ws_opt();
                if self.lit("]", "\"]\"") {
                    return Some(key);
                }
            }
        }
        self.pt = start;
        if self.lit("[", "\"[\"") {
            self.ws_opt();
            if self.not(|p| p.string_lit().is_some()) {
                let at = self.pt;
                self.error(at, Some(INDEX), "Invalid index");
            }
        }
        self.pt = start;
        if self.lit("[", "\"[\"") {
            self.ws_opt();
            if self.string_lit().is_some() {
                self.ws_opt();
                if self.not(|p| p.lit("]", "\"]\"")) {
                    let at = self.pt;
                    self.error(at, Some(INDEX), "Unclosed index expression");
                }
            }
        }
        self.pt = start;
        None
    }

    /// `Value "value" <- Selector / Number / String`; a selector stands
    /// for its dotted text.
    fn value(&mut self) -> Option<Vec<u8>> {
        if let Some(sel) = self.selector() {
            return Some(sel.joined());
        }
        if let Some(n) = self.number_lit() {
            return Some(n);
        }
        self.string_lit()
    }

    /// `Number "number" <- "-"? IntegerOrFloat &AfterNumbers
    ///     / "-"? IntegerOrFloat !AfterNumbers &{Invalid number literal}`
    fn number_lit(&mut self) -> Option<Vec<u8>> {
        let start = self.pt;
        self.lit("-", "\"-\"");
        if self.integer_or_float() && self.ahead(Self::after_numbers) {
            return Some(self.src.as_bytes()[start.offset..self.pt.offset].to_vec());
        }
        self.pt = start;
        self.lit("-", "\"-\"");
        if self.integer_or_float() && self.not(Self::after_numbers) {
            let at = self.pt;
            self.error(at, Some(NUMBER), "Invalid number literal");
        }
        self.pt = start;
        None
    }

    /// `AfterNumbers <- &(_ / EOF / ")")`
    fn after_numbers(&mut self) -> bool {
        self.ahead(|p| p.ws() || p.eof() || p.lit(")", "\")\""))
    }

    /// `IntegerOrFloat <- ("0" / [1-9][0-9]*) ("." [0-9]+)?`
    fn integer_or_float(&mut self) -> bool {
        let start = self.pt;
        if !self.lit("0", "\"0\"") {
            if !self.class("[1-9]", is_nonzero) {
                self.pt = start;
                return false;
            }
            while self.class("[0-9]", is_digit) {}
        }
        let save = self.pt;
        if self.lit(".", "\".\"") && self.class("[0-9]", is_digit) {
            while self.class("[0-9]", is_digit) {}
        } else {
            self.pt = save;
        }
        true
    }

    /// `String "string" <- ("`" RawChar* "`" / "\"" Char* "\"") {strconv.Unquote}
    ///     / ("`" RawChar* / "\"" Char*) EOF &{Unterminated string literal}`
    fn string_lit(&mut self) -> Option<Vec<u8>> {
        let start = self.pt;
        if self.quoted('`', "\"`\"", true) || self.quoted('"', "\"\\\"\"", true) {
            let text = &self.src[start.offset..self.pt.offset];
            return Some(match unquote(text) {
                Some(v) => v,
                None => {
                    self.error(start, Some(STRING), "invalid syntax");
                    Vec::new()
                }
            });
        }
        if (self.quoted('`', "\"`\"", false) || self.quoted('"', "\"\\\"\"", false)) && self.eof() {
            let at = self.pt;
            self.error(at, Some(STRING), "Unterminated string literal");
        }
        self.pt = start;
        None
    }

    /// `q (!q .)*` and, when `close`, the closing `q`.
    fn quoted(&mut self, q: char, shown: &str, close: bool) -> bool {
        let start = self.pt;
        let mut buf = [0u8; 4];
        let qs: &str = q.encode_utf8(&mut buf);
        if !self.lit(qs, shown) {
            return false;
        }
        loop {
            let save = self.pt;
            if self.not(|p| p.lit(qs, shown)) && self.any() {
                continue;
            }
            self.pt = save;
            break;
        }
        if close && !self.lit(qs, shown) {
            self.pt = start;
            return false;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(sel: &[&str], op: MatchOp, value: Option<&str>) -> Expr {
        Expr::Match(Match {
            selector: Selector(sel.iter().map(|s| s.as_bytes().to_vec()).collect()),
            op,
            value: value.map(|v| v.as_bytes().to_vec()),
        })
    }

    fn err(src: &str) -> String {
        parse(src).expect_err(src)
    }

    #[test]
    fn every_operator() {
        use MatchOp::*;
        let cases: &[(&str, Expr)] = &[
            ("a == 1", m(&["a"], Equal, Some("1"))),
            ("a==1", m(&["a"], Equal, Some("1"))),
            ("a != \"x\"", m(&["a"], NotEqual, Some("x"))),
            ("a.b contains x", m(&["a", "b"], In, Some("x"))),
            ("a not contains x", m(&["a"], NotIn, Some("x"))),
            ("a matches `^x\\d`", m(&["a"], Matches, Some("^x\\d"))),
            ("a not matches \"y\"", m(&["a"], NotMatches, Some("y"))),
            ("a is empty", m(&["a"], IsEmpty, None)),
            ("a is not empty", m(&["a"], IsNotEmpty, None)),
            ("x in a", m(&["a"], In, Some("x"))),
            ("\"x y\" not in a", m(&["a"], NotIn, Some("x y"))),
            ("-1.5 in a", m(&["a"], In, Some("-1.5"))),
            ("a == b.c", m(&["a"], Equal, Some("b.c"))),
            ("a[\"k-1\"].b == 0", m(&["a", "k-1", "b"], Equal, Some("0"))),
            ("a[ `k` ] is empty", m(&["a", "k"], IsEmpty, None)),
            (
                "a[\"x\"][\"y\"] == 1",
                m(&["a", "x", "y"], Equal, Some("1")),
            ),
        ];
        for (src, want) in cases {
            assert_eq!(parse(src).as_ref(), Ok(want), "{src}");
        }
    }

    #[test]
    fn precedence_is_not_then_and_then_or() {
        let a = m(&["a"], MatchOp::Equal, Some("1"));
        let b = m(&["b"], MatchOp::Equal, Some("2"));
        let c = m(&["c"], MatchOp::Equal, Some("3"));
        assert_eq!(
            parse("a == 1 or b == 2 and c == 3"),
            Ok(Expr::Or(vec![
                a.clone(),
                Expr::And(vec![b.clone(), c.clone()])
            ]))
        );
        assert_eq!(
            parse("(a == 1 or b == 2) and c == 3"),
            Ok(Expr::And(vec![
                Expr::Or(vec![a.clone(), b.clone()]),
                c.clone()
            ]))
        );
        assert_eq!(
            parse("not a == 1 and b == 2"),
            Ok(Expr::And(vec![Expr::Not(Box::new(a.clone())), b.clone()]))
        );
        assert_eq!(parse("not not a == 1"), Ok(a.clone()));
        assert_eq!(
            parse("not (a == 1 or b == 2)"),
            Ok(Expr::Not(Box::new(Expr::Or(vec![a.clone(), b.clone()]))))
        );
        assert_eq!(parse(" ( a == 1 ) "), Ok(a.clone()));
        assert_eq!(
            parse("a == 1 or b == 2 or c == 3"),
            Ok(Expr::Or(vec![a.clone(), b, c]))
        );
        // Words need whitespace: `nota` and `not` are selectors.
        assert_eq!(
            parse("nota == 1"),
            Ok(m(&["nota"], MatchOp::Equal, Some("1")))
        );
        assert_eq!(
            parse("not == 1"),
            Ok(m(&["not"], MatchOp::Equal, Some("1")))
        );
        assert_eq!(parse("a==1 and(b==1)").ok(), None);
    }

    #[test]
    fn no_match_reports_what_was_expected() {
        // hashicorp/consul#7338
        assert_eq!(
            err("foo"),
            r#"1:4 (3): no match found, expected: "!=", ".", "==", "[", [ \t\r\n] or [a-zA-Z0-9_]"#
        );
        // hashicorp/consul#6467: unquoted values must lex as selectors.
        assert_eq!(
            err("Node == host-name"),
            r#"1:13 (12): no match found, expected: ".", "[", [ \t\r\n], [a-zA-Z0-9_] or EOF"#
        );
        assert_eq!(
            err(""),
            r#"1:1 (0): no match found, expected: "(", "-", "0", "\"", "`", "not", [ \t\r\n], [1-9] or [a-zA-Z]"#
        );
        assert_eq!(
            err("a == 1 and"),
            r#"1:11 (10): no match found, expected: [ \t\r\n]"#
        );
        assert_eq!(
            err("a is"),
            r#"1:5 (4): no match found, expected: [ \t\r\n]"#
        );
        // Columns count runes; a newline starts its own line.
        assert_eq!(
            err("a ==\n  "),
            r#"2:3 (7): no match found, expected: "-", "0", "\"", "`", [ \t\r\n], [1-9] or [a-zA-Z]"#
        );
    }

    #[test]
    fn predicate_errors_name_their_rule() {
        assert_eq!(
            err("(a == 1"),
            r#"1:8 (7): rule "grouping": Unmatched parentheses"#
        );
        assert_eq!(err("a[b] == 1"), r#"1:3 (2): rule "index": Invalid index"#);
        assert_eq!(
            err(r#"a["b" == 1"#),
            r#"1:7 (6): rule "index": Unclosed index expression"#
        );
        assert_eq!(
            err("a == 1x"),
            r#"1:7 (6): rule "number": Invalid number literal"#
        );
        assert_eq!(
            err(r#"a == "abc"#),
            r#"1:10 (9): rule "string": Unterminated string literal"#
        );
        assert_eq!(
            err(r#"a == "\q""#),
            r#"1:6 (5): rule "string": invalid syntax"#
        );
        assert_eq!(err("x in 1"), r#"1:6 (5): rule "match": Invalid selector"#);
        // Every message recorded is reported, in order.
        assert_eq!(
            err(r#"a["b"#),
            "1:5 (4): rule \"string\": Unterminated string literal\n1:3 (2): rule \"index\": Invalid index"
        );
    }

    #[test]
    fn nesting_is_bounded_without_overflowing() {
        let ok = format!(
            "{}a == 1{}",
            "(".repeat(MAX_NESTING),
            ")".repeat(MAX_NESTING)
        );
        assert!(parse(&ok).is_ok());
        // The outermost pair belongs to `Input`, not to a group.
        let deep = format!(
            "{}a == 1{}",
            "(".repeat(MAX_NESTING + 2),
            ")".repeat(MAX_NESTING + 2)
        );
        assert!(err(&deep).contains("Parentheses nest more than 128 deep"));
        let nots = format!("{}a == 1", "not ".repeat(10_001));
        assert_eq!(
            parse(&nots),
            Ok(Expr::Not(Box::new(m(&["a"], MatchOp::Equal, Some("1")))))
        );
        let long = vec!["a == 1"; 5000].join(" or ");
        assert!(matches!(parse(&long), Ok(Expr::Or(v)) if v.len() == 5000));
        let unclosed = "(".repeat(10_000);
        assert!(parse(&unclosed).is_err());
    }
}
