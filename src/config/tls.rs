//! The `tls {}` stanza (Consul 1.12+) and the older top-level keys it
//! replaced.
//!
//! `tls` has a `defaults` block and one block per interface
//! (`internal_rpc`, `https`, `grpc`); every field an interface block leaves
//! unset comes from `defaults`. As in Consul, the blocks are merged across
//! sources first and the interface settings resolved last, so an interface
//! key set in one file wins over a `defaults` key set in a later one.
//!
//! The top-level keys Consul deprecated in 1.12 (`ca_file`, `cert_file`,
//! `verify_incoming_rpc`, ...) still work: within one source, each fills its
//! new place unless that source also sets the new key, and each one used
//! adds Consul's deprecation warning.

use serde::Deserialize;
use std::path::PathBuf;

/// One block of the `tls` stanza as written. Every block has the same keys;
/// the ones that belong to a single interface are refused elsewhere when
/// the configuration is validated, with Consul's messages.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsBlock {
    pub ca_file: Option<PathBuf>,
    pub ca_path: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub tls_min_version: Option<String>,
    pub tls_cipher_suites: Option<String>,
    pub verify_incoming: Option<bool>,
    pub verify_outgoing: Option<bool>,
    pub verify_server_hostname: Option<bool>,
    pub use_auto_cert: Option<bool>,
}

impl TlsBlock {
    /// Lays `later` over this block: each key it sets replaces this one's.
    fn merge(&mut self, later: &TlsBlock) {
        fn set<T: Clone>(dst: &mut Option<T>, src: &Option<T>) {
            if src.is_some() {
                *dst = src.clone();
            }
        }
        set(&mut self.ca_file, &later.ca_file);
        set(&mut self.ca_path, &later.ca_path);
        set(&mut self.cert_file, &later.cert_file);
        set(&mut self.key_file, &later.key_file);
        set(&mut self.tls_min_version, &later.tls_min_version);
        set(&mut self.tls_cipher_suites, &later.tls_cipher_suites);
        set(&mut self.verify_incoming, &later.verify_incoming);
        set(&mut self.verify_outgoing, &later.verify_outgoing);
        set(
            &mut self.verify_server_hostname,
            &later.verify_server_hostname,
        );
        set(&mut self.use_auto_cert, &later.use_auto_cert);
    }
}

/// `tls {}` as written (and, in [`super::Config`], as merged across sources).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    pub defaults: TlsBlock,
    pub internal_rpc: TlsBlock,
    pub https: TlsBlock,
    /// Accepted and checked; cairn serves no gRPC.
    pub grpc: TlsBlock,
}

/// The top-level TLS keys of Consul before 1.12, as one source wrote them.
#[derive(Debug, Clone, Default)]
pub struct DeprecatedTls {
    pub ca_file: Option<PathBuf>,
    pub ca_path: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub tls_cipher_suites: Option<String>,
    pub tls_min_version: Option<String>,
    pub verify_incoming: Option<bool>,
    pub verify_incoming_https: Option<bool>,
    pub verify_incoming_rpc: Option<bool>,
    pub verify_outgoing: Option<bool>,
    pub verify_server_hostname: Option<bool>,
    pub tls_prefer_server_cipher_suites: Option<bool>,
}

fn deprecation(old: &str, new: &str) -> String {
    format!("The '{old}' field is deprecated. Use the '{new}' field instead.")
}

/// Consul's pre-1.12 spellings of `tls_min_version`.
fn deprecated_version(v: &str) -> Option<&'static str> {
    match v {
        "tls10" => Some("TLSv1_0"),
        "tls11" => Some("TLSv1_1"),
        "tls12" => Some("TLSv1_2"),
        "tls13" => Some("TLSv1_3"),
        _ => None,
    }
}

impl TlsConfig {
    /// Lays one source's `tls` stanza, with its deprecated top-level keys
    /// mapped into it, over the stanza built so far; returns the warnings.
    pub fn apply(&mut self, stanza: &TlsConfig, old: &DeprecatedTls) -> Vec<String> {
        let mut mine = stanza.clone();
        let warnings = mine.take_deprecated(old);
        self.defaults.merge(&mine.defaults);
        self.internal_rpc.merge(&mine.internal_rpc);
        self.https.merge(&mine.https);
        self.grpc.merge(&mine.grpc);
        warnings
    }

    /// Consul's `applyDeprecatedTLSConfig`: an old key fills its new place
    /// unless the same source set that too.
    fn take_deprecated(&mut self, old: &DeprecatedTls) -> Vec<String> {
        fn fill<T: Clone>(dst: &mut Option<T>, src: &Option<T>) -> bool {
            if src.is_some() && dst.is_none() {
                *dst = src.clone();
            }
            src.is_some()
        }
        let mut warns = Vec::new();
        let d = &mut self.defaults;
        let moves = [
            (
                fill(&mut d.ca_file, &old.ca_file),
                "ca_file",
                "tls.defaults.ca_file",
            ),
            (
                fill(&mut d.ca_path, &old.ca_path),
                "ca_path",
                "tls.defaults.ca_path",
            ),
            (
                fill(&mut d.cert_file, &old.cert_file),
                "cert_file",
                "tls.defaults.cert_file",
            ),
            (
                fill(&mut d.key_file, &old.key_file),
                "key_file",
                "tls.defaults.key_file",
            ),
            (
                fill(&mut d.tls_cipher_suites, &old.tls_cipher_suites),
                "tls_cipher_suites",
                "tls.defaults.tls_cipher_suites",
            ),
        ];
        for (used, from, to) in moves {
            if used {
                warns.push(deprecation(from, to));
            }
        }
        if let Some(v) = &old.tls_min_version {
            if d.tls_min_version.is_none() {
                d.tls_min_version = Some(match deprecated_version(v) {
                    Some(new) => {
                        warns.push(format!(
                            "'tls_min_version' value '{v}' is deprecated, please specify '{new}' instead"
                        ));
                        new.to_string()
                    }
                    None => v.clone(),
                });
            }
            warns.push(deprecation(
                "tls_min_version",
                "tls.defaults.tls_min_version",
            ));
        }
        let moves = [
            (
                fill(&mut self.defaults.verify_incoming, &old.verify_incoming),
                "verify_incoming",
                "tls.defaults.verify_incoming",
            ),
            (
                fill(&mut self.https.verify_incoming, &old.verify_incoming_https),
                "verify_incoming_https",
                "tls.https.verify_incoming",
            ),
            (
                fill(
                    &mut self.internal_rpc.verify_incoming,
                    &old.verify_incoming_rpc,
                ),
                "verify_incoming_rpc",
                "tls.internal_rpc.verify_incoming",
            ),
            (
                fill(&mut self.defaults.verify_outgoing, &old.verify_outgoing),
                "verify_outgoing",
                "tls.defaults.verify_outgoing",
            ),
            (
                fill(
                    &mut self.internal_rpc.verify_server_hostname,
                    &old.verify_server_hostname,
                ),
                "verify_server_hostname",
                "tls.internal_rpc.verify_server_hostname",
            ),
        ];
        for (used, from, to) in moves {
            if used {
                warns.push(deprecation(from, to));
            }
        }
        // Before 1.12 gRPC never checked client certificates: the old
        // `verify_incoming` must not reach it through `defaults`.
        if old.verify_incoming.is_some() && self.grpc.verify_incoming.is_none() {
            self.grpc.verify_incoming = Some(false);
        }
        if old.tls_prefer_server_cipher_suites.is_some() {
            warns.push(
                "The 'tls_prefer_server_cipher_suites' field is deprecated and will be ignored."
                    .into(),
            );
        }
        warns
    }

    /// Consul's checks of the merged stanza: keys in a block they do not
    /// belong to, TLS versions and cipher suite names.
    pub fn validate(&self) -> Result<(), String> {
        if self.grpc.verify_outgoing.is_some() {
            return Err("verify_outgoing is not valid in the tls.grpc stanza".into());
        }
        if [&self.defaults, &self.grpc, &self.https]
            .iter()
            .any(|b| b.verify_server_hostname.is_some())
        {
            return Err(
                "verify_server_hostname is only valid in the tls.internal_rpc stanza".into(),
            );
        }
        if [&self.defaults, &self.https, &self.internal_rpc]
            .iter()
            .any(|b| b.use_auto_cert.is_some())
        {
            return Err("use_auto_cert is only valid in the tls.grpc stanza".into());
        }
        for (name, block) in self.blocks() {
            if let Some(v) = &block.tls_min_version {
                TlsVersion::parse(v).ok_or_else(|| {
                    format!(
                        "tls.{name}.tls_min_version: invalid TLS version: no matching TLS version found for {v}, please specify one of [{}]",
                        TlsVersion::NAMES.join(", ")
                    )
                })?;
            }
            if let Some(suites) = &block.tls_cipher_suites {
                cipher_suites(suites).map_err(|e| format!("tls.{name}.tls_cipher_suites: {e}"))?;
            }
        }
        // Only TLS 1.2 suites can be chosen; a block that sets suites for
        // an interface that only speaks TLS 1.3 is refused, as in Consul.
        for (name, block) in self.blocks() {
            let version = block
                .tls_min_version
                .as_deref()
                .or(self.defaults.tls_min_version.as_deref())
                .and_then(TlsVersion::parse);
            if block.tls_cipher_suites.is_some() && version == Some(TlsVersion::V1_3) {
                return Err(format!(
                    "tls.{name}.tls_cipher_suites: TLS 1.3 cipher suites are not configurable"
                ));
            }
        }
        Ok(())
    }

    fn blocks(&self) -> [(&'static str, &TlsBlock); 4] {
        [
            ("defaults", &self.defaults),
            ("internal_rpc", &self.internal_rpc),
            ("https", &self.https),
            ("grpc", &self.grpc),
        ]
    }

    /// The settings of the server RPC port and of every dial to it.
    /// `verify_server_hostname` implies `verify_outgoing`, as Consul has
    /// enforced since CVE-2018-19653: otherwise it would promise TLS and
    /// dial in plain text.
    pub fn internal_rpc(&self) -> TlsInterface {
        let mut i = TlsInterface::resolve(&self.internal_rpc, &self.defaults);
        i.verify_server_hostname = self.internal_rpc.verify_server_hostname.unwrap_or(false);
        i.verify_outgoing |= i.verify_server_hostname;
        i
    }

    /// The settings of the HTTPS API.
    pub fn https(&self) -> TlsInterface {
        TlsInterface::resolve(&self.https, &self.defaults)
    }
}

/// `tls_min_version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    /// `TLS_AUTO`: the implementation's choice (TLS 1.2).
    Auto,
    V1_0,
    V1_1,
    V1_2,
    V1_3,
}

impl TlsVersion {
    /// The accepted spellings, in the order Consul lists them.
    pub const NAMES: [&'static str; 5] = ["TLS_AUTO", "TLSv1_0", "TLSv1_1", "TLSv1_2", "TLSv1_3"];

    /// An empty value is `TLS_AUTO`, as in Consul.
    pub fn parse(s: &str) -> Option<TlsVersion> {
        Some(match s {
            "" | "TLS_AUTO" => TlsVersion::Auto,
            "TLSv1_0" => TlsVersion::V1_0,
            "TLSv1_1" => TlsVersion::V1_1,
            "TLSv1_2" => TlsVersion::V1_2,
            "TLSv1_3" => TlsVersion::V1_3,
            _ => return None,
        })
    }
}

/// The TLS 1.2 cipher suites Consul accepts by name, and whether cairn can
/// offer each (it implements only the AEAD ones; Consul's CBC suites are
/// refused rather than silently dropped).
const CIPHER_SUITES: [(&str, bool); 10] = [
    ("TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", true),
    ("TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", false),
    ("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", true),
    ("TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA", false),
    ("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", true),
    ("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", true),
    ("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", false),
    ("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", true),
    ("TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA", false),
    ("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", true),
];

/// A comma-separated `tls_cipher_suites` value as names.
fn cipher_suites(list: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        match CIPHER_SUITES.iter().find(|(n, _)| *n == name) {
            Some((_, true)) => out.push(name.to_string()),
            Some((_, false)) => {
                return Err(format!(
                    "cipher suite {name} is not supported: cairn offers only the AEAD (GCM and CHACHA20) suites"
                ))
            }
            None => return Err(format!("unsupported cipher {name:?}")),
        }
    }
    Ok(out)
}

/// One interface's TLS settings, `defaults` applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInterface {
    pub ca_file: Option<PathBuf>,
    pub ca_path: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub min_version: TlsVersion,
    /// Names of the TLS 1.2 suites to offer; empty is every supported one.
    pub cipher_suites: Vec<String>,
    pub verify_incoming: bool,
    pub verify_outgoing: bool,
    /// Only ever set for `internal_rpc`.
    pub verify_server_hostname: bool,
}

impl TlsInterface {
    fn resolve(own: &TlsBlock, defaults: &TlsBlock) -> TlsInterface {
        // An empty string is unset, as Consul's `stringValWithDefault`
        // reads it.
        let path = |own: &Option<PathBuf>, dflt: &Option<PathBuf>| {
            own.clone()
                .or_else(|| dflt.clone())
                .filter(|p| !p.as_os_str().is_empty())
        };
        let min_version = own
            .tls_min_version
            .as_deref()
            .or(defaults.tls_min_version.as_deref())
            .and_then(TlsVersion::parse)
            .unwrap_or(TlsVersion::Auto);
        let suites = own
            .tls_cipher_suites
            .as_deref()
            .or(defaults.tls_cipher_suites.as_deref())
            .and_then(|s| cipher_suites(s).ok())
            .unwrap_or_default();
        TlsInterface {
            ca_file: path(&own.ca_file, &defaults.ca_file),
            ca_path: path(&own.ca_path, &defaults.ca_path),
            cert_file: path(&own.cert_file, &defaults.cert_file),
            key_file: path(&own.key_file, &defaults.key_file),
            min_version,
            cipher_suites: suites,
            verify_incoming: own
                .verify_incoming
                .or(defaults.verify_incoming)
                .unwrap_or(false),
            verify_outgoing: own
                .verify_outgoing
                .or(defaults.verify_outgoing)
                .unwrap_or(false),
            verify_server_hostname: false,
        }
    }

    /// Whether this interface has a CA to verify peers with.
    pub fn has_ca(&self) -> bool {
        self.ca_file.is_some() || self.ca_path.is_some()
    }

    /// Whether both halves of a certificate are configured (Consul loads
    /// none when either is missing).
    pub fn has_cert(&self) -> bool {
        self.cert_file.is_some() && self.key_file.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, ConfigError, Origin, Source};

    fn build(sources: &[&str]) -> Result<Config, ConfigError> {
        Config::build(
            true,
            sources
                .iter()
                .map(|s| (Origin::Flags, serde_json::from_str::<Source>(s).unwrap())),
        )
    }

    #[test]
    fn interface_blocks_override_defaults_whatever_the_source_order() {
        let c = build(&[
            r#"{"tls":{"internal_rpc":{"ca_file":"/rpc-ca.pem","verify_incoming":false}}}"#,
            r#"{"tls":{"defaults":{"ca_file":"/ca.pem","cert_file":"/c.pem","key_file":"/k.pem",
                       "verify_incoming":true,"verify_outgoing":true,"tls_min_version":"TLSv1_3"},
                       "https":{"cert_file":"/https.pem"}}}"#,
        ])
        .unwrap();
        let rpc = c.tls.internal_rpc();
        assert_eq!(rpc.ca_file.as_deref(), Some(Path::new("/rpc-ca.pem")));
        assert!(
            !rpc.verify_incoming,
            "the interface's false beats the defaults' true"
        );
        assert!(rpc.verify_outgoing);
        assert_eq!(rpc.min_version, TlsVersion::V1_3);
        let https = c.tls.https();
        assert_eq!(https.ca_file.as_deref(), Some(Path::new("/ca.pem")));
        assert_eq!(https.cert_file.as_deref(), Some(Path::new("/https.pem")));
        assert_eq!(https.key_file.as_deref(), Some(Path::new("/k.pem")));
        assert!(https.verify_incoming);
        assert!(!https.verify_server_hostname);
    }

    use std::path::Path;

    #[test]
    fn defaults_are_consuls() {
        let c = build(&[]).unwrap();
        let rpc = c.tls.internal_rpc();
        assert_eq!(rpc.min_version, TlsVersion::Auto);
        assert!(!rpc.verify_incoming && !rpc.verify_outgoing && !rpc.verify_server_hostname);
        assert!(!rpc.has_ca() && !rpc.has_cert());
        assert_eq!(c.ports.https, -1);
        assert_eq!(
            c.limits.https_handshake_timeout,
            std::time::Duration::from_secs(5)
        );
    }

    #[test]
    fn verify_server_hostname_implies_verify_outgoing() {
        let c = build(&[r#"{"tls":{"internal_rpc":{"verify_server_hostname":true}}}"#]).unwrap();
        let rpc = c.tls.internal_rpc();
        assert!(rpc.verify_server_hostname && rpc.verify_outgoing);
        assert!(!c.tls.https().verify_outgoing);
    }

    #[test]
    fn deprecated_keys_map_with_consuls_warnings() {
        let c = build(&[
            r#"{"ca_file":"/ca.pem","ca_path":"/cas","cert_file":"/c.pem","key_file":"/k.pem",
                "verify_incoming_rpc":true,"verify_incoming_https":false,"verify_outgoing":true,
                "verify_server_hostname":true,"tls_min_version":"tls12"}"#,
        ])
        .unwrap();
        let rpc = c.tls.internal_rpc();
        assert_eq!(rpc.ca_file.as_deref(), Some(Path::new("/ca.pem")));
        assert_eq!(rpc.ca_path.as_deref(), Some(Path::new("/cas")));
        assert_eq!(rpc.cert_file.as_deref(), Some(Path::new("/c.pem")));
        assert!(rpc.verify_incoming && rpc.verify_outgoing && rpc.verify_server_hostname);
        assert_eq!(rpc.min_version, TlsVersion::V1_2);
        assert!(!c.tls.https().verify_incoming);
        for w in [
            "The 'ca_file' field is deprecated. Use the 'tls.defaults.ca_file' field instead.",
            "The 'cert_file' field is deprecated. Use the 'tls.defaults.cert_file' field instead.",
            "The 'verify_incoming_rpc' field is deprecated. Use the 'tls.internal_rpc.verify_incoming' field instead.",
            "The 'verify_incoming_https' field is deprecated. Use the 'tls.https.verify_incoming' field instead.",
            "The 'verify_outgoing' field is deprecated. Use the 'tls.defaults.verify_outgoing' field instead.",
            "The 'verify_server_hostname' field is deprecated. Use the 'tls.internal_rpc.verify_server_hostname' field instead.",
            "'tls_min_version' value 'tls12' is deprecated, please specify 'TLSv1_2' instead",
            "The 'tls_min_version' field is deprecated. Use the 'tls.defaults.tls_min_version' field instead.",
        ] {
            assert!(c.warnings.iter().any(|x| x == w), "missing {w:?} in {:?}", c.warnings);
        }
    }

    #[test]
    fn a_new_key_in_the_same_source_wins_over_its_deprecated_spelling() {
        let c = build(&[r#"{"ca_file":"/old.pem","verify_incoming":true,
                            "tls":{"defaults":{"ca_file":"/new.pem"}}}"#])
        .unwrap();
        assert_eq!(
            c.tls.https().ca_file.as_deref(),
            Some(Path::new("/new.pem"))
        );
        // The old verify_incoming reaches defaults, and so HTTPS and RPC.
        assert!(c.tls.https().verify_incoming && c.tls.internal_rpc().verify_incoming);
        // An old key in a later source still overrides an earlier new one.
        let c = build(&[
            r#"{"tls":{"defaults":{"ca_file":"/new.pem"}}}"#,
            r#"{"ca_file":"/later.pem"}"#,
        ])
        .unwrap();
        assert_eq!(
            c.tls.https().ca_file.as_deref(),
            Some(Path::new("/later.pem"))
        );
    }

    #[test]
    fn misplaced_keys_and_bad_values_are_consuls_errors() {
        let err = |s: &str| build(&[s]).unwrap_err().to_string();
        assert_eq!(
            err(r#"{"tls":{"defaults":{"verify_server_hostname":true}}}"#),
            "verify_server_hostname is only valid in the tls.internal_rpc stanza"
        );
        assert_eq!(
            err(r#"{"tls":{"grpc":{"verify_outgoing":true}}}"#),
            "verify_outgoing is not valid in the tls.grpc stanza"
        );
        assert_eq!(
            err(r#"{"tls":{"https":{"use_auto_cert":true}}}"#),
            "use_auto_cert is only valid in the tls.grpc stanza"
        );
        assert_eq!(
            err(r#"{"tls":{"https":{"tls_min_version":"TLSv9"}}}"#),
            "tls.https.tls_min_version: invalid TLS version: no matching TLS version found for TLSv9, please specify one of [TLS_AUTO, TLSv1_0, TLSv1_1, TLSv1_2, TLSv1_3]"
        );
        assert!(err(
            r#"{"tls":{"defaults":{"tls_cipher_suites":"TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"}}}"#
        )
        .contains("is not supported"));
        assert_eq!(
            err(
                r#"{"tls":{"internal_rpc":{"tls_min_version":"TLSv1_3","tls_cipher_suites":"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"}}}"#
            ),
            "tls.internal_rpc.tls_cipher_suites: TLS 1.3 cipher suites are not configurable"
        );
        let e = serde_json::from_str::<Source>(r#"{"tls":{"defaults":{"bogus":1}}}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `bogus`"), "{e}");
        let c = build(&[r#"{"tls":{"defaults":{"tls_cipher_suites":"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"}}}"#]).unwrap();
        assert_eq!(c.tls.internal_rpc().cipher_suites.len(), 2);
    }
}
