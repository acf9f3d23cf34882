//! One gossip encryption key: AES-GCM with a 16, 24 or 32-byte key given
//! base64-encoded (`-encrypt`, `cairn keygen`, the keyring endpoints). Each
//! sealed packet is `version(1) || nonce(12) || ciphertext+tag`; a packet
//! that does not open under a key is simply not that key's. The keyring
//! ([`super::keyring`]) holds several of these.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes128Gcm, Aes256Gcm, Nonce};
use base64::Engine;
use rand::RngExt;

const VERSION: u8 = 1;

/// The smallest sealed packet: version, nonce and the GCM tag.
const SEALED_OVERHEAD: usize = 1 + 12 + 16;

type Aes192Gcm = aes_gcm::AesGcm<aes_gcm::aes::Aes192, aes_gcm::aead::consts::U12>;

#[derive(Clone)]
enum Cipher {
    Aes128(Box<Aes128Gcm>),
    Aes192(Box<Aes192Gcm>),
    Aes256(Box<Aes256Gcm>),
}

/// Why a key was refused, in memberlist's and Go's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Go's `base64.CorruptInputError`.
    #[error("illegal base64 data at input byte {0}")]
    Base64(usize),
    /// memberlist's `ValidateKey`.
    #[error("key size must be 16, 24 or 32 bytes")]
    Size,
}

/// An AES-GCM gossip key and the raw bytes it was made from (to list it
/// and to tell two keys apart).
#[derive(Clone)]
pub struct Key {
    raw: Vec<u8>,
    cipher: Cipher,
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.raw == other.raw
    }
}

impl Eq for Key {}

impl std::fmt::Debug for Key {
    // Never print key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({} bytes)", self.raw.len())
    }
}

impl Key {
    pub fn from_base64(key: &str) -> Result<Key, KeyError> {
        Key::from_bytes(&decode_base64(key)?)
    }

    pub fn from_bytes(raw: &[u8]) -> Result<Key, KeyError> {
        let cipher = match raw.len() {
            16 => Cipher::Aes128(Box::new(
                Aes128Gcm::new_from_slice(raw).map_err(|_| KeyError::Size)?,
            )),
            24 => Cipher::Aes192(Box::new(
                Aes192Gcm::new_from_slice(raw).map_err(|_| KeyError::Size)?,
            )),
            32 => Cipher::Aes256(Box::new(
                Aes256Gcm::new_from_slice(raw).map_err(|_| KeyError::Size)?,
            )),
            _ => return Err(KeyError::Size),
        };
        Ok(Key {
            raw: raw.to_vec(),
            cipher,
        })
    }

    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.raw)
    }

    pub fn seal(&self, plain: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; 12];
        rand::rng().fill(&mut nonce);
        let n = Nonce::from_slice(&nonce);
        let sealed = match &self.cipher {
            Cipher::Aes128(c) => c.encrypt(n, plain),
            Cipher::Aes192(c) => c.encrypt(n, plain),
            Cipher::Aes256(c) => c.encrypt(n, plain),
        }
        .unwrap_or_default();
        let mut out = Vec::with_capacity(1 + 12 + sealed.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    pub fn open(&self, packet: &[u8]) -> Option<Vec<u8>> {
        if packet.len() < SEALED_OVERHEAD || packet[0] != VERSION {
            return None;
        }
        let n = Nonce::from_slice(&packet[1..13]);
        let body = &packet[13..];
        match &self.cipher {
            Cipher::Aes128(c) => c.decrypt(n, body),
            Cipher::Aes192(c) => c.decrypt(n, body),
            Cipher::Aes256(c) => c.decrypt(n, body),
        }
        .ok()
    }
}

/// Decodes standard padded base64 as Go's `base64.StdEncoding` does:
/// `\r` and `\n` are skipped, unused trailing bits are accepted, and a
/// failure names the input byte Go's decoder stops at, so the error text
/// is Consul's (`illegal base64 data at input byte 4`).
pub fn decode_base64(s: &str) -> Result<Vec<u8>, KeyError> {
    if let Some(at) = go_corrupt_offset(s.as_bytes()) {
        return Err(KeyError::Base64(at));
    }
    let compact: Vec<u8> = s.bytes().filter(|b| *b != b'\r' && *b != b'\n').collect();
    let lenient = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::RequireCanonical),
    );
    lenient.decode(compact).map_err(|_| KeyError::Base64(0))
}

/// Where Go's padded standard decoder reports corrupt input, if anywhere
/// (its `decodeQuantum`, quantum by quantum).
fn go_corrupt_offset(src: &[u8]) -> Option<usize> {
    let is_symbol = |b: u8| b.is_ascii_alphanumeric() || b == b'+' || b == b'/';
    let is_newline = |b: u8| b == b'\r' || b == b'\n';
    let mut si = 0;
    while si < src.len() {
        let mut j = 0;
        while j < 4 {
            if si == src.len() {
                return if j == 0 { None } else { Some(si - j) };
            }
            let b = src[si];
            si += 1;
            if is_symbol(b) {
                j += 1;
                continue;
            }
            if is_newline(b) {
                continue;
            }
            if b != b'=' || j < 2 {
                return Some(si - 1);
            }
            if j == 2 {
                // "==" is expected; the first "=" is consumed.
                while si < src.len() && is_newline(src[si]) {
                    si += 1;
                }
                if si == src.len() {
                    return Some(src.len());
                }
                if src[si] != b'=' {
                    return Some(si - 1);
                }
                si += 1;
            }
            while si < src.len() && is_newline(src[si]) {
                si += 1;
            }
            return (si < src.len()).then_some(si);
        }
    }
    None
}

/// A fresh random 32-byte key, base64-encoded (`cairn keygen`).
pub fn keygen() -> String {
    let mut key = [0u8; 32];
    rand::rng().fill(&mut key);
    base64::engine::general_purpose::STANDARD.encode(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_wrong_key() {
        let a = Key::from_base64(&keygen()).unwrap();
        let b = Key::from_base64(&keygen()).unwrap();
        let sealed = a.seal(b"hello");
        assert_eq!(a.open(&sealed).unwrap(), b"hello");
        assert!(b.open(&sealed).is_none());
        assert!(a.open(b"hello plain text packet that is long").is_none());
        assert_eq!(Key::from_base64("c2hvcnQ="), Err(KeyError::Size));
        for len in [16, 24, 32] {
            let raw = vec![7u8; len];
            let k = Key::from_bytes(&raw).unwrap();
            assert_eq!(Key::from_base64(&k.to_base64()).unwrap(), k);
            assert_eq!(k.open(&k.seal(b"x")).unwrap(), b"x");
        }
    }

    #[test]
    fn base64_errors_name_the_byte_go_names() {
        // Offsets as Go's base64.StdEncoding.DecodeString reports them.
        let cases = [
            ("abc", 0),
            ("abcde", 4),
            ("abcdef", 4),
            ("abcdefg", 4),
            ("ab!d", 2),
            ("a===", 1),
            ("ab=", 3),
            ("ab=x", 2),
            ("abc=x", 4),
            ("abcd====", 4),
            ("not base64!", 3),
        ];
        for (input, at) in cases {
            assert_eq!(decode_base64(input), Err(KeyError::Base64(at)), "{input:?}");
        }
        assert_eq!(
            KeyError::Base64(4).to_string(),
            "illegal base64 data at input byte 4"
        );
        assert_eq!(decode_base64("").unwrap(), Vec::<u8>::new());
        assert_eq!(decode_base64("aGk=").unwrap(), b"hi");
        assert_eq!(decode_base64("aG\nk=\r\n").unwrap(), b"hi");
        // Go is not strict: unused trailing bits are accepted.
        assert_eq!(decode_base64("aGl=").unwrap(), b"hi");
    }
}
