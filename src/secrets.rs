//! Secrets at rest: AES-256-GCM with a key derived from the master key, which lives outside the
//! database (see `config`). Stored as `nonce (12 bytes) ‖ ciphertext`; the purpose is bound as
//! associated data so that a ciphertext cannot be moved to another use.

use aes_gcm::aead::{Aead, Generate, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};

use crate::config::MasterKey;

const NONCE_LEN: usize = 12;

#[derive(Clone)]
pub struct SecretBox {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(..)")
    }
}

impl SecretBox {
    pub fn new(master: &MasterKey) -> Self {
        let key = master.derive("stored-secrets-v1");
        Self { cipher: Aes256Gcm::new_from_slice(&key).expect("a 32-byte key") }
    }

    pub fn seal(&self, purpose: &str, plaintext: &str) -> anyhow::Result<Vec<u8>> {
        let nonce = Nonce::generate();
        let ct = self
            .cipher
            .encrypt(&nonce, Payload { msg: plaintext.as_bytes(), aad: purpose.as_bytes() })
            .map_err(|_| anyhow::anyhow!("encryption failed"))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// A client secret sealed together with where it may be sent (`destination`: the hosts,
    /// tenant and client it was entered for) as associated data: a ciphertext that ends up beside
    /// another destination — two admins saving at once, a row edited by hand — does not open,
    /// so the secret cannot follow a host it was not typed for.
    pub fn seal_for(&self, purpose: &str, destination: &str, secret: &str) -> anyhow::Result<Vec<u8>> {
        self.seal(&bound(purpose, destination), secret)
    }

    /// Opens a secret sealed by [`SecretBox::seal_for`] for this destination. A secret sealed
    /// before secrets were bound to their destination (purpose alone) still opens.
    pub fn open_for(&self, purpose: &str, destination: &str, sealed: &[u8]) -> anyhow::Result<String> {
        self.open(&bound(purpose, destination), sealed).or_else(|e| self.open(purpose, sealed).map_err(|_| e))
    }

    /// What a settings form stores: a newly entered secret sealed for its destination, or else
    /// the stored one kept (forms never show the secret, so an empty field means "unchanged");
    /// one sealed before secrets were bound to their destination is sealed again, bound.
    pub fn seal_or_keep(
        &self,
        purpose: &str,
        destination: &str,
        new_secret: Option<&str>,
        stored: Option<Vec<u8>>,
    ) -> anyhow::Result<Option<Vec<u8>>> {
        match (new_secret, stored) {
            (Some(secret), _) => Ok(Some(self.seal_for(purpose, destination, secret)?)),
            (None, Some(sealed)) if self.open(&bound(purpose, destination), &sealed).is_err() => {
                match self.open(purpose, &sealed) {
                    Ok(legacy) => Ok(Some(self.seal_for(purpose, destination, &legacy)?)),
                    Err(_) => Ok(Some(sealed)),
                }
            }
            (None, stored) => Ok(stored),
        }
    }

    /// Fails (without saying more) when the data was altered or sealed under another key.
    pub fn open(&self, purpose: &str, sealed: &[u8]) -> anyhow::Result<String> {
        anyhow::ensure!(sealed.len() > NONCE_LEN, "the stored secret is damaged");
        let nonce =
            Nonce::try_from(&sealed[..NONCE_LEN]).map_err(|_| anyhow::anyhow!("the stored secret is damaged"))?;
        let pt = self
            .cipher
            .decrypt(&nonce, Payload { msg: &sealed[NONCE_LEN..], aad: purpose.as_bytes() })
            .map_err(|_| anyhow::anyhow!("the stored secret cannot be decrypted: was the master key changed?"))?;
        String::from_utf8(pt).map_err(|_| anyhow::anyhow!("the stored secret is damaged"))
    }
}

fn bound(purpose: &str, destination: &str) -> String {
    format!("{purpose}|{destination}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_sealed_for_one_destination_opens_for_no_other() {
        let b = SecretBox::new(&MasterKey::generate());
        let sealed = b.seal_for("defender", "tenant|client|https://login.microsoftonline.com/", "s3cret").unwrap();
        assert_eq!(
            b.open_for("defender", "tenant|client|https://login.microsoftonline.com/", &sealed).unwrap(),
            "s3cret"
        );
        assert!(b.open_for("defender", "tenant|client|http://127.0.0.1:9/", &sealed).is_err());
        let legacy = b.seal("defender", "old").unwrap();
        assert_eq!(b.open_for("defender", "anything", &legacy).unwrap(), "old", "sealed before binding");
        let rebound = b.seal_or_keep("defender", "here", None, Some(legacy)).unwrap().unwrap();
        assert!(b.open("defender", &rebound).is_err(), "bound when saved again");
        assert_eq!(b.open_for("defender", "here", &rebound).unwrap(), "old");
    }

    #[test]
    fn sealed_secrets_open_only_with_the_same_key_and_purpose() {
        let key = MasterKey::generate();
        let b = SecretBox::new(&key);
        let sealed = b.seal("defender", "s3cr3t-value").unwrap();
        assert!(!sealed.windows(12).any(|w| w == b"s3cr3t-value"), "no plaintext in the sealed bytes");
        assert_eq!(b.open("defender", &sealed).unwrap(), "s3cr3t-value");
        assert!(b.open("other", &sealed).is_err());
        assert!(SecretBox::new(&MasterKey::generate()).open("defender", &sealed).is_err());
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(b.open("defender", &tampered).is_err());
    }
}
