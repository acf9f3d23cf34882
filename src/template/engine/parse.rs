//! Builds the tree of a template from its tokens, with the checks Go's
//! parser makes before anything runs: every function named must exist
//! (`function "foo" not defined`), every variable used must be declared
//! in scope, `{{break}}`/`{{continue}}` only inside `{{range}}`, literals
//! cannot be called, and each `{{if}}`, `{{range}}`, `{{with}}` and
//! `{{define}}` is closed by an `{{end}}`.

use super::lex::{Keyword, Tok, Token};
use super::SyntaxError;
use std::collections::HashMap;

#[derive(Debug, Clone)]
pub enum Node {
    Text(Vec<u8>),
    /// `{{pipeline}}`: printed unless it declares variables.
    Action(Pipeline),
    If(Branch),
    Range(Branch),
    With(Branch),
    /// `{{template "name" pipeline}}`.
    Template {
        name: String,
        pipe: Option<Pipeline>,
        pos: usize,
    },
    Break,
    Continue,
}

/// The parts an `if`, `range` or `with` share.
#[derive(Debug, Clone)]
pub struct Branch {
    pub pipe: Pipeline,
    pub list: Vec<Node>,
    pub else_list: Option<Vec<Node>>,
}

#[derive(Debug, Clone)]
pub struct Pipeline {
    pub pos: usize,
    /// Variables declared (`:=`) or assigned (`=`), in source order.
    pub decl: Vec<String>,
    pub assign: bool,
    pub cmds: Vec<Command>,
}

#[derive(Debug, Clone)]
pub struct Command {
    pub pos: usize,
    pub args: Vec<Arg>,
    /// The command's source text, for `executing ... at <...>` errors.
    pub text: String,
}

#[derive(Debug, Clone)]
pub enum Arg {
    /// `.A.B`
    Field(Vec<String>),
    /// `$x.A.B` (`$x` alone has no fields).
    Variable(String, Vec<String>),
    Dot,
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Vec<u8>),
    /// A function name.
    Ident(String),
    /// `(pipeline)` with a field chain after it (`(index . 0).Name`).
    Pipe(Box<Pipeline>, Vec<String>),
}

/// A parsed template: its body and the templates it `define`s.
#[derive(Debug, Clone, Default)]
pub struct Tree {
    pub root: Vec<Node>,
    pub defines: HashMap<String, Vec<Node>>,
}

/// What ended a list of nodes.
enum Terminator {
    Eof,
    End(usize),
    /// `{{else}}`, or `{{else if ...}}` / `{{else with ...}}` (the keyword).
    Else(usize, Option<Keyword>),
}

pub struct Parser<'a> {
    src: &'a [u8],
    toks: Vec<Token>,
    i: usize,
    /// Variables in scope, innermost last.
    vars: Vec<String>,
    range_depth: usize,
    /// Parenthesized pipelines and control blocks open around the token
    /// being parsed; see [`MAX_NESTING`].
    nesting: usize,
    has_func: &'a dyn Fn(&str) -> bool,
    defines: HashMap<String, Vec<Node>>,
}

pub fn parse(
    src: &[u8],
    toks: Vec<Token>,
    has_func: &dyn Fn(&str) -> bool,
) -> Result<Tree, SyntaxError> {
    let mut p = Parser {
        src,
        toks,
        i: 0,
        vars: vec!["$".into()],
        range_depth: 0,
        nesting: 0,
        has_func,
        defines: HashMap::new(),
    };
    let (root, end) = p.list()?;
    match end {
        Terminator::Eof => {}
        Terminator::End(pos) => return Err(p.err(pos, "unexpected {{end}}")),
        Terminator::Else(pos, _) => return Err(p.err(pos, "unexpected {{else}}")),
    }
    Ok(Tree {
        root,
        defines: p.defines,
    })
}

/// How deeply parenthesized pipelines and `if`/`range`/`with` blocks may
/// nest. The parser, the executor and the tree's drop all recurse once per
/// level, so an input of nothing but `(` would otherwise overflow the
/// stack. Go allows deeper nesting (10,000); no real template comes close
/// to this limit, and at it a debug build still fits a 2 MiB thread stack.
pub const MAX_NESTING: usize = 100;

/// The builtins every template has, whatever the function map.
pub const BUILTINS: &[&str] = &[
    "and", "or", "not", "len", "index", "slice", "print", "printf", "println", "eq", "ne", "lt",
    "le", "gt", "ge", "html", "js", "urlquery", "call",
];

impl<'a> Parser<'a> {
    fn err(&self, pos: usize, msg: impl Into<String>) -> SyntaxError {
        SyntaxError {
            pos,
            msg: msg.into(),
        }
    }

    fn peek(&self) -> Option<&Token> {
        self.toks.get(self.i)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.toks.get(self.i).cloned();
        self.i += 1;
        t
    }

    fn eof_pos(&self) -> usize {
        self.src.len()
    }

    fn expect_close(&mut self, context: &str) -> Result<(), SyntaxError> {
        match self.next() {
            Some(Token {
                tok: Tok::Close, ..
            }) => Ok(()),
            Some(t) => Err(self.err(
                t.pos,
                format!("unexpected {} in {context}", describe(&t.tok)),
            )),
            None => Err(self.err(self.eof_pos(), format!("unexpected EOF in {context}"))),
        }
    }

    /// Nodes up to EOF, `{{end}}` or `{{else}}`.
    fn list(&mut self) -> Result<(Vec<Node>, Terminator), SyntaxError> {
        let mut nodes = Vec::new();
        while let Some(t) = self.next() {
            match t.tok {
                Tok::Text(b) => nodes.push(Node::Text(b)),
                Tok::Open => {
                    if let Some(end) = self.action(&mut nodes)? {
                        return Ok((nodes, end));
                    }
                }
                other => return Err(self.err(t.pos, format!("unexpected {}", describe(&other)))),
            }
        }
        Ok((nodes, Terminator::Eof))
    }

    /// One action after its `{{`; `Some` when it ends the enclosing list.
    fn action(&mut self, nodes: &mut Vec<Node>) -> Result<Option<Terminator>, SyntaxError> {
        let Some(t) = self.peek().cloned() else {
            return Err(self.err(self.eof_pos(), "unclosed action"));
        };
        if let Tok::Keyword(kw) = t.tok {
            self.i += 1;
            match kw {
                Keyword::End => {
                    self.expect_close("end")?;
                    return Ok(Some(Terminator::End(t.pos)));
                }
                Keyword::Else => {
                    let chained = match self.peek().map(|t| &t.tok) {
                        Some(Tok::Keyword(k @ (Keyword::If | Keyword::With))) => Some(*k),
                        _ => {
                            self.expect_close("else")?;
                            None
                        }
                    };
                    return Ok(Some(Terminator::Else(t.pos, chained)));
                }
                Keyword::If => nodes.push(Node::If(self.control(Keyword::If, t.pos)?)),
                Keyword::Range => nodes.push(Node::Range(self.control(Keyword::Range, t.pos)?)),
                Keyword::With => nodes.push(Node::With(self.control(Keyword::With, t.pos)?)),
                Keyword::Break | Keyword::Continue => {
                    let name = if kw == Keyword::Break {
                        "break"
                    } else {
                        "continue"
                    };
                    if self.range_depth == 0 {
                        return Err(
                            self.err(t.pos, format!("{{{{{name}}}}} outside {{{{range}}}}"))
                        );
                    }
                    self.expect_close(name)?;
                    nodes.push(if kw == Keyword::Break {
                        Node::Break
                    } else {
                        Node::Continue
                    });
                }
                Keyword::Template => nodes.push(self.template_call(t.pos)?),
                Keyword::Define => self.define(t.pos)?,
                Keyword::Block => {
                    let call = self.template_call(t.pos)?;
                    if let Node::Template { name, .. } = &call {
                        let name = name.clone();
                        let body = self.define_body(t.pos)?;
                        self.defines.insert(name, body);
                    }
                    nodes.push(call);
                }
            }
            return Ok(None);
        }
        let pipe = self.pipeline("command", false)?;
        nodes.push(Node::Action(pipe));
        Ok(None)
    }

    fn template_name(&mut self, context: &str) -> Result<String, SyntaxError> {
        match self.next() {
            Some(Token {
                tok: Tok::Str(s), ..
            }) => Ok(String::from_utf8_lossy(&s).into_owned()),
            Some(t) => Err(self.err(
                t.pos,
                format!("unexpected {} in {context}", describe(&t.tok)),
            )),
            None => Err(self.err(self.eof_pos(), format!("unexpected EOF in {context}"))),
        }
    }

    fn template_call(&mut self, pos: usize) -> Result<Node, SyntaxError> {
        let name = self.template_name("template clause")?;
        let pipe = if matches!(self.peek().map(|t| &t.tok), Some(Tok::Close)) {
            self.i += 1;
            None
        } else {
            Some(self.pipeline("template clause", false)?)
        };
        Ok(Node::Template { name, pipe, pos })
    }

    fn define(&mut self, pos: usize) -> Result<(), SyntaxError> {
        let name = self.template_name("define clause")?;
        self.expect_close("define clause")?;
        let body = self.define_body(pos)?;
        self.defines.insert(name, body);
        Ok(())
    }

    /// A `define`/`block` body: its own variable scope (only `$`).
    fn define_body(&mut self, pos: usize) -> Result<Vec<Node>, SyntaxError> {
        let saved_vars = std::mem::replace(&mut self.vars, vec!["$".into()]);
        let saved_depth = std::mem::replace(&mut self.range_depth, 0);
        let result = self.list();
        self.vars = saved_vars;
        self.range_depth = saved_depth;
        match result? {
            (body, Terminator::End(_)) => Ok(body),
            (_, Terminator::Else(p, _)) => Err(self.err(p, "unexpected {{else}} in define")),
            (_, Terminator::Eof) => Err(self.err(pos, "unexpected EOF in define")),
        }
    }

    /// `if`, `range` or `with` after its keyword, through its `{{end}}`.
    fn control(&mut self, kw: Keyword, pos: usize) -> Result<Branch, SyntaxError> {
        let scope = self.vars.len();
        let context = match kw {
            Keyword::If => "if",
            Keyword::Range => "range",
            _ => "with",
        };
        if self.nesting >= MAX_NESTING {
            return Err(self.err(pos, "max expression depth exceeded"));
        }
        self.nesting += 1;
        let result = self.control_body(kw, context, pos);
        self.nesting -= 1;
        self.vars.truncate(scope);
        result
    }

    fn control_body(
        &mut self,
        kw: Keyword,
        context: &str,
        pos: usize,
    ) -> Result<Branch, SyntaxError> {
        let pipe = self.pipeline(context, kw == Keyword::Range)?;
        if kw == Keyword::Range {
            self.range_depth += 1;
        }
        let listed = self.list();
        if kw == Keyword::Range {
            self.range_depth -= 1;
        }
        let (list, end) = listed?;
        let else_list = match end {
            Terminator::End(_) => None,
            Terminator::Eof => return Err(self.err(pos, format!("unexpected EOF in {context}"))),
            Terminator::Else(_, None) => {
                let (else_list, end) = self.list()?;
                match end {
                    Terminator::End(_) => Some(else_list),
                    Terminator::Else(p, _) => {
                        return Err(
                            self.err(p, format!("expected end; found {{{{else}}}} in {context}"))
                        )
                    }
                    Terminator::Eof => {
                        return Err(self.err(pos, format!("unexpected EOF in {context}")))
                    }
                }
            }
            Terminator::Else(p, Some(chained)) => {
                if kw == Keyword::Range || (kw == Keyword::With) != (chained == Keyword::With) {
                    return Err(self.err(
                        p,
                        format!("unexpected else {} in {context}", keyword_name(chained)),
                    ));
                }
                // `{{else if x}}...{{end}}` is `{{else}}{{if x}}...{{end}}{{end}}`:
                // the nested control consumes the shared `{{end}}`.
                self.i += 1;
                let nested = self.control(chained, p)?;
                Some(vec![if chained == Keyword::If {
                    Node::If(nested)
                } else {
                    Node::With(nested)
                }])
            }
        };
        Ok(Branch {
            pipe,
            list,
            else_list,
        })
    }

    /// A pipeline up to `}}` (or `)` when `paren`), with its declarations.
    fn pipeline(&mut self, context: &str, is_range: bool) -> Result<Pipeline, SyntaxError> {
        self.pipeline_until(context, is_range, false)
    }

    fn pipeline_until(
        &mut self,
        context: &str,
        is_range: bool,
        paren: bool,
    ) -> Result<Pipeline, SyntaxError> {
        let pos = self.peek().map(|t| t.pos).unwrap_or(self.eof_pos());
        let mut pipe = Pipeline {
            pos,
            decl: Vec::new(),
            assign: false,
            cmds: Vec::new(),
        };
        self.declarations(&mut pipe, context, is_range)?;
        loop {
            let Some(t) = self.peek().cloned() else {
                return Err(self.err(self.eof_pos(), format!("unclosed action in {context}")));
            };
            match (&t.tok, paren) {
                (Tok::Close, false) | (Tok::RParen, true) => {
                    self.i += 1;
                    if pipe.cmds.is_empty() {
                        return Err(self.err(t.pos, format!("missing value for {context}")));
                    }
                    break;
                }
                (Tok::Close, true) => return Err(self.err(t.pos, "unclosed left paren")),
                (Tok::RParen, false) => return Err(self.err(t.pos, "unexpected right paren")),
                _ => {}
            }
            let cmd = self.command()?;
            pipe.cmds.push(cmd);
            if matches!(self.peek().map(|t| &t.tok), Some(Tok::Pipe)) {
                self.i += 1;
            }
        }
        for (n, cmd) in pipe.cmds.iter().enumerate().skip(1) {
            if matches!(
                cmd.args.first(),
                Some(
                    Arg::Bool(_) | Arg::Dot | Arg::Nil | Arg::Int(_) | Arg::Float(_) | Arg::Str(_)
                )
            ) {
                return Err(self.err(
                    cmd.pos,
                    format!("non executable command in pipeline stage {}", n + 1),
                ));
            }
        }
        // Declared variables come into scope after the pipeline.
        if !pipe.assign {
            self.vars.extend(pipe.decl.iter().cloned());
        }
        Ok(pipe)
    }

    /// `$x :=`, `$x =`, and in a range `$i, $e :=`.
    fn declarations(
        &mut self,
        pipe: &mut Pipeline,
        context: &str,
        is_range: bool,
    ) -> Result<(), SyntaxError> {
        let Some(Token {
            tok: Tok::Variable(first),
            ..
        }) = self.peek().cloned()
        else {
            return Ok(());
        };
        let after = self.toks.get(self.i + 1).map(|t| t.tok.clone());
        match after {
            Some(Tok::Declare) | Some(Tok::Assign) => {
                pipe.assign = after == Some(Tok::Assign);
                self.i += 2;
                pipe.decl.push(first);
            }
            Some(Tok::Comma) if is_range => {
                let second = self.toks.get(self.i + 2).cloned();
                let op = self.toks.get(self.i + 3).map(|t| t.tok.clone());
                match (second, op) {
                    (
                        Some(Token {
                            tok: Tok::Variable(second),
                            ..
                        }),
                        Some(op @ (Tok::Declare | Tok::Assign)),
                    ) => {
                        pipe.assign = op == Tok::Assign;
                        self.i += 4;
                        pipe.decl.push(first);
                        pipe.decl.push(second);
                    }
                    (_, _) => {
                        let pos = self.toks[self.i].pos;
                        return Err(self.err(pos, "range can only initialize variables"));
                    }
                }
            }
            Some(Tok::Comma) => {
                let pos = self.toks[self.i].pos;
                return Err(self.err(pos, format!("too many declarations in {context}")));
            }
            _ => return Ok(()),
        }
        if pipe.assign {
            for v in &pipe.decl {
                if !self.vars.contains(v) {
                    return Err(self.err(pipe.pos, format!("undefined variable {v:?}")));
                }
            }
        }
        Ok(())
    }

    fn command(&mut self) -> Result<Command, SyntaxError> {
        let start = self.peek().map(|t| t.pos).unwrap_or(self.eof_pos());
        let mut args = Vec::new();
        loop {
            let Some(t) = self.peek().cloned() else {
                return Err(self.err(self.eof_pos(), "unclosed action"));
            };
            if matches!(t.tok, Tok::Close | Tok::RParen | Tok::Pipe) {
                break;
            }
            if !args.is_empty() && !t.spaced {
                return Err(self.err(t.pos, format!("unexpected {} in operand", describe(&t.tok))));
            }
            args.push(self.operand()?);
        }
        let end = self.peek().map(|t| t.pos).unwrap_or(self.eof_pos());
        if args.is_empty() {
            return Err(self.err(start, "missing value for command"));
        }
        let text = String::from_utf8_lossy(&self.src[start..end.max(start)])
            .trim()
            .to_string();
        Ok(Command {
            pos: start,
            args,
            text,
        })
    }

    /// A term and the field chain right after it.
    fn operand(&mut self) -> Result<Arg, SyntaxError> {
        let (term, pos) = self.term()?;
        let mut chain = Vec::new();
        while let Some(Token {
            tok: Tok::Field(f),
            spaced: false,
            ..
        }) = self.peek().cloned()
        {
            self.i += 1;
            chain.push(f);
        }
        if chain.is_empty() {
            return Ok(term);
        }
        Ok(match term {
            Arg::Field(mut fields) => {
                fields.extend(chain);
                Arg::Field(fields)
            }
            Arg::Variable(name, mut fields) => {
                fields.extend(chain);
                Arg::Variable(name, fields)
            }
            Arg::Pipe(pipe, mut fields) => {
                fields.extend(chain);
                Arg::Pipe(pipe, fields)
            }
            Arg::Ident(name) => {
                return Err(self.err(pos, format!("unexpected . after term {name:?}")));
            }
            _ => return Err(self.err(pos, "unexpected . after term")),
        })
    }

    fn term(&mut self) -> Result<(Arg, usize), SyntaxError> {
        let Some(t) = self.next() else {
            return Err(self.err(self.eof_pos(), "unclosed action"));
        };
        let arg = match t.tok {
            Tok::Ident(name) => {
                if !(self.has_func)(&name) && !BUILTINS.contains(&name.as_str()) {
                    return Err(self.err(t.pos, format!("function {name:?} not defined")));
                }
                Arg::Ident(name)
            }
            Tok::Dot => Arg::Dot,
            Tok::Nil => Arg::Nil,
            Tok::Bool(b) => Arg::Bool(b),
            Tok::Str(s) => Arg::Str(s),
            Tok::Char(c) => Arg::Int(c),
            Tok::Number(text) => number(&text)
                .ok_or_else(|| self.err(t.pos, format!("bad number syntax: {text:?}")))?,
            Tok::Field(f) => Arg::Field(vec![f]),
            Tok::Variable(v) => {
                if !self.vars.contains(&v) {
                    return Err(self.err(t.pos, format!("undefined variable {v:?}")));
                }
                Arg::Variable(v, Vec::new())
            }
            Tok::LParen => {
                if self.nesting >= MAX_NESTING {
                    return Err(self.err(t.pos, "max expression depth exceeded"));
                }
                self.nesting += 1;
                let pipe = self.pipeline_until("parenthesized pipeline", false, true);
                self.nesting -= 1;
                Arg::Pipe(Box::new(pipe?), Vec::new())
            }
            other => {
                return Err(self.err(t.pos, format!("unexpected {} in operand", describe(&other))))
            }
        };
        Ok((arg, t.pos))
    }
}

/// A number literal as Go's parser types it: an integer when it reads as
/// one, else a float.
fn number(text: &str) -> Option<Arg> {
    let clean: String = text.chars().filter(|c| *c != '_').collect();
    let (neg, body) = match clean.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, clean.strip_prefix('+').unwrap_or(&clean)),
    };
    let lower = body.to_ascii_lowercase();
    let radix_int = |digits: &str, radix: u32| i64::from_str_radix(digits, radix).ok();
    let int = if let Some(h) = lower.strip_prefix("0x") {
        if h.contains('.') || h.contains('p') {
            None
        } else {
            radix_int(h, 16)
        }
    } else if let Some(o) = lower.strip_prefix("0o") {
        radix_int(o, 8)
    } else if let Some(b) = lower.strip_prefix("0b") {
        radix_int(b, 2)
    } else if lower.len() > 1 && lower.starts_with('0') && lower.bytes().all(|b| b.is_ascii_digit())
    {
        radix_int(&lower[1..], 8)
    } else if lower.bytes().all(|b| b.is_ascii_digit()) && !lower.is_empty() {
        lower.parse().ok()
    } else {
        None
    };
    if let Some(i) = int {
        return Some(Arg::Int(if neg { -i } else { i }));
    }
    if lower.starts_with("0x") || lower.is_empty() {
        return None;
    }
    let f: f64 = lower.parse().ok()?;
    Some(Arg::Float(if neg { -f } else { f }))
}

fn keyword_name(k: Keyword) -> &'static str {
    match k {
        Keyword::If => "if",
        Keyword::Else => "else",
        Keyword::End => "end",
        Keyword::Range => "range",
        Keyword::With => "with",
        Keyword::Define => "define",
        Keyword::Template => "template",
        Keyword::Block => "block",
        Keyword::Break => "break",
        Keyword::Continue => "continue",
    }
}

/// A token as Go's parser names it in `unexpected ...` errors.
fn describe(t: &Tok) -> String {
    match t {
        Tok::Text(_) => "text".into(),
        Tok::Open => "\"{{\"".into(),
        Tok::Close => "\"}}\"".into(),
        Tok::Field(f) => format!("<.{f}>"),
        Tok::Variable(v) => format!("<{v}>"),
        Tok::Dot => "<.>".into(),
        Tok::Ident(i) => format!("<{i}>"),
        Tok::Keyword(k) => format!("<{}>", keyword_name(*k)),
        Tok::Bool(b) => format!("<{b}>"),
        Tok::Nil => "<nil>".into(),
        Tok::Str(s) => format!("{:?}", String::from_utf8_lossy(s)),
        Tok::Char(c) => format!("<{c}>"),
        Tok::Number(n) => format!("<{n}>"),
        Tok::Pipe => "\"|\"".into(),
        Tok::LParen => "\"(\"".into(),
        Tok::RParen => "\")\"".into(),
        Tok::Comma => "\",\"".into(),
        Tok::Declare => "\":=\"".into(),
        Tok::Assign => "\"=\"".into(),
    }
}
