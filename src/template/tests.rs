//! Templates as people write them for consul-template (the nginx upstream
//! idioms, tag grouping, KV-driven settings), rendered through the whole
//! function map from fixed Consul answers.

use super::deps::Dependency;
use super::engine::{Delims, Options, Template, Value};
use super::funcs::{is_function, Brain, Render};
use chrono::TimeZone;

const WEB: &str = r#"[
  {"Node":{"ID":"n2","Node":"node2","Address":"10.0.0.2","Datacenter":"dc1","Meta":{"zone":"b"}},
   "Service":{"ID":"web-2","Service":"web","Tags":["v2","http"],"Address":"10.0.0.2","Port":8081,"Meta":{"weight":"5"}},
   "Checks":[{"CheckID":"serfHealth","Status":"passing"}]},
  {"Node":{"ID":"n1","Node":"node1","Address":"10.0.0.1","Datacenter":"dc1","Meta":{"zone":"a"}},
   "Service":{"ID":"web-1","Service":"web","Tags":["v1","http"],"Address":"","Port":8080},
   "Checks":[{"CheckID":"serfHealth","Status":"passing"}]}
]"#;

/// What the server answers for tag v1: only web-1 has it.
const WEB_V1: &str = r#"[
  {"Node":{"ID":"n1","Node":"node1","Address":"10.0.0.1","Datacenter":"dc1","Meta":{"zone":"a"}},
   "Service":{"ID":"web-1","Service":"web","Tags":["v1","http"],"Address":"","Port":8080},
   "Checks":[{"CheckID":"serfHealth","Status":"passing"}]}
]"#;

const API: &str = r#"[
  {"Node":{"ID":"n1","Node":"node1","Address":"10.0.0.1","Datacenter":"dc1"},
   "Service":{"ID":"api-1","Service":"api","Tags":["http"],"Address":"10.0.1.1","Port":9000},
   "Checks":[]}
]"#;

const SERVICES: &str = r#"{"consul":[],"web":["v2","http","v1"],"api":["http"],"db":["tcp"]}"#;

fn kv(key: &str, value: &[u8]) -> String {
    use base64::Engine as _;
    format!(
        r#"{{"Key":"{key}","Value":"{}","Flags":0,"CreateIndex":5,"ModifyIndex":7,"LockIndex":0,"Session":""}}"#,
        base64::engine::general_purpose::STANDARD.encode(value)
    )
}

fn learn(brain: &mut Brain, d: Dependency, status: u16, body: &str) {
    let v = d.decode(status, body.as_bytes()).unwrap();
    brain.remember(d, v);
}

/// The catalog and KV every test renders from.
fn brain() -> Brain {
    let mut b = Brain::default();
    learn(&mut b, Dependency::health_service("web").unwrap(), 200, WEB);
    learn(&mut b, Dependency::health_service("api").unwrap(), 200, API);
    learn(&mut b, Dependency::health_service("db").unwrap(), 200, "[]");
    learn(
        &mut b,
        Dependency::health_service("consul").unwrap(),
        200,
        "[]",
    );
    learn(
        &mut b,
        Dependency::health_service("v1.web").unwrap(),
        200,
        WEB_V1,
    );
    learn(
        &mut b,
        Dependency::catalog_services("").unwrap(),
        200,
        SERVICES,
    );
    let headers = format!(
        "[{},{},{}]",
        kv("nginx/headers/X-Env", b"prod"),
        kv("nginx/headers/X-Frame-Options", b"DENY"),
        kv("nginx/headers/nested/deep", b"skip")
    );
    learn(
        &mut b,
        Dependency::kv_list("nginx/headers").unwrap(),
        200,
        &headers,
    );
    learn(
        &mut b,
        Dependency::kv_get("nginx/maintenance").unwrap(),
        404,
        "",
    );
    learn(
        &mut b,
        Dependency::kv_get("nginx/config").unwrap(),
        200,
        &format!(
            "[{}]",
            kv("nginx/config", br#"{"max_body":"10m","workers":4}"#)
        ),
    );
    learn(
        &mut b,
        Dependency::kv_get("blob").unwrap(),
        200,
        &format!("[{}]", kv("blob", b"\xff\xfe\x00raw")),
    );
    b
}

fn render_from(brain: &Brain, src: &str) -> Result<(String, usize), String> {
    let t = Template::parse("t.ctmpl", src.as_bytes(), &Delims::default(), &is_function)
        .map_err(|e| e.to_string())?;
    let now = chrono::Utc.with_ymd_and_hms(2024, 5, 6, 7, 8, 9).unwrap();
    let mut r = Render::at(brain, now);
    let out = t
        .execute(Value::Nil, &mut r, Options::default())
        .map_err(|e| e.to_string())?;
    Ok((String::from_utf8_lossy(&out).into_owned(), r.missing.len()))
}

fn render(src: &str) -> String {
    let (out, missing) = render_from(&brain(), src).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(missing, 0, "data missing for {src}");
    out
}

#[test]
fn seed_example() {
    // The issue's upstream block, with the fallback for no instances.
    let t = "upstream web { {{range service \"web\"}}\n  server {{.Address}}:{{.Port}};{{else}}\n  server 127.0.0.1:65535; # none{{end}}\n}\n";
    assert_eq!(
        render(t),
        "upstream web { \n  server 10.0.0.1:8080;\n  server 10.0.0.2:8081;\n}\n"
    );
    let none = t.replace("\"web\"", "\"db\"");
    assert_eq!(
        render(&none),
        "upstream web { \n  server 127.0.0.1:65535; # none\n}\n"
    );
    // The reference's one-line form: instances sorted by node, then ID.
    assert_eq!(
        render("upstream app { {{range service \"web\"}} server {{.Address}}:{{.Port}}; {{end}} }"),
        "upstream app {  server 10.0.0.1:8080;  server 10.0.0.2:8081;  }"
    );
}

#[test]
fn an_upstream_per_http_service() {
    let t = r#"{{- range services -}}
{{- if .Tags | contains "http" }}
upstream {{ .Name }} {
  least_conn;
{{- range service .Name }}
  server {{ .Address }}:{{ .Port }} max_fails=3 fail_timeout=60 weight={{ or .ServiceMeta.weight "1" }};
{{- else }}
  server 127.0.0.1:65535; # force a 502
{{- end }}
}
{{- end }}
{{- end }}
"#;
    let want = "
upstream api {
  least_conn;
  server 10.0.1.1:9000 max_fails=3 fail_timeout=60 weight=1;
}
upstream web {
  least_conn;
  server 10.0.0.1:8080 max_fails=3 fail_timeout=60 weight=1;
  server 10.0.0.2:8081 max_fails=3 fail_timeout=60 weight=5;
}
";
    assert_eq!(render(t), want);
}

#[test]
fn tags_and_grouping() {
    let t = r#"{{range $tag, $svcs := service "web" | byTag}}{{$tag}}:{{range $svcs}} {{.ID}}{{end}};{{end}}"#;
    assert_eq!(render(t), "http: web-1 web-2;v1: web-1;v2: web-2;");
    assert_eq!(
        render(r#"{{range service "v1.web"}}{{.ID}} {{.Tags}} {{join "," .Tags}}{{end}}"#),
        "web-1 [http v1] http,v1"
    );
    assert_eq!(
        render(r#"{{range services}}{{.Name}}={{len .Tags}} {{end}}"#),
        "api=1 consul=0 db=1 web=3 "
    );
    assert_eq!(
        render(
            r#"{{with index (service "web") 0}}{{.Node}} {{.NodeMeta.zone}} {{.Status}}{{end}}"#
        ),
        "node1 a passing"
    );
    assert_eq!(
        render(r#"{{ $s := service "web" }}{{ if gt (len $s) 1 }}many{{ end }}"#),
        "many"
    );
    assert_eq!(
        render(r#"{{range service "web"}}{{if in .Tags "v2"}}{{.ID}}{{end}}{{end}}"#),
        "web-2"
    );
}

#[test]
fn kv_driven_settings() {
    let t = r#"{{- $maint := keyOrDefault "nginx/maintenance" "false" -}}
{{ if eq $maint "true" }}return 503;{{ else }}serving{{ end }}
{{ range ls "nginx/headers" }}add_header {{ .Key }} "{{ .Value }}";
{{ end -}}
{{ range tree "nginx/headers" }}{{ .Key }} {{ end }}
{{ with $cfg := key "nginx/config" | parseJSON -}}
client_max_body_size {{ $cfg.max_body }}; workers {{ $cfg.workers }};
{{- end }}
{{ keyExists "nginx/maintenance" }} {{ keyExists "nginx/config" }}"#;
    let want = "serving
add_header X-Env \"prod\";
add_header X-Frame-Options \"DENY\";
X-Env X-Frame-Options nested/deep 
client_max_body_size 10m; workers 4;
false true";
    assert_eq!(render(t), want);
}

#[test]
fn byte_values_render_exactly() {
    let t = Template::parse(
        "t",
        b"[{{ key \"blob\" }}]",
        &Delims::default(),
        &is_function,
    )
    .unwrap();
    let b = brain();
    let mut r = Render::new(&b);
    let out = t.execute(Value::Nil, &mut r, Options::default()).unwrap();
    assert_eq!(out, b"[\xff\xfe\x00raw]");
}

#[test]
fn helpers_in_templates() {
    assert_eq!(
        render(r#"{{ "a-b-c" | replaceAll "-" "_" | toUpper }}"#),
        "A_B_C"
    );
    assert_eq!(
        render(r#"{{ range split "," "x,y" }}<{{ . }}>{{ end }}"#),
        "<x><y>"
    );
    assert_eq!(render(r#"{{ "  pad  " | trimSpace | toLower }}"#), "pad");
    assert_eq!(render(r#"{{ regexMatch "^web-[0-9]$" "web-1" }}"#), "true");
    assert_eq!(
        render(r#"{{ timestamp }} {{ timestamp "2006-01-02" }} {{ timestamp "unix" }}"#),
        "2024-05-06T07:08:09Z 2024-05-06 1714979289"
    );
    assert_eq!(
        render(r#"{{ service "web" | toJSON | len | printf "%d" | ne "0" }}"#),
        "true"
    );
    assert_eq!(
        render(r#"{{ (index (service "api") 0).Weights.Passing }}"#),
        "1"
    );
    std::env::set_var("CAIRN_TEMPLATE_TEST_ENV", "from-env");
    assert_eq!(
        render(
            r#"{{ env "CAIRN_TEMPLATE_TEST_ENV" }}|{{ env "CAIRN_TEMPLATE_UNSET" }}|{{ envOrDefault "CAIRN_TEMPLATE_UNSET" "d" }}"#
        ),
        "from-env||d"
    );
}

#[test]
fn missing_data_is_reported_not_rendered() {
    let empty = Brain::default();
    let (out, missing) = render_from(
        &empty,
        r#"{{range service "web"}}x{{else}}none{{end}} {{key "a"}} {{keyOrDefault "b" "dflt"}}"#,
    )
    .unwrap();
    // The first pass sees zero values and names what it needs.
    assert_eq!(out, "none  dflt");
    assert_eq!(missing, 3);
    // A key that does not exist keeps `key` waiting, not `keyOrDefault`.
    let b = brain();
    let (_, missing) = render_from(&b, r#"{{ key "nginx/maintenance" }}"#).unwrap();
    assert_eq!(missing, 1);
    let (_, missing) = render_from(&b, r#"{{ keyOrDefault "nginx/maintenance" "x" }}"#).unwrap();
    assert_eq!(missing, 0);
}

#[test]
fn bad_arguments_are_errors() {
    let e = render_from(&brain(), r#"{{ service "web|bogus" }}"#).unwrap_err();
    assert_eq!(
        e,
        r#"template: t.ctmpl:1:4: executing "t.ctmpl" at <service "web|bogus">: error calling service: health.service: invalid filter: "bogus" in "web|bogus""#
    );
    let e = render_from(&brain(), "{{ servce \"web\" }}").unwrap_err();
    assert_eq!(e, r#"template: t.ctmpl:1:4: function "servce" not defined"#);
    let e = render_from(
        &brain(),
        r#"{{ key "nginx/config" | parseJSON | toJSON | parseJSON | len }}{{ "{" | parseJSON }}"#,
    )
    .unwrap_err();
    assert!(e.contains("error calling parseJSON"), "{e}");
}

#[test]
fn two_calls_of_one_query_share_a_dependency() {
    let t = Template::parse("t", br#"{{service "web"}}{{service "web|passing"}}{{service "web" "passing"}}{{service "web|any"}}"#, &Delims::default(), &is_function).unwrap();
    let empty = Brain::default();
    let mut r = Render::new(&empty);
    t.execute(Value::Nil, &mut r, Options::default()).unwrap();
    assert_eq!(r.used.len(), 2);
}

#[test]
fn consul_template_documented_examples() {
    let mut b = brain();
    let groups = format!(
        "[{},{},{}]",
        kv("groups/elasticsearch/es1", b"1.2.3.4"),
        kv("groups/elasticsearch/es2", b"1.2.3.5"),
        kv("groups/web/web1", b"1.2.3.6")
    );
    learn(&mut b, Dependency::kv_list("groups").unwrap(), 200, &groups);
    let by_key = r#"{{ range $key, $pairs := tree "groups" | byKey }}{{ $key }}:
{{ range $pair := $pairs }}  {{ .Key }}={{ .Value }}
{{ end }}{{ end }}"#;
    let (out, missing) = render_from(&b, by_key).unwrap();
    assert_eq!(missing, 0);
    assert_eq!(
        out,
        "elasticsearch:\n  es1=1.2.3.4\n  es2=1.2.3.5\nweb:\n  web1=1.2.3.6\n"
    );
    // `services` then `service .Name`, the docs' nested form.
    let (out, _) = render_from(
        &b,
        r#"{{ range services }}{{ .Name }}:{{ range .Tags }} {{ . }}{{ end }};{{ end }}"#,
    )
    .unwrap();
    assert_eq!(out, "api: http;consul:;db: tcp;web: http v1 v2;");
    let (out, _) = render_from(&b, r#"{{ range service "web" }}{{ if .Tags | contains "v2" }}{{ .ID }}{{ end }}{{ if containsAny (split "," "v1,v9") .Tags }}+{{ end }}{{ end }}"#).unwrap();
    assert_eq!(out, "+web-2");
    let (out, _) = render_from(
        &b,
        r#"{{ with $d := key "nginx/config" | parseJSON }}{{ $d.max_body }}{{ end }}"#,
    )
    .unwrap();
    assert_eq!(out, "10m");
}
