//! A Go `text/template` engine, for templates written for consul-template.
//!
//! No Rust crate implements Go templates completely enough: the one that
//! exists has had no release since 2021, calls functions through plain
//! `fn` pointers (so a function cannot reach the data a render sees, which
//! is how every consul-template function works), keeps strings as UTF-8
//! (so a binary KV value could not render byte-exact) and does not report
//! columns. This one follows Go's language: `lex` (delimiters, trim
//! markers, comments, literals), `parse` (the tree and the checks Go makes
//! before running: unknown functions, undeclared variables), `exec`
//! (pipelines, variables, `if`/`range`/`with`/`else`, `define`/`template`/
//! `block`, `break`/`continue`), `builtins` and `fmt`.
//!
//! Errors name the template, line and column the way Go prints them, with
//! the column added: `template: upstream.ctmpl:3:14: function "servce" not
//! defined`, `template: upstream.ctmpl:2:9: executing "upstream.ctmpl" at
//! <index . 3>: error calling index: index out of range: 3`.

mod builtins;
mod exec;
pub mod fmt;
mod lex;
mod parse;
pub mod value;

#[cfg(test)]
mod tests;

pub use exec::{Functions, Options, MAX_OUTPUT, MAX_STEPS};
pub use value::{Map, Struct, Value};

/// A syntax error at a byte offset, before it is given line and column.
#[derive(Debug, Clone)]
pub struct SyntaxError {
    pub pos: usize,
    pub msg: String,
}

/// A template that failed to parse or to execute.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("template: {name}:{line}:{col}: {msg}")]
    Parse {
        name: String,
        line: usize,
        col: usize,
        msg: String,
    },
    #[error("template: {name}:{line}:{col}: executing {name:?} at <{at}>: {msg}")]
    Exec {
        name: String,
        line: usize,
        col: usize,
        at: String,
        msg: String,
    },
}

/// The delimiters of actions, `{{` and `}}` unless configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delims {
    pub left: String,
    pub right: String,
}

impl Default for Delims {
    fn default() -> Self {
        Delims {
            left: "{{".into(),
            right: "}}".into(),
        }
    }
}

/// A parsed template, ready to execute any number of times.
#[derive(Debug, Clone)]
pub struct Template {
    name: String,
    src: Vec<u8>,
    tree: parse::Tree,
}

impl Template {
    /// Parses `src`; `has_func` says which names besides the builtins are
    /// functions (a call to any other is a syntax error, as in Go).
    pub fn parse(
        name: &str,
        src: &[u8],
        delims: &Delims,
        has_func: &dyn Fn(&str) -> bool,
    ) -> Result<Template, Error> {
        let at = |e: SyntaxError| {
            let (line, col) = line_col(src, e.pos);
            Error::Parse {
                name: name.to_string(),
                line,
                col,
                msg: e.msg,
            }
        };
        let toks = lex::lex(src, delims.left.as_bytes(), delims.right.as_bytes()).map_err(at)?;
        let tree = parse::parse(src, toks, has_func).map_err(at)?;
        Ok(Template {
            name: name.to_string(),
            src: src.to_vec(),
            tree,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs the template with `data` as `.` and `$`.
    pub fn execute(
        &self,
        data: Value,
        funcs: &mut dyn Functions,
        opts: Options,
    ) -> Result<Vec<u8>, Error> {
        exec::execute(&self.tree, data, funcs, opts).map_err(|e| {
            let (line, col) = line_col(&self.src, e.pos);
            Error::Exec {
                name: self.name.clone(),
                line,
                col,
                at: e.at,
                msg: e.msg,
            }
        })
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(src: &[u8], pos: usize) -> (usize, usize) {
    let before = &src[..pos.min(src.len())];
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let start = before
        .iter()
        .rposition(|b| *b == b'\n')
        .map(|i| i + 1)
        .unwrap_or(0);
    let col = String::from_utf8_lossy(&before[start..]).chars().count() + 1;
    (line, col)
}
