//! Minimal HS256 JWT signing and verification (RFC 7519 compact form).
//!
//! Entra signs with RS256 and publishes keys; the simulator's tokens are only ever checked by
//! the simulator itself, so a shared-secret HMAC is enough and keeps the dependency list short.
//! Clients treat the token as opaque apart from decoding the payload (e.g. to read `roles`),
//! which works the same for either algorithm.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwtError {
    #[error("token is not three base64url segments")]
    Malformed,
    #[error("unsupported token header")]
    Header,
    #[error("signature does not verify")]
    Signature,
}

pub fn sign(key: &[u8], claims: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"HS256","kid":"simulator"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string().as_bytes());
    let signing_input = format!("{header}.{payload}");
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(signing_input.as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signing_input}.{sig}")
}

/// Verify the signature and return the claims. Time-based checks are the caller's job.
pub fn verify(key: &[u8], token: &str) -> Result<Value, JwtError> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(JwtError::Malformed);
    };
    let header: Value =
        URL_SAFE_NO_PAD.decode(h).ok().and_then(|b| serde_json::from_slice(&b).ok()).ok_or(JwtError::Malformed)?;
    if header.get("alg").and_then(Value::as_str) != Some("HS256") {
        return Err(JwtError::Header);
    }
    let sig = URL_SAFE_NO_PAD.decode(s).map_err(|_| JwtError::Malformed)?;
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(h.as_bytes());
    mac.update(b".");
    mac.update(p.as_bytes());
    // verify_slice compares in constant time.
    mac.verify_slice(&sig).map_err(|_| JwtError::Signature)?;
    URL_SAFE_NO_PAD.decode(p).ok().and_then(|b| serde_json::from_slice(&b).ok()).ok_or(JwtError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trip_and_tamper() {
        let t = sign(b"k", &json!({"aud": "x", "roles": ["A"]}));
        assert_eq!(verify(b"k", &t).unwrap()["aud"], "x");
        assert_eq!(verify(b"other", &t), Err(JwtError::Signature));
        let mut bad = t.clone();
        bad.push('A');
        assert!(verify(b"k", &bad).is_err());
        assert_eq!(verify(b"k", "a.b"), Err(JwtError::Malformed));
    }
}
