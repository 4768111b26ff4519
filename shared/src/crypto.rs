//! Random handles and hashes. Every secret handle the broker hands out (state, state token, browser
//! binding, API key) is 32 bytes from the OS CSPRNG and stored only as its SHA-256.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};

use crate::secret::Sensitive;
use crate::{Error, Result};

/// Seals documents that must wait outside the vault for a while (a refreshed token set whose
/// vault write failed) so that only this deployment opens them: XChaCha20-Poly1305, a random
/// nonce per document, and the place it is kept as associated data (a sealed value moved
/// elsewhere does not open).
pub struct Sealer(XChaCha20Poly1305);

impl Sealer {
    /// A sealer from key material (a generated secret, a local key file), domain-separated so
    /// the same material used for something else yields another key.
    pub fn derive(material: &[u8]) -> Self {
        let key = Sha256::new()
            .chain_update(b"oauth-broker sealer v1\0")
            .chain_update(material)
            .finalize();
        Sealer(XChaCha20Poly1305::new(Key::from_slice(&key)))
    }

    /// `base64url(nonce || ciphertext)`.
    pub fn seal(&self, place: &str, value: &Sensitive<String>) -> Result<String> {
        let nonce = random_bytes::<24>()?;
        let sealed = self
            .0
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: value.expose().as_bytes(),
                    aad: place.as_bytes(),
                },
            )
            .map_err(|_| Error::internal("sealing failed"))?;
        Ok(URL_SAFE_NO_PAD.encode([nonce.as_slice(), &sealed].concat()))
    }

    pub fn open(&self, place: &str, sealed: &str) -> Result<Sensitive<String>> {
        let bad = || Error::internal(format!("a sealed document at {place} does not open"));
        let bytes = URL_SAFE_NO_PAD.decode(sealed).map_err(|_| bad())?;
        if bytes.len() < 24 {
            return Err(bad());
        }
        let (nonce, ciphertext) = bytes.split_at(24);
        let plain = self
            .0
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: place.as_bytes(),
                },
            )
            .map_err(|_| bad())?;
        String::from_utf8(plain)
            .map(Sensitive::new)
            .map_err(|_| bad())
    }
}

/// 32 random bytes from the OS, base64url without padding (43 characters).
pub fn random_token() -> Result<String> {
    Ok(URL_SAFE_NO_PAD.encode(random_bytes::<32>()?))
}

pub fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(|e| Error::internal(format!("OS random source: {e}")))?;
    Ok(buf)
}

/// Lower-case hex SHA-256, the form in which handles are stored and looked up.
pub fn sha256_hex(input: &str) -> String {
    format!("{:x}", Sha256::digest(input.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_document_opens_only_in_its_place_and_under_its_key() {
        let sealer = Sealer::derive(b"material");
        let doc = Sensitive::new("{\"access_token\":\"at\"}".to_string());
        let sealed = sealer.seal("CONN#org#conn_1", &doc).unwrap();
        assert!(!sealed.contains("access_token"));
        assert_eq!(sealer.open("CONN#org#conn_1", &sealed).unwrap(), doc);
        assert!(sealer.open("CONN#org#conn_2", &sealed).is_err(), "moved");
        assert!(
            Sealer::derive(b"other")
                .open("CONN#org#conn_1", &sealed)
                .is_err()
        );
        assert_ne!(
            sealer.seal("CONN#org#conn_1", &doc).unwrap(),
            sealed,
            "fresh nonce"
        );
    }

    #[test]
    fn tokens_are_43_url_safe_chars_and_differ() {
        let a = random_token().unwrap();
        let b = random_token().unwrap();
        assert_eq!(a.len(), 43);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_ne!(a, b);
    }

    #[test]
    fn sha256_is_hex_of_the_input() {
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
