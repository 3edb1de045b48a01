//! Webhooks: an event as a signed JSON POST.
//!
//! The body is `{"id", "type", "time", "endpoint", "message", "data"}`; `id` is the event's
//! outbox id, the same on every retry, so a receiver drops duplicates by it. The headers:
//!
//! - `X-EA-Event-Id`: the id again;
//! - `X-EA-Timestamp`: when this attempt was sent, in Unix seconds;
//! - `X-EA-Signature`: `sha256=` and the hex HMAC-SHA256, under the destination's secret, of
//!   the timestamp, a `.`, and the body. The timestamp is signed so that a receiver can refuse
//!   a captured request replayed later (say, older than five minutes).

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::Outgoing;

/// The signature header's value for this timestamp and body.
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The JSON body of an event.
pub fn body(e: &Outgoing) -> Vec<u8> {
    let time = chrono::DateTime::from_timestamp(e.at, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    serde_json::json!({
        "id": e.id,
        "type": e.kind,
        "time": time,
        "endpoint": e.endpoint_id,
        "message": e.message,
        "data": e.data,
    })
    .to_string()
    .into_bytes()
}

/// Posts the event; `Ok` with the receiver's status when it answered 2xx. The answer's body
/// is never read or logged: a URL pointed at an internal service reveals no more than a status.
pub async fn post(http: &reqwest::Client, url: &str, secret: &str, e: &Outgoing) -> Result<String, String> {
    let body = body(e);
    let timestamp = chrono::Utc::now().timestamp();
    let answer = http
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("X-EA-Event-Id", &e.id)
        .header("X-EA-Timestamp", timestamp.to_string())
        .header("X-EA-Signature", signature(secret, timestamp, &body))
        .body(body)
        .send()
        .await;
    match answer {
        Ok(r) if r.status().is_success() => Ok(format!("HTTP {}", r.status().as_u16())),
        Ok(r) => Err(format!("HTTP {}", r.status().as_u16())),
        // Without the URL: reqwest's error would repeat it, query string included.
        Err(e) if e.is_timeout() => Err("timed out".into()),
        Err(e) if e.is_connect() => Err("could not connect".into()),
        Err(_) => Err("the request failed".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_covers_timestamp_and_body() {
        let a = signature("s3cret", 1, b"{}");
        assert!(a.starts_with("sha256=") && a.len() == 7 + 64);
        assert_ne!(a, signature("s3cret", 2, b"{}"));
        assert_ne!(a, signature("s3cret", 1, b"{ }"));
        assert_ne!(a, signature("other", 1, b"{}"));
    }
}
