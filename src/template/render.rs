//! Writing a rendered template, as consul-template's renderer does: the
//! destination is left alone when the content is unchanged (and then no
//! command runs); otherwise the new content goes to a temporary file in
//! the same directory, is synced, given its mode (`perms`, else the old
//! file's, else 0644) and renamed over the destination, so a reader never
//! sees half a file. `backup` keeps the previous content as `<dest>.bak`.
//! In dry mode the content is printed as `> <dest>` and the content.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("failed reading file {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("parent directory of {0} does not exist")]
    NoParent(PathBuf),
    #[error("failed writing file {0}: {1}")]
    Write(PathBuf, std::io::Error),
}

/// What rendering did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The destination already had this content.
    Unchanged,
    /// The destination was written (or, dry, printed).
    Written,
}

pub struct Target<'a> {
    pub path: &'a Path,
    pub perms: Option<u32>,
    pub backup: bool,
    pub create_dest_dirs: bool,
}

pub const DEFAULT_PERMS: u32 = 0o644;

/// Writes `contents` to the target unless it already holds them.
pub fn render(
    target: &Target<'_>,
    contents: &[u8],
    dry: Option<&mut dyn Write>,
) -> Result<Outcome, RenderError> {
    let path = target.path;
    let existing = match std::fs::read(path) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(RenderError::Read(path.to_path_buf(), e)),
    };
    if existing.as_deref() == Some(contents) {
        return Ok(Outcome::Unchanged);
    }
    if let Some(out) = dry {
        let write = |out: &mut dyn Write| -> std::io::Result<()> {
            writeln!(out, "> {}", path.display())?;
            out.write_all(contents)?;
            out.flush()
        };
        write(out).map_err(|e| RenderError::Write(path.to_path_buf(), e))?;
        return Ok(Outcome::Written);
    }
    atomic_write(target, contents)?;
    Ok(Outcome::Written)
}

fn atomic_write(target: &Target<'_>, contents: &[u8]) -> Result<(), RenderError> {
    let path = target.path;
    let fail = |e: std::io::Error| RenderError::Write(path.to_path_buf(), e);
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !parent.exists() {
        if !target.create_dest_dirs {
            return Err(RenderError::NoParent(path.to_path_buf()));
        }
        std::fs::create_dir_all(&parent).map_err(fail)?;
    }
    let mut tmp = tempfile::Builder::new()
        .prefix(".cairn-template")
        .tempfile_in(&parent)
        .map_err(fail)?;
    tmp.write_all(contents).map_err(fail)?;
    tmp.as_file().sync_all().map_err(fail)?;
    let mode = match (target.perms, std::fs::metadata(path)) {
        (Some(mode), _) => mode,
        (None, Ok(meta)) => meta.permissions().mode() & 0o7777,
        (None, Err(_)) => DEFAULT_PERMS,
    };
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(mode)).map_err(fail)?;
    if target.backup && path.exists() {
        let bak = backup_path(path);
        // A hard link keeps the old content under the backup name; copy
        // when the file system cannot link.
        let _ = std::fs::remove_file(&bak);
        if std::fs::hard_link(path, &bak).is_err() {
            if let Err(e) = std::fs::copy(path, &bak) {
                tracing::warn!(
                    "(runner) could not backup {:?}: {e}",
                    path.display().to_string()
                );
            }
        }
    }
    tmp.persist(path).map_err(|e| fail(e.error))?;
    Ok(())
}

pub fn backup_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".bak");
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(path: &Path) -> Target<'_> {
        Target {
            path,
            perms: None,
            backup: false,
            create_dest_dirs: true,
        }
    }

    #[test]
    fn writes_only_when_changed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/out.conf");
        assert_eq!(
            render(&target(&path), b"one", None).unwrap(),
            Outcome::Written
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"one");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        assert_eq!(
            render(&target(&path), b"one", None).unwrap(),
            Outcome::Unchanged
        );
        // No temporary files are left behind.
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["out.conf"]);
    }

    #[test]
    fn perms_backup_and_existing_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        std::fs::write(&path, b"old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let mut t = target(&path);
        t.backup = true;
        render(&t, b"new", None).unwrap();
        assert_eq!(std::fs::read(backup_path(&path)).unwrap(), b"old");
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o640
        );
        t.perms = Some(0o600);
        render(&t, b"newer", None).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(std::fs::read(backup_path(&path)).unwrap(), b"new");
    }

    #[test]
    fn dry_prints_and_leaves_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let mut out = Vec::new();
        assert_eq!(
            render(&target(&path), b"x\n", Some(&mut out)).unwrap(),
            Outcome::Written
        );
        assert_eq!(out, format!("> {}\nx\n", path.display()).into_bytes());
        assert!(!path.exists());
    }

    #[test]
    fn missing_parent_without_create_dest_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope/out");
        let mut t = target(&path);
        t.create_dest_dirs = false;
        assert!(matches!(
            render(&t, b"x", None),
            Err(RenderError::NoParent(_))
        ));
    }
}
