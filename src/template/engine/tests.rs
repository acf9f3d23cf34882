//! The engine against the examples in Go's `text/template` documentation
//! and the language corners consul-template templates lean on.

use super::*;
use std::collections::BTreeMap;

/// A few test functions: `list` makes a list of its arguments, `fail`
/// always errors, `upper` upper-cases a string, `dict` builds a map.
struct TestFuncs;

impl Functions for TestFuncs {
    fn call(&mut self, name: &str, args: Vec<Value>) -> Result<Value, String> {
        match name {
            "list" => Ok(Value::list(args)),
            "fail" => Err("it failed".into()),
            "upper" => Ok(Value::from(
                args.first()
                    .and_then(|a| a.as_text())
                    .unwrap_or_default()
                    .to_uppercase(),
            )),
            "dict" => {
                let mut m = BTreeMap::new();
                for pair in args.chunks(2) {
                    if let [Value::Str(k), v] = pair {
                        m.insert(String::from_utf8_lossy(k).into_owned(), v.clone());
                    }
                }
                Ok(Value::any_map(m))
            }
            _ => Err(format!("no function {name}")),
        }
    }
}

fn known(name: &str) -> bool {
    matches!(name, "list" | "fail" | "upper" | "dict")
}

fn render_with(src: &str, data: Value, opts: Options) -> Result<String, Error> {
    let t = Template::parse("t", src.as_bytes(), &Delims::default(), &known)?;
    let out = t.execute(data, &mut TestFuncs, opts)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

fn render(src: &str, data: Value) -> String {
    render_with(src, data, Options::default()).unwrap_or_else(|e| panic!("{src}: {e}"))
}

fn err(src: &str, data: Value) -> String {
    match render_with(src, data, Options::default()) {
        Ok(out) => panic!("{src}: expected an error, got {out:?}"),
        Err(e) => e.to_string(),
    }
}

fn s(v: &str) -> Value {
    Value::string(v)
}

fn service(node: &str, addr: &str, port: i64, tags: &[&str]) -> Value {
    Value::record(
        "*dep.HealthService",
        vec![
            ("Node", s(node)),
            ("Address", s(addr)),
            ("Port", Value::Int(port)),
            ("Tags", Value::list(tags.iter().map(|t| s(t)).collect())),
        ],
    )
}

#[test]
fn text_and_trim_markers() {
    // Go's documentation: "{{23 -}} < {{- 45}}" is "23<45".
    assert_eq!(render("{{23 -}} < {{- 45}}", Value::Nil), "23<45");
    assert_eq!(render("a\n  {{- \"b\" }}\n  c", Value::Nil), "ab\n  c");
    assert_eq!(render("{{- /* comment */ -}}\n x", Value::Nil), "x");
    assert_eq!(render("plain text", Value::Nil), "plain text");
}

#[test]
fn pipelines_pass_the_value_as_the_last_argument() {
    assert_eq!(
        render(r#"{{"output" | printf "%q"}}"#, Value::Nil),
        r#""output""#
    );
    assert_eq!(
        render(r#"{{printf "%q" "output"}}"#, Value::Nil),
        r#""output""#
    );
    assert_eq!(
        render(r#"{{printf "%q" (print "out" "put")}}"#, Value::Nil),
        r#""output""#
    );
    assert_eq!(
        render(
            r#"{{"put" | printf "%s%s" "out" | printf "%q"}}"#,
            Value::Nil
        ),
        r#""output""#
    );
    assert_eq!(
        render(r#"{{"abc" | upper | printf "<%s>"}}"#, Value::Nil),
        "<ABC>"
    );
}

#[test]
fn variables_declare_assign_and_scope() {
    assert_eq!(
        render(
            r#"{{with $x := "output" | printf "%q"}}{{$x}}{{end}}"#,
            Value::Nil
        ),
        r#""output""#
    );
    assert_eq!(
        render(
            r#"{{with $x := "output"}}{{printf "%q" $x}}{{end}}"#,
            Value::Nil
        ),
        r#""output""#
    );
    assert_eq!(
        render(
            r#"{{with $x := "output"}}{{$x | printf "%q"}}{{end}}"#,
            Value::Nil
        ),
        r#""output""#
    );
    assert_eq!(
        render(
            r#"{{$x := 1}}{{if true}}{{$x = 2}}{{end}}{{$x}}"#,
            Value::Nil
        ),
        "2"
    );
    // A variable's scope ends at the {{end}} of the structure declaring it.
    let e = err(r#"{{if true}}{{$y := 1}}{{end}}{{$y}}"#, Value::Nil);
    assert_eq!(e, r#"template: t:1:32: undefined variable "$y""#);
    // `$` is the data even inside range.
    let data = Value::any_map(BTreeMap::from([
        ("name".into(), s("root")),
        ("xs".into(), Value::list(vec![Value::Int(1)])),
    ]));
    assert_eq!(render("{{range .xs}}{{$.name}}{{.}}{{end}}", data), "root1");
}

#[test]
fn range_forms() {
    let xs = Value::list(vec![s("a"), s("b"), s("c")]);
    assert_eq!(render("{{range .}}[{{.}}]{{end}}", xs.clone()), "[a][b][c]");
    assert_eq!(
        render("{{range $i, $e := .}}{{$i}}={{$e}} {{end}}", xs.clone()),
        "0=a 1=b 2=c "
    );
    assert_eq!(render("{{range $e := .}}{{$e}}{{end}}", xs.clone()), "abc");
    assert_eq!(
        render("{{range .}}x{{else}}empty{{end}}", Value::list(vec![])),
        "empty"
    );
    assert_eq!(
        render("{{range .}}x{{else}}empty{{end}}", Value::Nil),
        "empty"
    );
    // Maps range in sorted key order.
    let m = Value::any_map(BTreeMap::from([
        ("b".into(), Value::Int(2)),
        ("a".into(), Value::Int(1)),
    ]));
    assert_eq!(
        render("{{range $k, $v := .}}{{$k}}:{{$v}};{{end}}", m),
        "a:1;b:2;"
    );
    assert_eq!(
        render("{{range .}}{{if eq . \"b\"}}{{continue}}{{end}}{{if eq . \"c\"}}{{break}}{{end}}{{.}}{{end}}", xs),
        "a"
    );
    assert_eq!(render("{{range 3}}{{.}}{{end}}", Value::Nil), "012");
    assert_eq!(
        err("{{range .}}{{end}}", s("str")),
        r#"template: t:1:9: executing "t" at <.>: range can't iterate over str"#
    );
}

#[test]
fn if_else_if_and_with_else() {
    let t = "{{if eq . 1}}one{{else if eq . 2}}two{{else}}many{{end}}";
    assert_eq!(render(t, Value::Int(1)), "one");
    assert_eq!(render(t, Value::Int(2)), "two");
    assert_eq!(render(t, Value::Int(7)), "many");
    assert_eq!(render("{{with .}}{{.}}{{else}}none{{end}}", s("")), "none");
    assert_eq!(render("{{with .}}{{.}}{{else}}none{{end}}", s("x")), "x");
    assert_eq!(render("{{with $v := .}}{{$v}}{{end}}", s("y")), "y");
    assert_eq!(
        render(
            "{{with .A}}a{{else with .B}}{{.}}{{end}}",
            Value::any_map(BTreeMap::from([("B".into(), s("b"))]))
        ),
        "b"
    );
}

#[test]
fn truthiness_follows_go() {
    for (v, want) in [
        (Value::Nil, "F"),
        (Value::Bool(false), "F"),
        (Value::Int(0), "F"),
        (Value::Float(0.0), "F"),
        (s(""), "F"),
        (Value::list(vec![]), "F"),
        (Value::any_map(BTreeMap::new()), "F"),
        (Value::Int(3), "T"),
        (s("x"), "T"),
        (Value::record("T", vec![]), "T"),
    ] {
        assert_eq!(
            render("{{if .}}T{{else}}F{{end}}", v.clone()),
            want,
            "{v:?}"
        );
    }
}

#[test]
fn comparisons_and_logic() {
    assert_eq!(render("{{eq 1 2 3 1}}", Value::Nil), "true");
    assert_eq!(
        render(r#"{{eq "a" "b"}} {{ne "a" "b"}}"#, Value::Nil),
        "false true"
    );
    assert_eq!(
        render("{{lt 1 2}} {{le 2 2}} {{gt 1 2}} {{ge 3 2}}", Value::Nil),
        "true true false true"
    );
    assert_eq!(render(r#"{{lt "a" "b"}}"#, Value::Nil), "true");
    assert_eq!(
        render(
            "{{and 1 0 2}} {{and 1 2}} {{or 0 \"\" 3}} {{or 0 \"\"}} {{not 0}}",
            Value::Nil
        ),
        "0 2 3  true"
    );
    // `and` stops at the first false argument: the failing call never runs.
    assert_eq!(render("{{and false (fail)}}", Value::Nil), "false");
    assert_eq!(render("{{or true (fail)}}", Value::Nil), "true");
    assert_eq!(
        render("{{eq .X nil}}", Value::any_map(BTreeMap::new())),
        "true"
    );
    let e = err("{{eq 1 1.5}}", Value::Nil);
    assert!(
        e.ends_with("error calling eq: incompatible types for comparison"),
        "{e}"
    );
    let e = err("{{lt true false}}", Value::Nil);
    assert!(e.ends_with("invalid type for comparison"), "{e}");
}

#[test]
fn builtins_len_index_slice_print() {
    let xs = Value::list(vec![s("a"), s("b"), s("c")]);
    assert_eq!(
        render("{{len .}} {{index . 1}} {{slice . 1 3}}", xs.clone()),
        "3 b [b c]"
    );
    assert_eq!(render(r#"{{len "héllo"}}"#, Value::Nil), "6");
    let m = Value::string_map(BTreeMap::from([("k".into(), s("v"))]));
    assert_eq!(
        render(r#"{{index . "k"}}|{{index . "missing"}}|"#, m),
        "v||"
    );
    assert_eq!(render(r#"{{print 1 2 "a" "b" 3}}"#, Value::Nil), "1 2ab3");
    assert_eq!(render(r#"{{println "a" 1}}"#, Value::Nil), "a 1\n");
    assert_eq!(render(r#"{{printf "%s:%d" "h" 80}}"#, Value::Nil), "h:80");
    assert_eq!(
        render(
            r#"{{html "<a href='x'>"}} {{urlquery "a b&c"}} {{js "it's"}}"#,
            Value::Nil
        ),
        "&lt;a href=&#39;x&#39;&gt; a+b%26c it\\'s"
    );
    let e = err("{{index . 5}}", xs);
    assert_eq!(
        e,
        r#"template: t:1:3: executing "t" at <index . 5>: error calling index: index out of range: 5"#
    );
}

#[test]
fn fields_on_structs_maps_and_nil() {
    let svc = service("n1", "10.0.0.1", 80, &["a"]);
    assert_eq!(
        render("{{.Address}}:{{.Port}} {{.Tags}}", svc.clone()),
        "10.0.0.1:80 [a]"
    );
    let e = err("{{.Bogus}}", svc);
    assert_eq!(
        e,
        r#"template: t:1:3: executing "t" at <.Bogus>: can't evaluate field Bogus in type *dep.HealthService"#
    );
    // consul-template runs with missingkey=zero: a string map gives "", an
    // interface map gives nil, which prints <no value>.
    let meta = Value::string_map(BTreeMap::from([("k".into(), s("v"))]));
    assert_eq!(render("[{{.k}}][{{.x}}]", meta), "[v][]");
    assert_eq!(
        render("[{{.x}}]", Value::any_map(BTreeMap::new())),
        "[<no value>]"
    );
    // The root data is nil: fields of it are nil.
    assert_eq!(
        render("{{.Foo}} {{.Foo.Bar}}", Value::Nil),
        "<no value> <no value>"
    );
    let strict = Options {
        missing_key_error: true,
    };
    let e = render_with("{{.x}}", Value::any_map(BTreeMap::new()), strict)
        .unwrap_err()
        .to_string();
    assert!(e.ends_with(r#"map has no entry for key "x""#), "{e}");
    // A field chain on a parenthesized pipeline and on a variable.
    let list = Value::list(vec![service("n1", "10.0.0.1", 80, &[])]);
    assert_eq!(
        render(
            "{{(index . 0).Address}} {{$s := index . 0}}{{$s.Port}}",
            list
        ),
        "10.0.0.1 80"
    );
    assert_eq!(
        err("{{.Port 1}}", service("n", "a", 1, &[])),
        r#"template: t:1:3: executing "t" at <.Port 1>: Port has arguments but cannot be invoked as function"#
    );
}

#[test]
fn define_template_and_block() {
    let t = r#"{{define "T1"}}ONE{{end}}{{define "T2"}}TWO {{template "T1"}}{{end}}{{define "T3"}}{{template "T1"}} {{template "T2"}}{{end}}{{template "T3"}}"#;
    assert_eq!(render(t, Value::Nil), "ONE TWO ONE");
    assert_eq!(render(r#"{{block "b" .}}[{{.}}]{{end}}"#, s("x")), "[x]");
    assert_eq!(
        render(
            r#"{{define "p"}}<{{.}}>{{end}}{{range .}}{{template "p" .}}{{end}}"#,
            Value::list(vec![s("a"), s("b")])
        ),
        "<a><b>"
    );
    let e = err(r#"{{template "nope"}}"#, Value::Nil);
    assert!(e.contains(r#"no such template "nope""#), "{e}");
}

#[test]
fn literals() {
    assert_eq!(
        render(
            r#"{{"a\tb"}}|{{`raw\n`}}|{{'a'}}|{{0x10}}|{{1.5}}|{{1e3}}|{{-7}}|{{true}}|{{1_000}}"#,
            Value::Nil
        ),
        "a\tb|raw\\n|97|16|1.5|1000|-7|true|1000"
    );
}

#[test]
fn syntax_errors_name_line_and_column() {
    let cases = [
        (
            "line1\n  {{servce \"web\"}}",
            r#"template: t:2:5: function "servce" not defined"#,
        ),
        ("{{if .}}x", "template: t:1:3: unexpected EOF in if"),
        ("{{end}}", "template: t:1:3: unexpected {{end}}"),
        (
            "{{range .}}{{else}}{{else}}{{end}}",
            "template: t:1:22: expected end; found {{else}} in range",
        ),
        ("a\nb {{ .X", "template: t:2:3: unclosed action"),
        ("{{$x}}", r#"template: t:1:3: undefined variable "$x""#),
        ("{{break}}", "template: t:1:3: {{break}} outside {{range}}"),
        (
            "{{.X | 3}}",
            "template: t:1:8: non executable command in pipeline stage 2",
        ),
        ("{{}}", "template: t:1:3: missing value for command"),
        (
            "{{\"a\"\"b\"}}",
            r#"template: t:1:6: unexpected "b" in operand"#,
        ),
        ("{{ (1 }}", "template: t:1:7: unclosed left paren"),
        (
            "{{ 3abc }}",
            r#"template: t:1:4: bad number syntax: "3abc""#,
        ),
        (
            "{{ $x = 1 }}",
            r#"template: t:1:4: undefined variable "$x""#,
        ),
    ];
    for (src, want) in cases {
        let got = Template::parse("t", src.as_bytes(), &Delims::default(), &known)
            .err()
            .map(|e| e.to_string());
        assert_eq!(got.as_deref(), Some(want), "{src}");
    }
}

#[test]
fn exec_errors_name_the_command() {
    let e = err("x\n  {{fail}}", Value::Nil);
    assert_eq!(
        e,
        r#"template: t:2:5: executing "t" at <fail>: error calling fail: it failed"#
    );
    assert_eq!(
        err("{{nil}}", Value::Nil),
        r#"template: t:1:3: executing "t" at <nil>: nil is not a command"#
    );
    assert_eq!(
        err(r#"{{"a" 1}}"#, Value::Nil),
        r#"template: t:1:3: executing "t" at <"a" 1>: can't give argument to non-function "a""#
    );
}

#[test]
fn custom_delimiters() {
    let d = Delims {
        left: "[[".into(),
        right: "]]".into(),
    };
    let t = Template::parse("t", b"{{ literal }} [[ .X ]] [[- \" y\" ]]", &d, &known).unwrap();
    let out = t
        .execute(
            Value::any_map(BTreeMap::from([("X".into(), s("x"))])),
            &mut TestFuncs,
            Options::default(),
        )
        .unwrap();
    assert_eq!(out, b"{{ literal }} x y");
}

#[test]
fn bytes_that_are_not_utf8_render_exactly() {
    let raw = Value::Str(bytes::Bytes::from_static(b"\xff\x00\xfe"));
    let t = Template::parse("t", b"[{{.}}]", &Delims::default(), &known).unwrap();
    let out = t.execute(raw, &mut TestFuncs, Options::default()).unwrap();
    assert_eq!(out, b"[\xff\x00\xfe]");
    // Template text itself may hold such bytes too.
    let t = Template::parse("t", b"\xfe{{\"\\xff\"}}", &Delims::default(), &known).unwrap();
    assert_eq!(
        t.execute(Value::Nil, &mut TestFuncs, Options::default())
            .unwrap(),
        b"\xfe\xff"
    );
}

#[test]
fn nested_functions_and_parens() {
    assert_eq!(
        render(
            r#"{{len (list 1 2 3)}} {{index (list "a" "b") 1}}"#,
            Value::Nil
        ),
        "3 b"
    );
    assert_eq!(render(r#"{{(dict "a" 1).a}}"#, Value::Nil), "1");
    assert_eq!(
        render(
            r#"{{range $k, $v := dict "x" 1 "y" 2}}{{$k}}{{$v}}{{end}}"#,
            Value::Nil
        ),
        "x1y2"
    );
}

#[test]
fn assignment_reaches_outer_variables() {
    let xs = Value::list(vec![s("a"), s("b")]);
    assert_eq!(
        render(
            "{{ $x := \"none\" }}{{ range . }}{{ $x = . }}{{ end }}{{ $x }}",
            xs.clone()
        ),
        "b"
    );
    // A variable declared inside the body lives for one iteration.
    assert_eq!(
        render("{{ range . }}{{ $y := . }}{{ $y }}{{ end }}", xs),
        "ab"
    );
    assert_eq!(
        render(
            "{{ if and .A .B }}both{{ else }}not{{ end }}",
            Value::any_map(BTreeMap::from([
                ("A".into(), Value::Int(1)),
                ("B".into(), Value::Int(0))
            ]))
        ),
        "not"
    );
    assert_eq!(
        render("{{ printf \"%v\" . }}", service("n", "a", 1, &["t"])),
        "{n a 1 [t]}"
    );
}

#[test]
fn unbounded_work_and_output_end_in_an_error() {
    // Each of these ran for hours or exhausted memory before renders were
    // bounded.
    let e = err("{{range 9999999999999}}{{end}}", Value::Nil);
    assert!(e.contains("exceeded 10000000 steps"), "{e}");
    let e = err(
        "{{range 1000}}{{range 1000}}{{range 1000}}x{{end}}{{end}}{{end}}",
        Value::Nil,
    );
    assert!(e.contains("exceeded 10000000 steps"), "{e}");
    let big = "y".repeat(1 << 20);
    let e = err(&format!("{{{{range 100}}}}{big}{{{{end}}}}"), Value::Nil);
    assert!(e.contains("output exceeded"), "{e}");
    // Bounded ranges still run in full.
    assert_eq!(render("{{range 3}}{{.}}{{end}}", Value::Nil), "012");
}

#[test]
fn nesting_past_the_limit_is_a_syntax_error_not_a_stack_overflow() {
    use super::parse::MAX_NESTING;
    let parens = |n: usize| format!("{{{{{}1{}}}}}", "(".repeat(n), ")".repeat(n));
    assert_eq!(render(&parens(MAX_NESTING), Value::Nil), "1");
    let e = err(&parens(MAX_NESTING + 1), Value::Nil);
    assert!(e.contains("max expression depth exceeded"), "{e}");
    // Deep enough to overflow the stack before the limit existed.
    let e = err(&parens(100_000), Value::Nil);
    assert!(e.contains("max expression depth exceeded"), "{e}");
    let ifs = |n: usize| format!("{}x{}", "{{if 1}}".repeat(n), "{{end}}".repeat(n));
    assert_eq!(render(&ifs(MAX_NESTING), Value::Nil), "x");
    let e = err(&ifs(100_000), Value::Nil);
    assert!(e.contains("max expression depth exceeded"), "{e}");
    // A template that calls itself ends at the executor's depth limit.
    let e = err(
        r#"{{define "a"}}{{if 1}}({{template "a" .}}){{end}}{{end}}{{template "a" .}}"#,
        Value::Nil,
    );
    assert!(e.contains("exceeded maximum template depth"), "{e}");
}

#[test]
fn printf_refuses_widths_go_refuses() {
    // As Go prints them: the format ends there, the argument is left over.
    assert_eq!(
        render(r#"{{printf "%99999999999d" 1}}"#, Value::Nil),
        "%!(NOVERB)%!(EXTRA int=1)"
    );
    assert_eq!(
        render(r#"{{printf "%.2000000f" 1.5}}"#, Value::Nil),
        "%!(NOVERB)%!(EXTRA float64=1.5)"
    );
    assert_eq!(render(r#"{{printf "%5d|" 42}}"#, Value::Nil), "   42|");
}
