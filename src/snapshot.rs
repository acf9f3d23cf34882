//! Snapshot archives (`/v1/snapshot`, `cairn snapshot`): Consul's container
//! around cairn's own state.
//!
//! An archive is gzip around a tar of three files, in this order, each with
//! mode 0600, exactly as Consul writes them:
//!
//! - `meta.json`: raft's snapshot metadata (`Version`, `ID` =
//!   `term-index-unixms`, `Index`, `Term`, `Configuration`,
//!   `ConfigurationIndex`, `Size` = bytes of `state.bin`);
//! - `state.bin`: the whole replicated state at `Index`, a
//!   [`CatalogSnapshot`] dumped from one read transaction. cairn's encoding
//!   (a magic line, then the struct in bincode, serialized whole so that
//!   every table it holds is carried without this module naming any), not
//!   Consul's FSM records: an archive round-trips between cairn clusters,
//!   and Consul's own `state.bin` is refused as not cairn's;
//! - `SHA256SUMS`: `<hex sha256>  <name>` for the two files above.
//!
//! [`read`] checks everything before anything is restored: the gzip
//! stream to its end (CRC and length), the tar, that no other file is in
//! it, every hash, the metadata, and that `state.bin` decodes. Its errors
//! are Consul's texts (`failed to decompress snapshot: ...`, `failed to
//! read snapshot file: failed checking integrity of snapshot: hash check
//! failed for "state.bin"`, ...).

use crate::catalog::snapshot::CatalogSnapshot;
use bincode::Options;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Read;

/// The largest `state.bin` restored: a restore travels as one raft entry
/// (and one feed frame to client agents), which must stay under the RPC
/// port's 64 MiB frame.
pub const MAX_STATE: usize = 32 << 20;
/// The largest archive accepted by `PUT /v1/snapshot` (the state plus the
/// tar and gzip framing; compression only makes it smaller).
pub const MAX_ARCHIVE: usize = MAX_STATE + (1 << 20);

/// What `state.bin` starts with: names the encoding and its version.
const STATE_MAGIC: &[u8] = b"cairn-catalog-snapshot v2\n";
/// The version written before prepared queries existed; still restored.
const STATE_MAGIC_V1: &[u8] = b"cairn-catalog-snapshot v1\n";

const META: &str = "meta.json";
const STATE: &str = "state.bin";
const SUMS: &str = "SHA256SUMS";

/// raft's `SnapshotMeta` as Consul writes it into `meta.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Meta {
    pub version: u64,
    #[serde(rename = "ID")]
    pub id: String,
    pub index: u64,
    pub term: u64,
    pub configuration: Configuration,
    pub configuration_index: u64,
    pub size: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Configuration {
    pub servers: Vec<ConfigServer>,
}

/// One server of the raft configuration (`Suffrage` 0 = voter, 1 = nonvoter).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ConfigServer {
    pub suffrage: u8,
    #[serde(rename = "ID")]
    pub id: String,
    pub address: String,
}

impl Meta {
    /// The metadata of a state taken at `index` in `term`, `size` bytes.
    pub fn new(index: u64, term: u64, size: usize) -> Meta {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        Meta {
            version: 1,
            id: format!("{term}-{index}-{ms}"),
            index,
            term,
            configuration: Configuration::default(),
            configuration_index: 0,
            size: size as u64,
        }
    }
}

/// Why an archive was refused; the text is what the user sees.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ArchiveError(pub String);

fn err(msg: impl Into<String>) -> ArchiveError {
    ArchiveError(msg.into())
}

fn bincode_options() -> impl Options {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_limit(MAX_STATE as u64)
}

/// `state.bin` for `snap`.
pub fn encode_state(snap: &CatalogSnapshot) -> Result<Vec<u8>, ArchiveError> {
    let mut out = STATE_MAGIC.to_vec();
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .serialize_into(&mut out, snap)
        .map_err(|e| err(format!("failed to encode snapshot state: {e}")))?;
    Ok(out)
}

/// The state a `state.bin` holds.
pub fn decode_state(state: &[u8]) -> Result<CatalogSnapshot, ArchiveError> {
    let body = state
        .strip_prefix(STATE_MAGIC)
        .or_else(|| state.strip_prefix(STATE_MAGIC_V1))
        .ok_or_else(|| {
            err("failed to decode snapshot state: state.bin is not a cairn catalog snapshot")
        })?;
    bincode_options()
        .deserialize(body)
        .or_else(|e| {
            // States written before the operator state, coordinates and
            // prepared queries existed.
            bincode_options()
                .deserialize::<crate::catalog::snapshot::SnapshotBeforeOperator>(body)
                .map(CatalogSnapshot::from)
                .map_err(|_| e)
        })
        .map_err(|e| err(format!("failed to decode snapshot state: {e}")))
}

fn sha256_hex(data: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, data);
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The gzipped tar of `meta` (its `Size` set to the state's length),
/// `state` and their hashes.
pub fn write(meta: &Meta, state: &[u8]) -> Result<Vec<u8>, ArchiveError> {
    let mut meta = meta.clone();
    meta.size = state.len() as u64;
    // Go's json.Encoder ends the document with a newline.
    let mut meta_json =
        serde_json::to_vec(&meta).map_err(|e| err(format!("failed to encode metadata: {e}")))?;
    meta_json.push(b'\n');
    let sums = format!(
        "{}  {META}\n{}  {STATE}\n",
        sha256_hex(&meta_json),
        sha256_hex(state)
    );
    let mtime = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    for (name, data) in [
        (META, meta_json.as_slice()),
        (STATE, state),
        (SUMS, sums.as_bytes()),
    ] {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o600);
        h.set_mtime(mtime);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, name, data)
            .map_err(|e| err(format!("failed to write snapshot file: {e}")))?;
    }
    let gz = tar
        .into_inner()
        .map_err(|e| err(format!("failed to finalize snapshot: {e}")))?;
    gz.finish()
        .map_err(|e| err(format!("failed to compress snapshot file: {e}")))
}

/// A verified archive: its metadata and `state.bin`.
#[derive(Debug)]
pub struct Archive {
    pub meta: Meta,
    pub state: Vec<u8>,
}

impl Archive {
    /// Decodes the state (already checked by [`read`]).
    pub fn catalog(&self) -> Result<CatalogSnapshot, ArchiveError> {
        decode_state(&self.state)
    }
}

/// Reads and verifies an archive completely (see the module docs); the
/// state is decoded too, so an archive [`read`] accepts can be restored.
pub fn read(archive: &[u8]) -> Result<(Archive, CatalogSnapshot), ArchiveError> {
    let a = read_container(archive)?;
    let snap = a.catalog()?;
    Ok((a, snap))
}

/// The container checks of [`read`], without decoding the state.
pub fn read_container(archive: &[u8]) -> Result<Archive, ArchiveError> {
    if archive.len() < 2 || archive[..2] != [0x1f, 0x8b] {
        return Err(err(
            "failed to decompress snapshot: gzip: invalid header".to_string()
        ));
    }
    // The whole stream is inflated first, so its CRC and length trailer
    // are checked before anything in it is believed.
    let mut tar_bytes = Vec::new();
    let limit = (MAX_STATE + (1 << 20)) as u64;
    flate2::read::GzDecoder::new(archive)
        .take(limit + 1)
        .read_to_end(&mut tar_bytes)
        .map_err(|e| err(format!("failed to decompress snapshot: {}", gzip_error(&e))))?;
    if tar_bytes.len() as u64 > limit {
        return Err(err(format!(
            "failed to read snapshot file: snapshot larger than the {} MiB limit",
            MAX_STATE >> 20
        )));
    }
    let read_err = |m: String| err(format!("failed to read snapshot file: {m}"));
    let mut files: BTreeMap<&'static str, Vec<u8>> = BTreeMap::new();
    let mut tar = tar::Archive::new(tar_bytes.as_slice());
    let entries = tar
        .entries()
        .map_err(|e| read_err(format!("failed reading snapshot: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| read_err(format!("failed reading snapshot: {e}")))?;
        let name = entry
            .path_bytes()
            .into_owned()
            .into_iter()
            .map(char::from)
            .collect::<String>();
        let slot = match name.as_str() {
            META => META,
            STATE => STATE,
            SUMS => SUMS,
            other => return Err(read_err(format!("unexpected file {other:?} in snapshot"))),
        };
        let mut data = Vec::new();
        entry
            .read_to_end(&mut data)
            .map_err(|e| read_err(format!("failed to read or write snapshot data: {e}")))?;
        files.insert(slot, data);
    }
    let meta_json = files.remove(META).unwrap_or_default();
    let state = files.remove(STATE).unwrap_or_default();
    let sums = files.remove(SUMS).unwrap_or_default();
    verify_sums(&sums, &[(META, &meta_json), (STATE, &state)])
        .map_err(|e| read_err(format!("failed checking integrity of snapshot: {e}")))?;
    let meta: Meta = serde_json::from_slice(&meta_json)
        .map_err(|e| read_err(format!("failed to decode snapshot metadata: {e}")))?;
    if meta.size != state.len() as u64 {
        return Err(read_err(format!(
            "snapshot metadata says {} bytes of state, state.bin has {}",
            meta.size,
            state.len()
        )));
    }
    Ok(Archive { meta, state })
}

/// Go's gzip reader words its usual failures this way.
fn gzip_error(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::UnexpectedEof => "unexpected EOF".into(),
        std::io::ErrorKind::InvalidInput | std::io::ErrorKind::InvalidData
            if e.to_string().contains("checksum") || e.to_string().contains("crc") =>
        {
            "gzip: invalid checksum".into()
        }
        _ => format!("gzip: {e}"),
    }
}

/// Consul's `DecodeAndVerify`: every line names a known file with its
/// hash, and every file is listed.
fn verify_sums(sums: &[u8], files: &[(&str, &[u8])]) -> Result<(), String> {
    let text = std::str::from_utf8(sums).map_err(|_| "unexpected EOF".to_string())?;
    let mut seen = Vec::new();
    for line in text.lines() {
        let (hex, name) = line
            .split_once("  ")
            .ok_or_else(|| "unexpected EOF".to_string())?;
        let Some((_, data)) = files.iter().find(|(n, _)| *n == name.trim()) else {
            return Err(format!("list missing hash for {:?}", name.trim()));
        };
        if !hex.eq_ignore_ascii_case(&sha256_hex(data)) {
            return Err(format!("hash check failed for {:?}", name.trim()));
        }
        seen.push(name.trim().to_string());
    }
    for (name, _) in files {
        if !seen.iter().any(|s| s == name) {
            return Err(format!("file missing for {name:?}"));
        }
    }
    Ok(())
}

/// `consul snapshot inspect`'s table: ID, Size, Index, Term and Version,
/// the labels padded as Go's tabwriter pads them (width 8, padding 6).
pub fn inspect_table(meta: &Meta) -> String {
    let rows = [
        ("ID", meta.id.clone()),
        ("Size", meta.size.to_string()),
        ("Index", meta.index.to_string()),
        ("Term", meta.term.to_string()),
        ("Version", meta.version.to_string()),
    ];
    let width = rows
        .iter()
        .map(|(l, _)| l.len() + 1)
        .max()
        .unwrap_or(0)
        .max(8)
        + 6;
    let mut out = String::new();
    for (label, value) in rows {
        let cell = format!(" {label}");
        out.push_str(&format!("{cell:<width$}{value}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::types::KvEntry;

    fn sample() -> CatalogSnapshot {
        let mut snap = CatalogSnapshot::default();
        for i in 0..50 {
            snap.kv.push(KvEntry {
                key: format!("app/{i}"),
                value: format!("value {i}").into_bytes(),
                create_index: i,
                modify_index: i + 1,
                ..KvEntry::default()
            });
        }
        snap.indexes.push(("index/kvs".into(), 51));
        snap
    }

    fn archive() -> (Vec<u8>, CatalogSnapshot) {
        let snap = sample();
        let state = encode_state(&snap).unwrap();
        (write(&Meta::new(51, 2, state.len()), &state).unwrap(), snap)
    }

    /// The fields of a v1 `state.bin` (before prepared queries), in order.
    #[derive(Serialize)]
    struct StateV1<'a> {
        nodes: &'a [crate::catalog::types::Node],
        services: &'a [crate::catalog::types::Service],
        checks: &'a [crate::catalog::types::Check],
        kv: &'a [KvEntry],
        indexes: &'a [(String, u64)],
        sessions: &'a [crate::catalog::types::Session],
        acl: &'a crate::catalog::snapshot::AclSnapshot,
    }

    #[test]
    fn archives_from_before_prepared_queries_still_decode() {
        let snap = sample();
        let mut state = STATE_MAGIC_V1.to_vec();
        bincode::DefaultOptions::new()
            .with_fixint_encoding()
            .serialize_into(
                &mut state,
                &StateV1 {
                    nodes: &snap.nodes,
                    services: &snap.services,
                    checks: &snap.checks,
                    kv: &snap.kv,
                    indexes: &snap.indexes,
                    sessions: &snap.sessions,
                    acl: &snap.acl,
                },
            )
            .unwrap();
        assert_eq!(decode_state(&state).unwrap(), snap);
        // A current state carries its queries.
        let mut with_query = snap.clone();
        with_query
            .prepared_queries
            .0
            .push(crate::catalog::prepared_query::PreparedQuery {
                id: "q".into(),
                ..Default::default()
            });
        let state = encode_state(&with_query).unwrap();
        assert_eq!(decode_state(&state).unwrap(), with_query);
    }

    #[test]
    fn round_trip() {
        let (bytes, snap) = archive();
        assert_eq!(&bytes[..2], &[0x1f, 0x8b]);
        let (a, back) = read(&bytes).unwrap();
        assert_eq!(back, snap);
        assert_eq!(a.meta.index, 51);
        assert_eq!(a.meta.term, 2);
        assert_eq!(a.meta.version, 1);
        assert_eq!(a.meta.size, a.state.len() as u64);
        assert!(a.meta.id.starts_with("2-51-"), "{}", a.meta.id);
    }

    #[test]
    fn layout_is_consuls() {
        let (bytes, _) = archive();
        let mut tar_bytes = Vec::new();
        flate2::read::GzDecoder::new(bytes.as_slice())
            .read_to_end(&mut tar_bytes)
            .unwrap();
        let mut t = tar::Archive::new(tar_bytes.as_slice());
        let mut names = Vec::new();
        for e in t.entries().unwrap() {
            let mut e = e.unwrap();
            assert_eq!(e.header().mode().unwrap(), 0o600);
            let name = e.path().unwrap().to_string_lossy().into_owned();
            let mut data = String::new();
            if name != STATE {
                e.read_to_string(&mut data).unwrap();
            }
            if name == META {
                let v: serde_json::Value = serde_json::from_str(&data).unwrap();
                for k in ["ID", "Size", "Index", "Term", "Version"] {
                    assert!(v.get(k).is_some(), "{k} in {data}");
                }
            }
            if name == SUMS {
                let lines: Vec<&str> = data.lines().collect();
                assert_eq!(lines.len(), 2);
                assert!(lines[0].ends_with("  meta.json"));
                assert_eq!(lines[0].split("  ").next().unwrap().len(), 64);
            }
            names.push(name);
        }
        assert_eq!(names, [META, STATE, SUMS]);
    }

    #[test]
    fn truncated_archives_are_refused() {
        let (bytes, _) = archive();
        for cut in [1, 10, bytes.len() / 2, bytes.len() - 8, bytes.len() - 1] {
            let e = read(&bytes[..cut]).unwrap_err();
            assert!(
                e.0.starts_with("failed to decompress snapshot"),
                "cut at {cut}: {e}"
            );
        }
    }

    #[test]
    fn every_flipped_byte_is_caught() {
        let (bytes, snap) = archive();
        let mut refused = 0;
        // Past the gzip header (whose mtime/OS bytes carry no data).
        for i in 10..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x40;
            match read(&b) {
                Err(_) => refused += 1,
                // A flip in the deflate stream's unused padding bits
                // changes nothing that is read.
                Ok((_, back)) => assert_eq!(back, snap, "flip at {i} changed the state"),
            }
        }
        // How many bits deflate leaves unused (padding, unused code
        // lengths) varies with the compressed bytes, and so with the
        // metadata's timestamp: allow 2%, never a changed state.
        assert!(
            refused >= bytes.len() - bytes.len() / 50,
            "{refused} of {}",
            bytes.len()
        );
    }

    /// Builds an archive from raw parts, to corrupt what gzip protects.
    fn raw(files: &[(&str, &[u8])]) -> Vec<u8> {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut t = tar::Builder::new(gz);
        for (name, data) in files {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o600);
            t.append_data(&mut h, name, *data).unwrap();
        }
        t.into_inner().unwrap().finish().unwrap()
    }

    #[test]
    fn hashes_and_files_are_checked() {
        let state = encode_state(&sample()).unwrap();
        let mut meta = serde_json::to_vec(&Meta::new(1, 1, state.len())).unwrap();
        meta.push(b'\n');
        let good_sums = format!(
            "{}  meta.json\n{}  state.bin\n",
            sha256_hex(&meta),
            sha256_hex(&state)
        );
        read(&raw(&[
            ("meta.json", &meta),
            ("state.bin", &state),
            ("SHA256SUMS", good_sums.as_bytes()),
        ]))
        .unwrap();

        let mut bad_state = state.clone();
        let last = bad_state.len() - 1;
        bad_state[last] ^= 1;
        let e = read(&raw(&[
            ("meta.json", &meta),
            ("state.bin", &bad_state),
            ("SHA256SUMS", good_sums.as_bytes()),
        ]))
        .unwrap_err();
        assert_eq!(
            e.0,
            "failed to read snapshot file: failed checking integrity of snapshot: hash check failed for \"state.bin\""
        );

        let e = read(&raw(&[("meta.json", &meta), ("state.bin", &state)])).unwrap_err();
        assert_eq!(
            e.0,
            "failed to read snapshot file: failed checking integrity of snapshot: file missing for \"meta.json\""
        );

        let e = read(&raw(&[
            ("meta.json", &meta),
            ("state.bin", &state),
            ("SHA256SUMS", good_sums.as_bytes()),
            ("extra", b"x"),
        ]))
        .unwrap_err();
        assert_eq!(
            e.0,
            "failed to read snapshot file: unexpected file \"extra\" in snapshot"
        );

        let sums = format!("{good_sums}{}  other\n", sha256_hex(b""));
        let e = read(&raw(&[
            ("meta.json", &meta),
            ("state.bin", &state),
            ("SHA256SUMS", sums.as_bytes()),
        ]))
        .unwrap_err();
        assert!(e.0.ends_with("list missing hash for \"other\""), "{e}");
    }

    #[test]
    fn foreign_state_is_refused_after_the_container_checks() {
        let state = b"\x01\x02 not ours".to_vec();
        let bytes = write(&Meta::new(3, 1, state.len()), &state).unwrap();
        assert!(read_container(&bytes).is_ok());
        let e = read(&bytes).unwrap_err();
        assert!(e.0.contains("not a cairn catalog snapshot"), "{e}");
    }

    #[test]
    fn not_gzip() {
        let e = read(b"hello").unwrap_err();
        assert_eq!(e.0, "failed to decompress snapshot: gzip: invalid header");
    }

    #[test]
    fn inspect_table_is_consuls() {
        let meta = Meta {
            version: 1,
            id: "one".into(),
            index: 3,
            term: 4,
            size: 2,
            ..Meta::default()
        };
        assert_eq!(
            inspect_table(&meta),
            " ID           one\n Size         2\n Index        3\n Term         4\n Version      1\n"
        );
    }
}
