//! The gossip keyring, as memberlist keeps it: the installed keys in order,
//! the first being the primary. Packets are sealed with the primary and
//! opened with whichever installed key opens them, so a key can be rotated
//! without a partition: install the new key everywhere, make it primary
//! everywhere, then remove the old one.
//!
//! A keyring is immutable: each change makes a new one, which the agent
//! swaps in whole (readers never wait for a writer). It is persisted as
//! Consul does, to `<data_dir>/serf/local.keyring`: a JSON array of base64
//! keys, primary first, mode 0600, rewritten on every change and read back
//! at start in preference to `-encrypt`.

use super::crypto::{Key, KeyError};
use arc_swap::ArcSwap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where Consul keeps the LAN keyring, under the data dir.
pub const LAN_KEYRING: &str = "serf/local.keyring";

/// Why a keyring change was refused, in memberlist's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyringError {
    #[error("{0}")]
    Key(#[from] KeyError),
    #[error("Requested key is not in the keyring")]
    NotInstalled,
    #[error("Removing the primary key is not allowed")]
    RemovePrimary,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyring {
    /// Never empty; `keys[0]` is the primary.
    keys: Vec<Key>,
}

impl Keyring {
    pub fn new(primary: Key) -> Keyring {
        Keyring {
            keys: vec![primary],
        }
    }

    pub fn primary(&self) -> &Key {
        &self.keys[0]
    }

    /// Every installed key, the primary first.
    pub fn keys(&self) -> &[Key] {
        &self.keys
    }

    /// Seals with the primary key.
    pub fn seal(&self, plain: &[u8]) -> Vec<u8> {
        self.primary().seal(plain)
    }

    /// Opens with any installed key, the primary tried first.
    pub fn open(&self, packet: &[u8]) -> Option<Vec<u8>> {
        self.keys.iter().find_map(|k| k.open(packet))
    }

    fn position(&self, raw: &[u8]) -> Option<usize> {
        self.keys.iter().position(|k| k.raw() == raw)
    }

    /// Adds a key after the others; installing an installed key changes
    /// nothing (memberlist's `AddKey`).
    pub fn install(&self, raw: &[u8]) -> Result<Keyring, KeyringError> {
        let key = Key::from_bytes(raw)?;
        let mut next = self.clone();
        if self.position(raw).is_none() {
            next.keys.push(key);
        }
        Ok(next)
    }

    /// Makes an installed key the primary; the others keep their order.
    pub fn use_key(&self, raw: &[u8]) -> Result<Keyring, KeyringError> {
        let at = self.position(raw).ok_or(KeyringError::NotInstalled)?;
        let mut next = self.clone();
        let key = next.keys.remove(at);
        next.keys.insert(0, key);
        Ok(next)
    }

    /// Removes a key other than the primary; removing a key that is not
    /// installed changes nothing (memberlist's `RemoveKey`).
    pub fn remove(&self, raw: &[u8]) -> Result<Keyring, KeyringError> {
        match self.position(raw) {
            Some(0) => Err(KeyringError::RemovePrimary),
            Some(at) => {
                let mut next = self.clone();
                next.keys.remove(at);
                Ok(next)
            }
            None => Ok(self.clone()),
        }
    }

    /// The keys as the keyring file and the list operation show them.
    pub fn to_base64(&self) -> Vec<String> {
        self.keys.iter().map(Key::to_base64).collect()
    }
}

/// The keyring an agent gossips with, shared by the socket reader (which
/// opens), the gossip owner (which seals) and the key operations (which
/// swap in a changed keyring). `None` when gossip is not encrypted.
#[derive(Clone, Default)]
pub struct SharedKeyring(Option<Arc<ArcSwap<Keyring>>>);

impl SharedKeyring {
    pub fn new(keyring: Option<Keyring>) -> SharedKeyring {
        SharedKeyring(keyring.map(|k| Arc::new(ArcSwap::from_pointee(k))))
    }

    pub fn enabled(&self) -> bool {
        self.0.is_some()
    }

    pub fn current(&self) -> Option<Arc<Keyring>> {
        self.0.as_ref().map(|k| k.load_full())
    }

    pub fn replace(&self, keyring: Keyring) {
        if let Some(k) = &self.0 {
            k.store(Arc::new(keyring));
        }
    }

    /// A datagram's bytes for `plain`: sealed with the primary when gossip
    /// is encrypted, else as is.
    pub fn seal(&self, plain: &[u8]) -> Vec<u8> {
        match &self.0 {
            Some(k) => k.load().seal(plain),
            None => plain.to_vec(),
        }
    }

    /// A received datagram's payload: opened with any installed key when
    /// gossip is encrypted (`None` when none opens it), else as is.
    pub fn open(&self, packet: &[u8]) -> Option<Vec<u8>> {
        match &self.0 {
            Some(k) => k.load().open(packet),
            None => Some(packet.to_vec()),
        }
    }
}

/// Why the keyring file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum KeyringFileError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {msg}")]
    Invalid { path: String, msg: String },
    #[error("writing {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    /// `-encrypt` / `encrypt` is not a key.
    #[error("Invalid key: {0}")]
    EncryptKey(KeyError),
}

/// `<data_dir>/serf/local.keyring`.
#[derive(Debug, Clone)]
pub struct KeyringFile {
    path: PathBuf,
}

impl KeyringFile {
    pub fn in_data_dir(data_dir: &Path) -> KeyringFile {
        KeyringFile {
            path: data_dir.join(LAN_KEYRING),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn display(&self) -> String {
        self.path.display().to_string()
    }

    /// The stored keyring, or `None` when there is no file.
    pub fn load(&self) -> Result<Option<Keyring>, KeyringFileError> {
        let text = match std::fs::read(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(KeyringFileError::Read {
                    path: self.display(),
                    source,
                })
            }
        };
        let invalid = |msg: String| KeyringFileError::Invalid {
            path: self.display(),
            msg,
        };
        let encoded: Vec<String> =
            serde_json::from_slice(&text).map_err(|e| invalid(e.to_string()))?;
        let mut keys: Vec<Key> = Vec::with_capacity(encoded.len());
        for k in &encoded {
            let key = Key::from_base64(k).map_err(|e| invalid(e.to_string()))?;
            // memberlist.NewKeyring skips repeats of a key.
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        if keys.is_empty() {
            return Err(invalid("no keys present in keyring file".into()));
        }
        Ok(Some(Keyring { keys }))
    }

    /// Writes `keyring` (indented, as serf writes it) to a temporary file
    /// beside the real one, syncs it and renames it over, so a crash leaves
    /// either the old keyring or the new one. Blocking: run it off the
    /// async runtime.
    pub fn save(&self, keyring: &Keyring) -> Result<(), KeyringFileError> {
        let write_err = |source: std::io::Error| KeyringFileError::Write {
            path: self.display(),
            source,
        };
        let dir = self.path.parent().unwrap_or(Path::new("."));
        create_private_dir(dir).map_err(write_err)?;
        let body = serde_json::to_vec_pretty(&keyring.to_base64())
            .map_err(|e| write_err(std::io::Error::other(e)))?;
        // tempfile creates the file with mode 0600.
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(write_err)?;
        tmp.write_all(&body).map_err(write_err)?;
        tmp.as_file().sync_all().map_err(write_err)?;
        tmp.persist(&self.path).map_err(|e| write_err(e.error))?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// The keyring an agent starts with, and what it should warn about.
#[derive(Debug)]
pub struct StartKeyring {
    pub keyring: Option<Keyring>,
    /// Where changes are persisted (`None` with `disable_keyring_file`).
    pub file: Option<KeyringFile>,
    pub warnings: Vec<String>,
}

/// Consul's `setupKeyrings` for the LAN pool. With `disable_keyring_file`
/// the `-encrypt` key alone is used and nothing is written. Otherwise a
/// keyring file that exists wins over `-encrypt` (with Consul's warning
/// when it lacks that key), and `-encrypt` without a file starts one.
pub fn at_start(
    encrypt: Option<&str>,
    data_dir: &Path,
    disable_file: bool,
) -> Result<StartKeyring, KeyringFileError> {
    let given = match encrypt {
        Some(k) => Some(Key::from_base64(k).map_err(KeyringFileError::EncryptKey)?),
        None => None,
    };
    if disable_file {
        return Ok(StartKeyring {
            keyring: given.map(Keyring::new),
            file: None,
            warnings: vec![],
        });
    }
    let file = KeyringFile::in_data_dir(data_dir);
    let mut warnings = vec![];
    let keyring = match (file.load()?, given) {
        (Some(stored), Some(given)) => {
            if !stored.keys().contains(&given) {
                warnings.push(
                    "keyring doesn't include key provided with -encrypt, using keyring: keyring=LAN"
                        .to_string(),
                );
            }
            Some(stored)
        }
        (Some(stored), None) => Some(stored),
        (None, Some(given)) => {
            let keyring = Keyring::new(given);
            file.save(&keyring)?;
            Some(keyring)
        }
        (None, None) => None,
    };
    Ok(StartKeyring {
        keyring,
        file: Some(file),
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gossip::crypto::keygen;

    fn key() -> Key {
        Key::from_base64(&keygen()).unwrap()
    }

    #[test]
    fn seals_with_the_primary_and_opens_with_any_key() {
        let (k1, k2) = (key(), key());
        let ring = Keyring::new(k1.clone()).install(k2.raw()).unwrap();
        assert_eq!(ring.keys(), &[k1.clone(), k2.clone()]);
        // Sealed with the primary (k1), so k1 alone opens it.
        let sealed = ring.seal(b"probe");
        assert_eq!(k1.open(&sealed).unwrap(), b"probe");
        assert!(k2.open(&sealed).is_none());
        // Packets sealed with either installed key open.
        assert_eq!(ring.open(&k2.seal(b"from k2")).unwrap(), b"from k2");
        assert_eq!(ring.open(&k1.seal(b"from k1")).unwrap(), b"from k1");
        assert!(ring.open(&key().seal(b"other")).is_none());
        assert!(ring
            .open(b"a plain packet, long enough to be sealed")
            .is_none());

        let rotated = ring.use_key(k2.raw()).unwrap();
        assert_eq!(rotated.primary(), &k2);
        assert_eq!(k2.open(&rotated.seal(b"x")).unwrap(), b"x");
        assert_eq!(rotated.to_base64(), vec![k2.to_base64(), k1.to_base64()]);
    }

    #[test]
    fn install_use_and_remove_follow_memberlist() {
        let (k1, k2, k3) = (key(), key(), key());
        let ring = Keyring::new(k1.clone());
        assert_eq!(
            ring.install(&[1, 2, 3]),
            Err(KeyringError::Key(KeyError::Size))
        );
        let ring = ring.install(k2.raw()).unwrap().install(k3.raw()).unwrap();
        assert_eq!(ring.install(k2.raw()).unwrap(), ring, "a repeat is a no-op");
        assert_eq!(ring.use_key(key().raw()), Err(KeyringError::NotInstalled));
        let ring = ring.use_key(k3.raw()).unwrap();
        assert_eq!(ring.keys(), &[k3.clone(), k1.clone(), k2.clone()]);
        assert_eq!(ring.remove(k3.raw()), Err(KeyringError::RemovePrimary));
        assert_eq!(
            KeyringError::RemovePrimary.to_string(),
            "Removing the primary key is not allowed"
        );
        let ring = ring.remove(k1.raw()).unwrap();
        assert_eq!(ring.keys(), &[k3.clone(), k2.clone()]);
        assert_eq!(ring.remove(k1.raw()).unwrap(), ring, "already gone");
        assert!(
            ring.open(&k1.seal(b"old")).is_none(),
            "a removed key no longer opens"
        );
    }

    #[test]
    fn the_file_round_trips_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = KeyringFile::in_data_dir(dir.path());
        assert!(file.load().unwrap().is_none());
        let (k1, k2) = (key(), key());
        let ring = Keyring::new(k1.clone())
            .install(k2.raw())
            .unwrap()
            .use_key(k2.raw())
            .unwrap();
        file.save(&ring).unwrap();
        assert_eq!(file.load().unwrap().unwrap(), ring);
        let meta = std::fs::metadata(file.path()).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let text = std::fs::read_to_string(file.path()).unwrap();
        let stored: Vec<String> = serde_json::from_str(&text).unwrap();
        assert_eq!(
            stored,
            vec![k2.to_base64(), k1.to_base64()],
            "primary first"
        );

        std::fs::write(file.path(), "[]").unwrap();
        let err = file.load().unwrap_err().to_string();
        assert!(err.contains("no keys present in keyring file"), "{err}");
        std::fs::write(file.path(), r#"["c2hvcnQ="]"#).unwrap();
        let err = file.load().unwrap_err().to_string();
        assert!(err.contains("key size must be 16, 24 or 32 bytes"), "{err}");
        std::fs::write(file.path(), "not json").unwrap();
        assert!(file.load().is_err());
    }

    #[test]
    fn the_file_wins_over_encrypt_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let (k1, k2) = (key(), key());
        // -encrypt with no file: the file is started with that key.
        let first = at_start(Some(&k1.to_base64()), dir.path(), false).unwrap();
        assert_eq!(first.keyring, Some(Keyring::new(k1.clone())));
        assert!(first.warnings.is_empty());
        let file = first.file.unwrap();
        assert!(file.path().exists());
        // After a rotation the file lacks the -encrypt key: the file wins.
        file.save(&Keyring::new(k2.clone())).unwrap();
        let again = at_start(Some(&k1.to_base64()), dir.path(), false).unwrap();
        assert_eq!(again.keyring, Some(Keyring::new(k2.clone())));
        assert_eq!(
            again.warnings,
            vec!["keyring doesn't include key provided with -encrypt, using keyring: keyring=LAN"]
        );
        // Without -encrypt the file alone turns encryption on.
        let bare = at_start(None, dir.path(), false).unwrap();
        assert_eq!(bare.keyring, Some(Keyring::new(k2.clone())));
        // disable_keyring_file: the file is neither read nor written.
        let off = at_start(Some(&k1.to_base64()), dir.path(), true).unwrap();
        assert_eq!(off.keyring, Some(Keyring::new(k1.clone())));
        assert!(off.file.is_none());
        let empty = tempfile::tempdir().unwrap();
        assert!(at_start(None, empty.path(), false)
            .unwrap()
            .keyring
            .is_none());
        assert!(!KeyringFile::in_data_dir(empty.path()).path().exists());
        assert!(at_start(Some("abc"), empty.path(), false).is_err());
    }
}
