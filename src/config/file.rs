//! Reading config files and directories into [`Source`]s.
//!
//! As Consul does with `-config-file` and `-config-dir`, a path names either
//! a file or a directory; a directory contributes its `*.json` and `*.hcl`
//! files in lexical order. A file format is only a deserializer into the
//! same `Source`, so a new format is one more [`Format`] arm.
//!
//! HCL is read by `hcl-rs` the way Consul's HCL loader reads it: a block
//! (`ports { http = 8501 }`) is an object, repeated blocks
//! (`service { ... } service { ... }`) are a list of objects, and
//! `key = value` attributes are the JSON keys of the same name. The keys
//! that take one object or a list of them accept either form.

use super::source::Source;
use super::ConfigError;
use std::path::{Path, PathBuf};

/// A config file's syntax, from its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Hcl,
}

impl Format {
    /// `.hcl` is HCL; anything else is read as JSON.
    fn of(path: &Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some("hcl") => Format::Hcl,
            _ => Format::Json,
        }
    }

    fn decode(self, text: &str) -> Result<Source, String> {
        match self {
            Format::Json => serde_json::from_str(text).map_err(|e| describe(&e.to_string())),
            Format::Hcl => hcl::from_str(text).map_err(|e| match e {
                hcl::Error::Parse(p) => {
                    let at = p.location();
                    format!(
                        "HCL syntax error at line {} column {}: {}",
                        at.line(),
                        at.column(),
                        p.message()
                    )
                }
                other => describe(&other.to_string()),
            }),
        }
    }
}

/// Rewrites serde's `unknown field `x`, expected one of ...` (the whole
/// list of known keys) to Consul's `invalid config key x`, keeping the
/// position that follows it.
fn describe(msg: &str) -> String {
    let Some(rest) = msg.strip_prefix("unknown field `") else {
        return msg.to_string();
    };
    let Some((key, tail)) = rest.split_once('`') else {
        return msg.to_string();
    };
    match tail.rfind(" at line ") {
        Some(at) => format!("invalid config key {key}{}", &tail[at..]),
        None => format!("invalid config key {key}"),
    }
}

/// One parsed file, with its path for error messages.
pub struct FileSource {
    pub path: PathBuf,
    pub source: Source,
}

/// Reads `path`: one file, or every config file of a directory.
pub fn read_path(path: &Path) -> Result<Vec<FileSource>, ConfigError> {
    if path.is_dir() {
        config_files_in(path)?
            .into_iter()
            .map(|f| read_file(&f))
            .collect()
    } else {
        Ok(vec![read_file(path)?])
    }
}

fn read_file(path: &Path) -> Result<FileSource, ConfigError> {
    let err = |msg: String| ConfigError::File {
        path: path.display().to_string(),
        msg,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let source = Format::of(path).decode(&text).map_err(err)?;
    Ok(FileSource {
        path: path.to_path_buf(),
        source,
    })
}

/// The `*.json` and `*.hcl` files of `dir`, sorted by name.
fn config_files_in(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let entries = std::fs::read_dir(dir).map_err(|e| ConfigError::File {
        path: dir.display().to_string(),
        msg: e.to_string(),
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("json") | Some("hcl")
                )
        })
        .collect();
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn an_unknown_key_names_the_file_and_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "a.json",
            "{\"datacenter\":\"x\",\n \"bogus\":1}",
        );
        let e = read_path(&p).err().unwrap().to_string();
        assert_eq!(
            e,
            format!(
                "Error parsing {}: invalid config key bogus at line 2 column 8",
                p.display()
            )
        );
        let nested = write(dir.path(), "b.json", r#"{"ports":{"htp":1}}"#);
        let e = read_path(&nested).err().unwrap().to_string();
        assert!(e.contains("b.json: invalid config key htp"), "{e}");
    }

    #[test]
    fn other_errors_keep_serdes_text() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "a.json", r#"{"ports":{"http":"x"}}"#);
        let e = read_path(&p).err().unwrap().to_string();
        assert!(e.contains("a.json: invalid type: string \"x\""), "{e}");
    }

    fn hcl(text: &str) -> Source {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "agent.hcl", text);
        let mut files = read_path(&p).unwrap_or_else(|e| panic!("{e}"));
        files.remove(0).source
    }

    fn hcl_err(text: &str) -> (PathBuf, String, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "agent.hcl", text);
        let e = read_path(&p).err().unwrap().to_string();
        (p, e, dir)
    }

    #[test]
    fn hcl_attributes_blocks_lists_and_maps() {
        let s = hcl(r#"
            datacenter = "east"
            server     = true
            bootstrap_expect = 3
            retry_join = ["10.0.0.1", "10.0.0.2"]
            ports {
              http = 8501
              dns  = -1
            }
            dns_config {
              node_ttl    = "30s"
              service_ttl = { "*" = "5s" }
              soa { min_ttl = 7 }
            }
            ui_config { enabled = true }
            telemetry {}
            node_meta {
              rack = "a"
            }
            limits = { http_max_conns_per_client = 50 }
        "#);
        assert_eq!(s.datacenter.as_deref(), Some("east"));
        assert_eq!(s.server, Some(true));
        assert_eq!(s.bootstrap_expect, Some(3));
        assert_eq!(s.retry_join, ["10.0.0.1", "10.0.0.2"]);
        assert_eq!(s.ports.http, Some(8501));
        assert_eq!(s.ports.dns, Some(-1));
        assert_eq!(s.dns_config.node_ttl, Some("30s".to_string().into()));
        assert_eq!(s.dns_config.service_ttl.len(), 1);
        assert_eq!(s.dns_config.soa.min_ttl, Some(7));
        assert_eq!(s.ui_config.enabled, Some(true));
        assert_eq!(s.node_meta.get("rack").map(String::as_str), Some("a"));
        assert_eq!(s.limits.http_max_conns_per_client, Some(50));
    }

    #[test]
    fn hcl_repeated_blocks_are_lists_and_one_block_is_one_item() {
        let s = hcl(r#"
            service {
              name = "web"
              port = 80
              check { ttl = "10s" }
            }
            service {
              name = "db"
            }
            check {
              id   = "mem"
              name = "Memory"
              ttl  = "1m"
            }
            services = [{ name = "cache" }]
        "#);
        let names: Vec<_> = s.service.iter().map(|v| v["name"].clone()).collect();
        assert_eq!(names, ["web", "db"]);
        assert_eq!(s.service[0]["check"]["ttl"], "10s");
        assert_eq!(s.check.len(), 1, "one block is a list of one");
        assert_eq!(s.check[0]["id"], "mem");
        assert_eq!(s.services.len(), 1);
    }

    #[test]
    fn hcl_unknown_keys_name_the_file_and_the_key() {
        let (p, e, _dir) = hcl_err("datacenter = \"x\"\nbogus = 1\n");
        assert_eq!(
            e,
            format!("Error parsing {}: invalid config key bogus", p.display())
        );
        let (_, e, _dir) = hcl_err("ports {\n  htp = 1\n}\n");
        assert!(e.ends_with("agent.hcl: invalid config key htp"), "{e}");
        let (_, e, _dir) = hcl_err("ports { http = \"x\" }\n");
        assert!(e.contains("agent.hcl: invalid type: string \"x\""), "{e}");
    }

    #[test]
    fn hcl_syntax_errors_name_the_file_and_line() {
        let (p, e, _dir) = hcl_err("datacenter = \"x\"\nports {\n  http = = 1\n}\n");
        assert!(
            e.starts_with(&format!(
                "Error parsing {}: HCL syntax error at line 3 column",
                p.display()
            )),
            "{e}"
        );
        assert!(!e.contains('\n'), "one line: {e}");
    }

    #[test]
    fn a_directory_reads_hcl_and_json_alike() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.hcl", "node_name = \"a\"\n");
        write(dir.path(), "b.json", r#"{"node_name":"b"}"#);
        let got: Vec<_> = read_path(dir.path())
            .unwrap()
            .into_iter()
            .map(|f| f.source.node_name.unwrap())
            .collect();
        assert_eq!(got, ["a", "b"]);
    }

    #[test]
    fn a_directory_gives_its_config_files_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "b.json", r#"{"node_name":"b"}"#);
        write(dir.path(), "a.json", r#"{"node_name":"a"}"#);
        write(dir.path(), "notes.txt", "not config");
        std::fs::create_dir(dir.path().join("sub.json")).unwrap();
        let got: Vec<_> = read_path(dir.path())
            .unwrap()
            .into_iter()
            .map(|f| f.source.node_name.unwrap())
            .collect();
        assert_eq!(got, ["a", "b"]);
    }
}
