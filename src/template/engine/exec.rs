//! Runs a parsed template the way Go's `text/template` executes one:
//! `.` is rebound by `range` and `with`, `$` is the data, a command's
//! value is piped in as the next command's last argument, variables live
//! until the `{{end}}` of the control structure that declared them, `and`
//! and `or` stop at the first argument that decides them, and a field of
//! a nil value is nil (it prints `<no value>`) unless missing keys are
//! errors.

use super::builtins;
use super::fmt::write_value;
use super::parse::{Arg, Branch, Command, Node, Pipeline, Tree};
use super::value::Value;

/// The functions a template may call besides the builtins.
pub trait Functions {
    /// Calls `name` (known to the parser) with evaluated arguments.
    fn call(&mut self, name: &str, args: Vec<Value>) -> std::result::Result<Value, String>;
}

/// An error while executing, before it is given its line and column.
#[derive(Debug, Clone)]
pub struct ExecFailure {
    pub pos: usize,
    /// The source of the command that failed (`.Address`, `index . 3`).
    pub at: String,
    pub msg: String,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// `missingkey=error`: a missing map key or a field of nil is an error
    /// rather than the zero value (consul-template's `error_on_missing_key`).
    pub missing_key_error: bool,
}

/// How a list of nodes ended.
enum Flow {
    Normal,
    Break,
    Continue,
}

/// The limit on nested `{{template}}` calls. Go allows 100,000 on its
/// growable stacks; each call here takes several native frames, and at
/// 1,000 a template that calls itself overflowed a 2 MiB thread stack.
const MAX_DEPTH: usize = 100;

/// Go bounds neither the work nor the output of a template, so
/// `{{range 1000000000}}` or a few nested ranges run for hours and fill
/// memory. cairn stops a render after this many executed nodes and range
/// iterations (real templates, even over thousands of instances, stay
/// orders of magnitude below it)...
pub const MAX_STEPS: u64 = 10_000_000;
/// ...or once its output passes this size.
pub const MAX_OUTPUT: usize = 64 << 20;

pub struct State<'t> {
    tree: &'t Tree,
    funcs: &'t mut dyn Functions,
    opts: Options,
    vars: Vec<(String, Value)>,
    out: Vec<u8>,
    depth: usize,
    /// Nodes executed and range iterations run so far, against [`MAX_STEPS`].
    steps: u64,
    /// Where the command being evaluated is, for errors.
    at: (usize, &'t str),
}

type Result<T> = std::result::Result<T, ExecFailure>;

pub fn execute(
    tree: &Tree,
    data: Value,
    funcs: &mut dyn Functions,
    opts: Options,
) -> std::result::Result<Vec<u8>, ExecFailure> {
    let mut s = State {
        tree,
        funcs,
        opts,
        vars: vec![("$".into(), data.clone())],
        out: Vec::new(),
        depth: 0,
        steps: 0,
        at: (0, ""),
    };
    s.walk(&data, &tree.root)?;
    Ok(s.out)
}

impl<'t> State<'t> {
    fn fail(&self, msg: impl Into<String>) -> ExecFailure {
        ExecFailure {
            pos: self.at.0,
            at: self.at.1.to_string(),
            msg: msg.into(),
        }
    }

    /// Counts `n` steps of work; fails once the render exceeds its bounds.
    fn spend(&mut self, n: u64) -> Result<()> {
        self.steps = self.steps.saturating_add(n);
        if self.steps > MAX_STEPS {
            return Err(self.fail(format!("template execution exceeded {MAX_STEPS} steps")));
        }
        if self.out.len() > MAX_OUTPUT {
            return Err(self.fail(format!("template output exceeded {MAX_OUTPUT} bytes")));
        }
        Ok(())
    }

    fn walk(&mut self, dot: &Value, nodes: &'t [Node]) -> Result<Flow> {
        for node in nodes {
            self.spend(1)?;
            match node {
                Node::Text(t) => self.out.extend_from_slice(t),
                Node::Action(pipe) => {
                    let v = self.pipeline(dot, pipe)?;
                    if pipe.decl.is_empty() {
                        print(&mut self.out, &v);
                    }
                }
                Node::If(b) => {
                    let flow = self.if_or_with(dot, b, false)?;
                    if !matches!(flow, Flow::Normal) {
                        return Ok(flow);
                    }
                }
                Node::With(b) => {
                    let flow = self.if_or_with(dot, b, true)?;
                    if !matches!(flow, Flow::Normal) {
                        return Ok(flow);
                    }
                }
                Node::Range(b) => self.range(dot, b)?,
                Node::Template { name, pipe, pos } => {
                    self.template(dot, name, pipe.as_ref(), *pos)?
                }
                Node::Break => return Ok(Flow::Break),
                Node::Continue => return Ok(Flow::Continue),
            }
        }
        Ok(Flow::Normal)
    }

    fn if_or_with(&mut self, dot: &Value, b: &'t Branch, with: bool) -> Result<Flow> {
        let mark = self.vars.len();
        let v = self.pipeline(dot, &b.pipe)?;
        let flow = if v.truth() {
            let inner = if with { v } else { dot.clone() };
            self.walk(&inner, &b.list)?
        } else if let Some(else_list) = &b.else_list {
            self.walk(dot, else_list)?
        } else {
            Flow::Normal
        };
        self.vars.truncate(mark);
        Ok(flow)
    }

    fn range(&mut self, dot: &Value, b: &'t Branch) -> Result<()> {
        let mark = self.vars.len();
        let v = self.pipeline_value(dot, &b.pipe)?;
        let items: Vec<(Value, Value)> = match &v {
            Value::List(items) => items
                .iter()
                .enumerate()
                .map(|(i, e)| (Value::Int(i as i64), e.clone()))
                .collect(),
            Value::Map(m) => m
                .entries
                .iter()
                .map(|(k, e)| (Value::string(k), e.clone()))
                .collect(),
            Value::Int(n) => {
                // Charged up front: the items are built before the loop.
                self.spend(u64::try_from(*n).unwrap_or(0))?;
                (0..*n).map(|i| (Value::Int(i), Value::Int(i))).collect()
            }
            Value::Nil => Vec::new(),
            other => {
                self.at = (
                    b.pipe.pos,
                    b.pipe.cmds.first().map(|c| c.text.as_str()).unwrap_or(""),
                );
                return Err(self.fail(format!("range can't iterate over {}", shown(other))));
            }
        };
        if items.is_empty() {
            if let Some(else_list) = &b.else_list {
                self.walk(dot, else_list)?;
            }
            self.vars.truncate(mark);
            return Ok(());
        }
        for (index, elem) in items {
            self.spend(1)?;
            let inner = self.vars.len();
            match b.pipe.decl.as_slice() {
                [] => {}
                [e] => self.bind(e, elem.clone(), b.pipe.assign)?,
                [i, e, ..] => {
                    self.bind(i, index, b.pipe.assign)?;
                    self.bind(e, elem.clone(), b.pipe.assign)?;
                }
            }
            let flow = self.walk(&elem, &b.list)?;
            // Variables declared inside the body do not outlive an
            // iteration; the range's own variables are rebound next time.
            self.vars.truncate(if b.pipe.assign { inner } else { mark });
            if matches!(flow, Flow::Break) {
                break;
            }
        }
        self.vars.truncate(mark);
        Ok(())
    }

    fn template(
        &mut self,
        dot: &Value,
        name: &str,
        pipe: Option<&'t Pipeline>,
        pos: usize,
    ) -> Result<()> {
        let Some(body) = self.tree.defines.get(name) else {
            self.at = (pos, "template");
            return Err(self.fail(format!("no such template {name:?}")));
        };
        let data = match pipe {
            Some(p) => self.pipeline(dot, p)?,
            None => Value::Nil,
        };
        if self.depth >= MAX_DEPTH {
            self.at = (pos, "template");
            return Err(self.fail(format!("exceeded maximum template depth ({MAX_DEPTH})")));
        }
        let saved = std::mem::replace(&mut self.vars, vec![("$".into(), data.clone())]);
        self.depth += 1;
        let result = self.walk(&data, body);
        self.depth -= 1;
        self.vars = saved;
        result.map(|_| ())
    }

    /// Declares (`:=`) or assigns (`=`) a variable.
    fn bind(&mut self, name: &str, v: Value, assign: bool) -> Result<()> {
        if !assign {
            self.vars.push((name.to_string(), v));
            return Ok(());
        }
        match self.vars.iter_mut().rev().find(|(n, _)| n == name) {
            Some(slot) => {
                slot.1 = v;
                Ok(())
            }
            None => Err(self.fail(format!("undefined variable: {name}"))),
        }
    }

    /// A pipeline's value, binding its declared variables.
    fn pipeline(&mut self, dot: &Value, pipe: &'t Pipeline) -> Result<Value> {
        let v = self.pipeline_value(dot, pipe)?;
        for name in &pipe.decl {
            self.bind(name, v.clone(), pipe.assign)?;
        }
        Ok(v)
    }

    /// A pipeline's value without binding (range binds per element).
    fn pipeline_value(&mut self, dot: &Value, pipe: &'t Pipeline) -> Result<Value> {
        let mut value = None;
        for cmd in &pipe.cmds {
            value = Some(self.command(dot, cmd, value)?);
        }
        Ok(value.unwrap_or_default())
    }

    fn command(&mut self, dot: &Value, cmd: &'t Command, fin: Option<Value>) -> Result<Value> {
        self.at = (cmd.pos, &cmd.text);
        let has_args = cmd.args.len() > 1 || fin.is_some();
        match &cmd.args[0] {
            Arg::Field(fields) => self.chain(dot.clone(), fields, has_args),
            Arg::Variable(name, fields) => {
                let v = self.var(name)?;
                if fields.is_empty() {
                    self.not_a_function(cmd, has_args)?;
                    return Ok(v);
                }
                self.chain(v, fields, has_args)
            }
            Arg::Pipe(pipe, fields) => {
                if fields.is_empty() {
                    self.not_a_function(cmd, has_args)?;
                }
                let v = self.pipeline(dot, pipe)?;
                self.at = (cmd.pos, &cmd.text);
                self.chain(v, fields, has_args)
            }
            Arg::Ident(name) => self.function(dot, name, &cmd.args[1..], fin),
            Arg::Nil => Err(self.fail("nil is not a command")),
            other => {
                self.not_a_function(cmd, has_args)?;
                self.arg(dot, other)
            }
        }
    }

    fn not_a_function(&self, cmd: &Command, has_args: bool) -> Result<()> {
        if has_args {
            let first = cmd.text.split_whitespace().next().unwrap_or("");
            return Err(self.fail(format!("can't give argument to non-function {first}")));
        }
        Ok(())
    }

    fn var(&self, name: &str) -> Result<Value> {
        self.vars
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| self.fail(format!("undefined variable: {name}")))
    }

    /// `.A.B.C` from `receiver`; only the last field may be "called".
    fn chain(&self, mut receiver: Value, fields: &[String], has_args: bool) -> Result<Value> {
        for (i, f) in fields.iter().enumerate() {
            let last = i + 1 == fields.len();
            receiver = self.field(&receiver, f, last && has_args)?;
        }
        Ok(receiver)
    }

    fn field(&self, receiver: &Value, name: &str, has_args: bool) -> Result<Value> {
        match receiver {
            Value::Struct(s) => match s.field(name) {
                Some(v) if has_args => {
                    let _ = v;
                    Err(self.fail(format!(
                        "{name} has arguments but cannot be invoked as function"
                    )))
                }
                Some(v) => Ok(v.clone()),
                None => Err(self.fail(format!(
                    "can't evaluate field {name} in type {}",
                    s.type_name
                ))),
            },
            Value::Map(m) => {
                if has_args {
                    return Err(self.fail(format!("{name} is not a method but has arguments")));
                }
                match m.entries.get(name) {
                    Some(v) => Ok(v.clone()),
                    None if self.opts.missing_key_error => {
                        Err(self.fail(format!("map has no entry for key {name:?}")))
                    }
                    None => Ok(m.zero.clone()),
                }
            }
            Value::Nil if self.opts.missing_key_error => {
                Err(self.fail(format!("nil data; no entry for key {name:?}")))
            }
            Value::Nil => Ok(Value::Nil),
            other => Err(self.fail(format!(
                "can't evaluate field {name} in type {}",
                other.type_name()
            ))),
        }
    }

    /// An argument's value.
    fn arg(&mut self, dot: &Value, arg: &'t Arg) -> Result<Value> {
        Ok(match arg {
            Arg::Field(fields) => self.chain(dot.clone(), fields, false)?,
            Arg::Variable(name, fields) => {
                let v = self.var(name)?;
                self.chain(v, fields, false)?
            }
            Arg::Pipe(pipe, fields) => {
                let saved = self.at;
                let v = self.pipeline(dot, pipe)?;
                self.at = saved;
                self.chain(v, fields, false)?
            }
            Arg::Dot => dot.clone(),
            Arg::Nil => Value::Nil,
            Arg::Bool(b) => Value::Bool(*b),
            Arg::Int(i) => Value::Int(*i),
            Arg::Float(f) => Value::Float(*f),
            Arg::Str(s) => Value::from(s.clone()),
            Arg::Ident(name) => self.function(dot, name, &[], None)?,
        })
    }

    fn function(
        &mut self,
        dot: &Value,
        name: &str,
        args: &'t [Arg],
        fin: Option<Value>,
    ) -> Result<Value> {
        let saved = self.at;
        if name == "and" || name == "or" {
            return self.and_or(dot, name == "and", args, fin);
        }
        let mut values = Vec::with_capacity(args.len() + 1);
        for a in args {
            values.push(self.arg(dot, a)?);
        }
        values.extend(fin);
        self.at = saved;
        let result = match builtins::call(name, &values) {
            Some(r) => r,
            None => self.funcs.call(name, values),
        };
        result.map_err(|e| self.fail(format!("error calling {name}: {e}")))
    }

    /// `and`/`or`: the first argument that decides, else the last.
    fn and_or(
        &mut self,
        dot: &Value,
        and: bool,
        args: &'t [Arg],
        fin: Option<Value>,
    ) -> Result<Value> {
        let name = if and { "and" } else { "or" };
        if args.is_empty() && fin.is_none() {
            return Err(self.fail(format!(
                "wrong number of args for {name}: want at least 1 got 0"
            )));
        }
        let mut last = Value::Nil;
        for a in args {
            last = self.arg(dot, a)?;
            if last.truth() != and {
                return Ok(last);
            }
        }
        Ok(fin.unwrap_or(last))
    }
}

/// How an action prints its value: nil is `<no value>`.
fn print(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Nil => out.extend_from_slice(b"<no value>"),
        other => write_value(out, other),
    }
}

fn shown(v: &Value) -> String {
    let mut out = Vec::new();
    write_value(&mut out, v);
    String::from_utf8_lossy(&out).into_owned()
}
