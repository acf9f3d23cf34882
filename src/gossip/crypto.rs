//! Optional gossip encryption: AES-GCM with a 16, 24 or 32-byte key given
//! base64-encoded (`-encrypt`, `cairn keygen`). Each packet is
//! `version(1) || nonce(12) || ciphertext+tag`; a packet that does not
//! decrypt under our key is dropped, so agents with another key (or none)
//! can neither join nor read the traffic.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes128Gcm, Aes256Gcm, Nonce};
use base64::Engine;
use rand::RngExt;

const VERSION: u8 = 1;

#[derive(Clone)]
pub enum Keyring {
    Aes128(Box<Aes128Gcm>),
    Aes192(Box<aes_gcm::AesGcm<aes_gcm::aes::Aes192, aes_gcm::aead::consts::U12>>),
    Aes256(Box<Aes256Gcm>),
}

impl Keyring {
    pub fn from_base64(key: &str) -> Result<Keyring, String> {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(key.trim())
            .map_err(|e| format!("Failed to decode encryption key: {e}"))?;
        match raw.len() {
            16 => Ok(Keyring::Aes128(Box::new(
                Aes128Gcm::new_from_slice(&raw).map_err(|e| e.to_string())?,
            ))),
            24 => Ok(Keyring::Aes192(Box::new(
                aes_gcm::AesGcm::new_from_slice(&raw).map_err(|e| e.to_string())?,
            ))),
            32 => Ok(Keyring::Aes256(Box::new(
                Aes256Gcm::new_from_slice(&raw).map_err(|e| e.to_string())?,
            ))),
            n => Err(format!(
                "Invalid key length: {n} bytes (must be 16, 24 or 32)"
            )),
        }
    }

    pub fn encrypt(&self, plain: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; 12];
        rand::rng().fill(&mut nonce);
        let n = Nonce::from_slice(&nonce);
        let sealed = match self {
            Keyring::Aes128(c) => c.encrypt(n, plain),
            Keyring::Aes192(c) => c.encrypt(n, plain),
            Keyring::Aes256(c) => c.encrypt(n, plain),
        }
        .unwrap_or_default();
        let mut out = Vec::with_capacity(1 + 12 + sealed.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    pub fn decrypt(&self, packet: &[u8]) -> Option<Vec<u8>> {
        if packet.len() < 1 + 12 + 16 || packet[0] != VERSION {
            return None;
        }
        let n = Nonce::from_slice(&packet[1..13]);
        let body = &packet[13..];
        match self {
            Keyring::Aes128(c) => c.decrypt(n, body),
            Keyring::Aes192(c) => c.decrypt(n, body),
            Keyring::Aes256(c) => c.decrypt(n, body),
        }
        .ok()
    }
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
        let a = Keyring::from_base64(&keygen()).unwrap();
        let b = Keyring::from_base64(&keygen()).unwrap();
        let sealed = a.encrypt(b"hello");
        assert_eq!(a.decrypt(&sealed).unwrap(), b"hello");
        assert!(b.decrypt(&sealed).is_none());
        assert!(a.decrypt(b"hello plain text packet that is long").is_none());
        assert!(Keyring::from_base64("c2hvcnQ=").is_err());
    }
}
