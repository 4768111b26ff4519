//! The embedded vault: secrets in the embedded SQLite file, sealed with XChaCha20-Poly1305 under a
//! key generated on first use and kept beside it (`vault.key`, mode 0600). The secret's name is the
//! associated data, so a ciphertext moved to another name fails to open.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use rusqlite::{OptionalExtension, params};

use super::{SecretNames, Vault};
use crate::crypto::{Sealer, random_bytes};
use crate::secret::Sensitive;
use crate::store::embedded::Db;
use crate::{Error, Result};

pub const KEY_FILE: &str = "vault.key";

pub struct EmbeddedVault {
    db: Arc<Db>,
    cipher: XChaCha20Poly1305,
    sealer: Arc<Sealer>,
}

impl EmbeddedVault {
    pub fn open(db: Arc<Db>, dir: &Path) -> Result<Self> {
        let key = load_or_create_key(&dir.join(KEY_FILE))?;
        Ok(EmbeddedVault {
            db,
            cipher: XChaCha20Poly1305::new(Key::from_slice(&key)),
            sealer: Arc::new(Sealer::derive(&key)),
        })
    }
}

fn load_or_create_key(path: &Path) -> Result<[u8; 32]> {
    let io = |e: std::io::Error| Error::internal(format!("vault key {}: {e}", path.display()));
    match std::fs::read(path) {
        Ok(bytes) => bytes
            .try_into()
            .map_err(|_| Error::internal(format!("vault key {} is not 32 bytes", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = random_bytes::<32>()?;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            match options.open(path) {
                Ok(mut f) => {
                    f.write_all(&key).map_err(io)?;
                    Ok(key)
                }
                // Another process created it first: use theirs.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => load_or_create_key(path),
                Err(e) => Err(io(e)),
            }
        }
        Err(e) => Err(io(e)),
    }
}

impl EmbeddedVault {
    /// A fresh nonce and `value` sealed under it, bound to `name` (associated data).
    fn encrypt(&self, name: &str, value: &Sensitive<String>) -> Result<([u8; 24], Vec<u8>)> {
        let nonce = random_bytes::<24>()?;
        let sealed = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: value.expose().as_bytes(),
                    aad: name.as_bytes(),
                },
            )
            .map_err(|_| Error::internal("vault encryption failed"))?;
        Ok((nonce, sealed))
    }
}

#[async_trait]
impl Vault for EmbeddedVault {
    async fn put_secret(
        &self,
        name: &str,
        value: &Sensitive<String>,
        tags: &[(&str, &str)],
        request_token: &str,
    ) -> Result<String> {
        let (nonce, sealed) = self.encrypt(name, value)?;
        let tags = serde_json::to_string(
            &tags
                .iter()
                .map(|(k, v)| (*k, *v))
                .collect::<std::collections::BTreeMap<_, _>>(),
        )
        .map_err(Error::internal)?;
        self.db.with(|c| {
            c.prepare_cached(
                "INSERT OR REPLACE INTO secrets (name, nonce, ciphertext, tags, request_token) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![name, nonce.to_vec(), sealed, tags, request_token])
        })?;
        Ok(name.to_string())
    }

    async fn update_secret(
        &self,
        name: &str,
        value: &Sensitive<String>,
        request_token: &str,
    ) -> Result<()> {
        let (nonce, sealed) = self.encrypt(name, value)?;
        // One statement: the secret must exist, and keeps its tags.
        let updated = self.db.with(|c| {
            c.prepare_cached(
                "UPDATE secrets SET nonce = ?2, ciphertext = ?3, request_token = ?4 WHERE name = ?1",
            )?
            .execute(params![name, nonce.to_vec(), sealed, request_token])
        })?;
        if updated == 1 {
            Ok(())
        } else {
            Err(Error::internal(format!(
                "vault: no secret {name} to update"
            )))
        }
    }

    async fn sealer(&self) -> Result<Arc<Sealer>> {
        Ok(self.sealer.clone())
    }

    async fn delete_secret(&self, name: &str) -> Result<()> {
        self.db.with(|c| {
            c.prepare_cached("DELETE FROM secrets WHERE name = ?1")?
                .execute([name])
        })?;
        Ok(())
    }

    async fn get_secret(&self, name: &str) -> Result<Option<Sensitive<String>>> {
        let row: Option<(Vec<u8>, Vec<u8>)> = self.db.with(|c| {
            c.prepare_cached("SELECT nonce, ciphertext FROM secrets WHERE name = ?1")?
                .query_row([name], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
        })?;
        let Some((nonce, sealed)) = row else {
            return Ok(None);
        };
        if nonce.len() != 24 {
            return Err(Error::internal("vault: bad nonce"));
        }
        let plain = self
            .cipher
            .decrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &sealed,
                    aad: name.as_bytes(),
                },
            )
            .map_err(|_| {
                Error::internal(format!("vault: secret {name} does not open with this key"))
            })?;
        String::from_utf8(plain)
            .map(|s| Some(Sensitive::new(s)))
            .map_err(Error::internal)
    }
}

#[async_trait]
impl SecretNames for EmbeddedVault {
    async fn secret_names(&self, prefix: &str) -> Result<Vec<String>> {
        self.db.with(|c| {
            c.prepare_cached(
                "SELECT name FROM secrets WHERE substr(name, 1, length(?1)) = ?1 ORDER BY name",
            )?
            .query_map([prefix], |r| r.get(0))?
            .collect()
        })
    }
}
