//! Reading config files and directories into [`Source`]s.
//!
//! As Consul does with `-config-file` and `-config-dir`, a path names either
//! a file or a directory; a directory contributes its `*.json` and `*.hcl`
//! files in lexical order. A file format is only a deserializer into the
//! same `Source`, so a new format is one more [`Format`] arm.

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
            Format::Hcl => Err("HCL config files are not supported; use JSON".into()),
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
        let hcl = write(dir.path(), "c.hcl", "datacenter = \"x\"");
        let e = read_path(&hcl).err().unwrap().to_string();
        assert!(
            e.contains("c.hcl: HCL config files are not supported"),
            "{e}"
        );
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
