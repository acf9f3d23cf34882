//! The syntax tree a filter parses to, before it is checked against a
//! schema. Strings are bytes, as Go's are: `"\xff"` is a valid literal
//! whose value is not UTF-8.

use std::fmt;

/// A boolean expression. `a or b or c` is one [`Expr::Or`] of three (go-bexpr
/// nests it to the right; evaluation order and results are the same).
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Or(Vec<Expr>),
    And(Vec<Expr>),
    Not(Box<Expr>),
    Match(Match),
}

impl Expr {
    /// The match expressions left to right, as validation visits them.
    pub fn matches(&self) -> Vec<&Match> {
        let mut out = Vec::new();
        let mut stack = vec![self];
        while let Some(e) = stack.pop() {
            match e {
                Expr::Or(v) | Expr::And(v) => stack.extend(v.iter().rev()),
                Expr::Not(inner) => stack.push(inner),
                Expr::Match(m) => out.push(m),
            }
        }
        out
    }
}

/// `Selector <op> Value`, `Value [not] in Selector`, `Selector is [not] empty`.
#[derive(Debug, Clone, PartialEq)]
pub struct Match {
    pub selector: Selector,
    pub op: MatchOp,
    /// `None` for `is empty` / `is not empty`.
    pub value: Option<Vec<u8>>,
}

/// The match operators, named as go-bexpr names them in its errors.
/// `contains` is [`MatchOp::In`] and `not contains` [`MatchOp::NotIn`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    Equal,
    NotEqual,
    In,
    NotIn,
    IsEmpty,
    IsNotEmpty,
    Matches,
    NotMatches,
}

impl MatchOp {
    pub fn name(self) -> &'static str {
        match self {
            MatchOp::Equal => "Equal",
            MatchOp::NotEqual => "Not Equal",
            MatchOp::In => "In",
            MatchOp::NotIn => "Not In",
            MatchOp::IsEmpty => "Is Empty",
            MatchOp::IsNotEmpty => "Is Not Empty",
            MatchOp::Matches => "Matches",
            MatchOp::NotMatches => "Not Matches",
        }
    }

    /// The operator a negated one negates, if it is negated.
    pub fn positive(self) -> (MatchOp, bool) {
        match self {
            MatchOp::NotEqual => (MatchOp::Equal, true),
            MatchOp::NotIn => (MatchOp::In, true),
            MatchOp::IsNotEmpty => (MatchOp::IsEmpty, true),
            MatchOp::NotMatches => (MatchOp::Matches, true),
            op => (op, false),
        }
    }
}

/// `Service.Meta["a-b"]`: its parts, index strings included as parts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selector(pub Vec<Vec<u8>>);

impl Selector {
    /// The first `n` parts, as go-bexpr names an invalid prefix.
    pub fn prefix(&self, n: usize) -> Selector {
        Selector(self.0[..n.min(self.0.len())].to_vec())
    }

    /// The parts joined with `.`, as Go's `Selector.String()`.
    pub fn joined(&self) -> Vec<u8> {
        self.0.join(&b'.')
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.joined()))
    }
}
