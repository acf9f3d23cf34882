//! Command-line flags the way Go's `flag` package parses them, which is what
//! Consul's commands use, so that a `consul ...` command line works unchanged
//! against `cairn ...`:
//!
//! - `-name=value`, `-name value`, `--name=value` and `--name value`;
//! - booleans take no separate argument: `-server`, `-server=false`
//!   (`-server false` leaves `false` as the first positional argument);
//! - a repeated flag is handed to its setter each time, so list flags
//!   (`-retry-join a -retry-join b`) collect every value and scalar flags
//!   keep the last;
//! - parsing stops at the first positional argument or after `--`, so in
//!   `cairn lock -n=1 prefix ls -l` the child's `-l` is left alone;
//! - errors are Go's texts (`flag provided but not defined: -bogus`), and an
//!   undeclared `-h` or `-help` asks for the usage.
//!
//! Each subcommand declares its flags in one table of [`Flag`]s (name, kind
//! with a setter into the subcommand's options struct, help text); the same
//! table drives parsing and the usage text.

use std::time::Duration;

/// How a flag's value is parsed, and where it goes.
pub enum Kind<T> {
    /// `-name` or `-name=<bool>`.
    Bool(fn(&mut T, bool)),
    /// Any text; given twice, the setter sees both and normally keeps the last.
    Text(fn(&mut T, String)),
    /// Text that may be given more than once, each value collected.
    List(fn(&mut T, String)),
    /// A decimal integer (Consul's `int` flags).
    Int(fn(&mut T, i32)),
    /// A non-negative decimal integer.
    Uint(fn(&mut T, u32)),
    /// A non-negative 64-bit decimal integer (Go's `uint64` flags).
    Uint64(fn(&mut T, u64)),
    /// A Go duration (`10s`, `1m30s`).
    Duration(fn(&mut T, Duration)),
}

/// One row of a subcommand's flag table.
pub struct Flag<T> {
    pub name: &'static str,
    pub kind: Kind<T>,
    /// Shown under the flag in the usage; a word in backquotes names the
    /// value (`the `address` to bind` shows `-bind=<address>`), as in Go.
    pub help: &'static str,
}

impl<T> Flag<T> {
    pub fn bool(name: &'static str, help: &'static str, set: fn(&mut T, bool)) -> Self {
        Flag {
            name,
            kind: Kind::Bool(set),
            help,
        }
    }

    pub fn text(name: &'static str, help: &'static str, set: fn(&mut T, String)) -> Self {
        Flag {
            name,
            kind: Kind::Text(set),
            help,
        }
    }

    pub fn list(name: &'static str, help: &'static str, set: fn(&mut T, String)) -> Self {
        Flag {
            name,
            kind: Kind::List(set),
            help,
        }
    }

    pub fn int(name: &'static str, help: &'static str, set: fn(&mut T, i32)) -> Self {
        Flag {
            name,
            kind: Kind::Int(set),
            help,
        }
    }

    pub fn uint(name: &'static str, help: &'static str, set: fn(&mut T, u32)) -> Self {
        Flag {
            name,
            kind: Kind::Uint(set),
            help,
        }
    }

    pub fn uint64(name: &'static str, help: &'static str, set: fn(&mut T, u64)) -> Self {
        Flag {
            name,
            kind: Kind::Uint64(set),
            help,
        }
    }

    pub fn duration(name: &'static str, help: &'static str, set: fn(&mut T, Duration)) -> Self {
        Flag {
            name,
            kind: Kind::Duration(set),
            help,
        }
    }

    /// Parses `value` by kind and hands it to the setter.
    fn apply(&self, target: &mut T, value: String) -> Result<(), FlagError> {
        let invalid = |reason: &'static str| FlagError::InvalidValue {
            name: self.name.to_string(),
            value: value.clone(),
            reason,
        };
        match &self.kind {
            Kind::Bool(set) => set(
                target,
                parse_bool(&value).ok_or_else(|| FlagError::InvalidBool {
                    name: self.name.to_string(),
                    value: value.clone(),
                })?,
            ),
            Kind::Text(set) | Kind::List(set) => set(target, value),
            Kind::Int(set) => set(target, value.parse().map_err(|e| invalid(int_reason(&e)))?),
            Kind::Uint(set) => set(target, value.parse().map_err(|e| invalid(int_reason(&e)))?),
            Kind::Uint64(set) => set(target, value.parse().map_err(|e| invalid(int_reason(&e)))?),
            Kind::Duration(set) => set(
                target,
                crate::duration::parse(&value).map_err(|_| invalid("parse error"))?,
            ),
        }
        Ok(())
    }

    /// The `<value>` shown in the usage: a backquoted word of the help, else the kind.
    fn placeholder(&self) -> Option<&str> {
        let kind = match self.kind {
            Kind::Bool(_) => return None,
            Kind::Text(_) | Kind::List(_) => "string",
            Kind::Int(_) => "int",
            Kind::Uint(_) | Kind::Uint64(_) => "uint",
            Kind::Duration(_) => "duration",
        };
        Some(backquoted(self.help).unwrap_or(kind))
    }
}

/// A parse failure, with the text Go's `flag` package prints for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlagError {
    #[error("flag provided but not defined: -{0}")]
    Undefined(String),
    #[error("flag needs an argument: -{0}")]
    MissingArgument(String),
    #[error("invalid boolean value {value:?} for -{name}: parse error")]
    InvalidBool { name: String, value: String },
    #[error("invalid value {value:?} for flag -{name}: {reason}")]
    InvalidValue {
        name: String,
        value: String,
        reason: &'static str,
    },
    #[error("bad flag syntax: {0}")]
    BadSyntax(String),
    /// `-h` or `-help`: not an error, the caller prints the usage.
    #[error("flag: help requested")]
    Help,
}

/// A subcommand's usage header and flag table.
pub struct FlagSet<T> {
    synopsis: &'static str,
    flags: Vec<Flag<T>>,
}

impl<T> FlagSet<T> {
    /// `synopsis` opens the usage text (`Usage: cairn members [options]` and
    /// a paragraph); the options are listed after it.
    pub fn new(synopsis: &'static str, flags: Vec<Flag<T>>) -> Self {
        FlagSet { synopsis, flags }
    }

    /// Parses the flags at the front of `args` into `target` and returns
    /// the arguments after them.
    pub fn parse(&self, target: &mut T, args: &[String]) -> Result<Vec<String>, FlagError> {
        let mut rest = args;
        while let Some((arg, tail)) = rest.split_first() {
            // A lone `-` is a positional argument (stdin, by convention).
            if arg.len() < 2 || !arg.starts_with('-') {
                break;
            }
            let body = match arg.strip_prefix("--") {
                Some("") => {
                    rest = tail;
                    break;
                }
                Some(body) => body,
                None => &arg[1..],
            };
            if body.starts_with('-') || body.starts_with('=') {
                return Err(FlagError::BadSyntax(arg.clone()));
            }
            rest = tail;
            let (name, inline) = match body.split_once('=') {
                Some((name, value)) => (name, Some(value)),
                None => (body, None),
            };
            let Some(flag) = self.flags.iter().find(|f| f.name == name) else {
                return Err(if name == "h" || name == "help" {
                    FlagError::Help
                } else {
                    FlagError::Undefined(name.to_string())
                });
            };
            let value = match (inline, &flag.kind) {
                (Some(v), _) => v.to_string(),
                (None, Kind::Bool(_)) => "true".to_string(),
                (None, _) => {
                    let (v, tail) = rest
                        .split_first()
                        .ok_or_else(|| FlagError::MissingArgument(name.to_string()))?;
                    rest = tail;
                    v.clone()
                }
            };
            flag.apply(target, value)?;
        }
        Ok(rest.to_vec())
    }

    /// The synopsis, then every flag in name order with its help.
    pub fn usage(&self) -> String {
        let mut out = self.synopsis.to_string();
        if self.flags.is_empty() {
            return out;
        }
        out.push_str("\nOptions:\n");
        let mut flags: Vec<&Flag<T>> = self.flags.iter().collect();
        flags.sort_by_key(|f| f.name);
        for f in flags {
            out.push_str(&format!("\n  -{}", f.name));
            if let Some(p) = f.placeholder() {
                out.push_str(&format!("=<{p}>"));
            }
            out.push('\n');
            let mut help = f.help.replace('`', "");
            if matches!(f.kind, Kind::List(_)) {
                help.push_str(" Can be specified multiple times.");
            }
            for line in wrap(&help, 72) {
                out.push_str(&format!("     {line}\n"));
            }
        }
        out
    }

    /// Parses `args` into a fresh `T`, returning it with the arguments after
    /// the flags; `Err` holds the exit code once [`FlagSet::fail`] has
    /// reported a parse failure or printed the usage for `-h`.
    pub fn parse_or_report(&self, args: &[String]) -> Result<(T, Vec<String>), i32>
    where
        T: Default,
    {
        let mut target = T::default();
        match self.parse(&mut target, args) {
            Ok(rest) => Ok((target, rest)),
            Err(e) => Err(self.fail(e)),
        }
    }

    /// Reports a parse failure as Go's `flag` package does (the error, then
    /// the usage, on stderr) and returns the exit code: 0 for `-h`, else 1.
    pub fn fail(&self, err: FlagError) -> i32 {
        if err == FlagError::Help {
            eprint!("{}", self.usage());
            return 0;
        }
        eprintln!("{err}");
        eprint!("{}", self.usage());
        1
    }
}

/// Go's `strconv.ParseBool`.
fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// Go's wording for a failed integer parse.
fn int_reason(e: &std::num::ParseIntError) -> &'static str {
    use std::num::IntErrorKind::{NegOverflow, PosOverflow};
    match e.kind() {
        PosOverflow | NegOverflow => "value out of range",
        _ => "parse error",
    }
}

/// The first `word` in backquotes, as Go's `flag.UnquoteUsage` finds it.
fn backquoted(help: &str) -> Option<&str> {
    let (_, after) = help.split_once('`')?;
    let (word, _) = after.split_once('`')?;
    Some(word)
}

/// Greedy word wrap to `width` columns.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default, Debug)]
    struct Opts {
        server: Option<bool>,
        node: Option<String>,
        join: Vec<String>,
        port: Option<i32>,
        expect: Option<u32>,
        timeout: Option<Duration>,
    }

    fn set() -> FlagSet<Opts> {
        FlagSet::new(
            "Usage: test [options]\n",
            vec![
                Flag::bool("server", "Server mode.", |o, v| o.server = Some(v)),
                Flag::text("node", "The `name` of this node.", |o, v| o.node = Some(v)),
                Flag::list("retry-join", "An address to join.", |o, v| o.join.push(v)),
                Flag::int("http-port", "HTTP port.", |o, v| o.port = Some(v)),
                Flag::uint("bootstrap-expect", "Servers.", |o, v| o.expect = Some(v)),
                Flag::duration("timeout", "Wait.", |o, v| o.timeout = Some(v)),
            ],
        )
    }

    fn parse(args: &[&str]) -> Result<(Opts, Vec<String>), FlagError> {
        let mut o = Opts::default();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let rest = set().parse(&mut o, &args)?;
        Ok((o, rest))
    }

    fn err(args: &[&str]) -> String {
        parse(args).unwrap_err().to_string()
    }

    #[test]
    fn the_four_value_forms() {
        for args in [
            &["-node=n1"][..],
            &["-node", "n1"],
            &["--node=n1"],
            &["--node", "n1"],
        ] {
            let (o, rest) = parse(args).unwrap();
            assert_eq!(o.node.as_deref(), Some("n1"), "{args:?}");
            assert!(rest.is_empty());
        }
    }

    #[test]
    fn a_value_may_start_with_a_dash_or_be_empty() {
        let (o, _) = parse(&["-node", "-x"]).unwrap();
        assert_eq!(o.node.as_deref(), Some("-x"));
        let (o, _) = parse(&["-node="]).unwrap();
        assert_eq!(o.node.as_deref(), Some(""));
        // Only the first `=` separates: base64 keys end in `=`.
        let (o, _) = parse(&["-node=a==", "-http-port=-1"]).unwrap();
        assert_eq!(o.node.as_deref(), Some("a=="));
        assert_eq!(o.port, Some(-1));
    }

    #[test]
    fn booleans() {
        assert_eq!(parse(&["-server"]).unwrap().0.server, Some(true));
        assert_eq!(parse(&["--server"]).unwrap().0.server, Some(true));
        assert_eq!(parse(&["-server=false"]).unwrap().0.server, Some(false));
        assert_eq!(parse(&["-server=0"]).unwrap().0.server, Some(false));
        assert_eq!(parse(&["-server=T"]).unwrap().0.server, Some(true));
        // Go does not take a separate argument for a boolean.
        let (o, rest) = parse(&["-server", "false", "-node=x"]).unwrap();
        assert_eq!(o.server, Some(true));
        assert_eq!(rest, ["false", "-node=x"]);
    }

    #[test]
    fn repeated_flags_collect_or_keep_the_last() {
        let (o, _) = parse(&[
            "-retry-join",
            "a",
            "-retry-join=b",
            "--retry-join",
            "c",
            "-node=x",
            "-node=y",
        ])
        .unwrap();
        assert_eq!(o.join, ["a", "b", "c"]);
        assert_eq!(o.node.as_deref(), Some("y"));
    }

    #[test]
    fn parsing_stops_at_the_first_positional_or_double_dash() {
        let (o, rest) = parse(&["-http-port=2", "prefix", "cmd", "-l", "-node=z"]).unwrap();
        assert_eq!(o.port, Some(2));
        assert_eq!(o.node, None);
        assert_eq!(rest, ["prefix", "cmd", "-l", "-node=z"]);
        let (_, rest) = parse(&["-server", "--", "-node=z"]).unwrap();
        assert_eq!(rest, ["-node=z"]);
        let (_, rest) = parse(&["-", "-server"]).unwrap();
        assert_eq!(rest, ["-", "-server"]);
    }

    #[test]
    fn typed_values() {
        let (o, _) = parse(&["-bootstrap-expect=3", "-timeout", "1m30s"]).unwrap();
        assert_eq!(o.expect, Some(3));
        assert_eq!(o.timeout, Some(Duration::from_secs(90)));
    }

    #[test]
    fn go_error_texts() {
        assert_eq!(err(&["-bogus"]), "flag provided but not defined: -bogus");
        assert_eq!(err(&["--bogus=1"]), "flag provided but not defined: -bogus");
        assert_eq!(err(&["-node"]), "flag needs an argument: -node");
        assert_eq!(
            err(&["-server=x"]),
            r#"invalid boolean value "x" for -server: parse error"#
        );
        assert_eq!(
            err(&["-server="]),
            r#"invalid boolean value "" for -server: parse error"#
        );
        assert_eq!(
            err(&["-http-port=abc"]),
            r#"invalid value "abc" for flag -http-port: parse error"#
        );
        assert_eq!(
            err(&["-http-port", "99999999999"]),
            r#"invalid value "99999999999" for flag -http-port: value out of range"#
        );
        assert_eq!(
            err(&["-bootstrap-expect=-1"]),
            r#"invalid value "-1" for flag -bootstrap-expect: parse error"#
        );
        assert_eq!(
            err(&["-timeout=soon"]),
            r#"invalid value "soon" for flag -timeout: parse error"#
        );
        assert_eq!(err(&["---node=x"]), "bad flag syntax: ---node=x");
        assert_eq!(err(&["-=x"]), "bad flag syntax: -=x");
    }

    #[test]
    fn help_is_requested_by_h_and_help() {
        assert_eq!(parse(&["-h"]).unwrap_err(), FlagError::Help);
        assert_eq!(parse(&["-node=x", "--help"]).unwrap_err(), FlagError::Help);
        assert_eq!(set().fail(FlagError::Help), 0);
        assert_eq!(set().fail(FlagError::Undefined("x".into())), 1);
    }

    #[test]
    fn usage_lists_every_flag_in_name_order() {
        let u = set().usage();
        assert!(u.starts_with("Usage: test [options]\n\nOptions:\n"), "{u}");
        let order: Vec<usize> = [
            "-bootstrap-expect=<uint>",
            "-http-port=<int>",
            "-node=<name>",
            "-retry-join=<string>",
            "-server\n",
            "-timeout=<duration>",
        ]
        .iter()
        .map(|f| u.find(f).unwrap_or_else(|| panic!("{f} missing:\n{u}")))
        .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{u}");
        assert!(u.contains("     The name of this node.\n"), "{u}");
        assert!(u.contains("An address to join. Can be specified multiple times."));
    }

    #[test]
    fn long_help_wraps() {
        let lines = wrap(&"word ".repeat(40), 72);
        assert!(lines.len() > 1 && lines.iter().all(|l| l.len() <= 72));
    }
}
