//! Syslog: an event as one RFC 5424 message over UDP (one datagram each), TCP (octet-counted
//! framing, RFC 6587 §3.4.1: the length, a space, the message) or TLS (RFC 5425: the same
//! framing inside TLS, the receiver's certificate checked against the public roots and the
//! destination's own CAs). The message's text is ours (`rfc5424`) or ArcSight's Common Event
//! Format (`cef`), which many SIEMs parse without a custom rule.

use std::sync::Arc;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, RootCertStore};

use super::{CEF, Outgoing, SYSLOG_TLS, SYSLOG_UDP};
use crate::db::models::destinations::Destination;

/// The facility: local0 (16), the usual one for an application's own events.
const FACILITY: u8 = 16;
/// Our structured-data id. 32473 is the private enterprise number RFC 5612 sets aside for
/// documentation and examples; a site may map it as it likes.
const SD_ID: &str = "ea@32473";
/// What a CA field may hold: a few certificates, not a megabyte of anything.
const MAX_CA_PEM: usize = 64 * 1024;
/// The largest UDP message sent: every receiver should take 2048 octets (RFC 5426 §3.2); a
/// longer one is cut there, on a character boundary (events' texts are bounded already).
const MAX_UDP: usize = 2048;

/// The severity of an event: from its risk level when it carries one, else informational.
fn severity(e: &Outgoing) -> u8 {
    match e.data.get("level").and_then(|l| l.as_i64()) {
        Some(4..) => 2, // critical
        Some(3) => 3,   // error
        Some(2) => 4,   // warning
        Some(1) => 5,   // notice
        _ if e.kind.ends_with("failed") => 3,
        _ => 6, // informational
    }
}

/// An SD-PARAM value: `"`, `\` and `]` escaped (RFC 5424 §6.3.3).
fn param(value: &str) -> String {
    escaped(value, &['"', '\\', ']'])
}

/// `text` with a backslash before each of `special`.
fn escaped(text: &str, special: &[char]) -> String {
    text.chars().fold(String::new(), |mut s, c| {
        if special.contains(&c) {
            s.push('\\');
        }
        s.push(c);
        s
    })
}

/// No control characters (a newline would end the message early for line-based receivers).
fn printable(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// The RFC 5424 message: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD] MSG`, where
/// MSG is the event's message or, for `format = "cef"`, its CEF line.
pub fn format(e: &Outgoing, format: &str) -> String {
    let time = chrono::DateTime::from_timestamp(e.at, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let host = hostname();
    let endpoint = e.endpoint_id.map_or(String::new(), |id| format!(" endpoint=\"{id}\""));
    let text = if format == CEF { cef(e) } else { printable(&e.message) };
    format!(
        "<{}>1 {time} {host} endpoint-analytics {} {} [{SD_ID} id=\"{}\"{endpoint}] {text}",
        FACILITY * 8 + severity(e),
        std::process::id(),
        // MSGID: printable US-ASCII, at most 32 characters (our kinds are).
        e.kind.chars().filter(|c| c.is_ascii_graphic()).take(32).collect::<String>(),
        param(&e.id),
    )
}

/// The event in ArcSight's Common Event Format (version 0): `CEF:0|Vendor|Product|Version|
/// Signature ID|Name|Severity|Extension`. In the header `|` and `\` are escaped; in the
/// extension's values `\` and `=`, and line breaks are written `\n`. Severity is 0–10.
/// Extension keys are CEF's own: `rt` (milliseconds since 1970), `externalId` (the event's id,
/// the same on every retry), `msg`, and `cs1`/`cs1Label` for the endpoint's id.
pub fn cef(e: &Outgoing) -> String {
    let header = |s: &str| escaped(&printable(s), &['\\', '|']);
    let value = |s: &str| escaped(s, &['\\', '=']).replace("\r\n", "\\n").replace(['\n', '\r'], "\\n");
    let severity = match severity(e) {
        2 => 10,
        3 => 7,
        4 => 5,
        5 => 3,
        _ => 1,
    };
    // The identifiers first and the message last: a UDP datagram cut at its size limit loses
    // the end of the message, never which event or endpoint it was.
    let mut extension = format!("rt={} externalId={}", e.at.saturating_mul(1000), value(&e.id));
    if let Some(id) = e.endpoint_id {
        extension.push_str(&format!(" cs1Label=endpointId cs1={id}"));
    }
    extension.push_str(&format!(" msg={}", value(&printable(&e.message))));
    format!(
        "CEF:0|Endpoint Analytics|Endpoint Analytics|{}|{}|{}|{severity}|{extension}",
        header(env!("CARGO_PKG_VERSION")),
        header(&e.kind),
        header(&e.message.chars().take(512).collect::<String>()),
    )
}

/// This host's name as RFC 5424 wants it (printable ASCII, at most 255), or `-`.
fn hostname() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let name: String = name.trim().chars().filter(|c| c.is_ascii_graphic()).take(255).collect();
    if name.is_empty() { "-".into() } else { name }
}

/// Checks a destination's CA field: PEM certificates only, at least one, bounded in size.
pub fn check_ca_pem(pem: &str) -> Result<(), String> {
    if pem.len() > MAX_CA_PEM {
        return Err("ca_pem: at most 64 KiB of PEM certificates.".into());
    }
    // Certificates only: the reader skips other sections (a private key pasted by mistake would
    // be stored and shown again on the form).
    if pem.lines().any(|l| l.starts_with("-----BEGIN ") && l.trim_end() != "-----BEGIN CERTIFICATE-----") {
        return Err("ca_pem: only certificates (-----BEGIN CERTIFICATE-----); never a private key.".into());
    }
    let mut roots = RootCertStore::empty();
    let mut count = 0;
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        let cert = cert.map_err(|_| "ca_pem: not PEM certificates (-----BEGIN CERTIFICATE-----).".to_owned())?;
        roots.add(cert).map_err(|e| format!("ca_pem: a certificate that cannot be a trust anchor ({e})."))?;
        count += 1;
    }
    if count == 0 {
        return Err("ca_pem: no certificate found (-----BEGIN CERTIFICATE-----).".into());
    }
    Ok(())
}

/// The TLS client of a destination: the public roots, and its own CAs.
fn tls_config(ca_pem: &str) -> Result<rustls::ClientConfig, String> {
    let mut roots = RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let cert = cert.map_err(|_| "the destination's CA certificates do not read: enter them again".to_owned())?;
        roots.add(cert).map_err(|_| "a CA certificate of the destination is not usable".to_owned())?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS cannot be set up: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Writes one octet-counted frame and closes the stream's sending side.
async fn write_frame<S: AsyncWrite + Unpin>(stream: &mut S, message: &str) -> std::io::Result<()> {
    stream.write_all(format!("{} {message}", message.len()).as_bytes()).await?;
    stream.shutdown().await
}

/// Sends the event to the destination's `host:port`.
pub async fn send(d: &Destination, e: &Outgoing) -> Result<String, String> {
    let message = format(e, &d.format);
    let address = d.url.as_str();
    let timeout = std::time::Duration::from_secs(10);
    let sent = tokio::time::timeout(timeout, async {
        if d.kind == SYSLOG_UDP {
            // A socket of the receiver's address family (an IPv6 receiver needs an IPv6 one).
            let target = tokio::net::lookup_host(address)
                .await
                .map_err(io)?
                .next()
                .ok_or_else(|| format!("{address} has no address"))?;
            let local = if target.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" };
            let socket = tokio::net::UdpSocket::bind(local).await.map_err(io)?;
            socket.connect(target).await.map_err(io)?;
            socket.send(cut(&message, MAX_UDP).as_bytes()).await.map(|_| ()).map_err(io)
        } else if d.kind == SYSLOG_TLS {
            let host = address.rsplit_once(':').map_or(address, |(h, _)| h).trim_matches(['[', ']']);
            let name = ServerName::try_from(host.to_owned()).map_err(|_| format!("{host} is not a host name"))?;
            let config = tls_config(&d.ca_pem)?;
            let tcp = tokio::net::TcpStream::connect(address).await.map_err(io)?;
            let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS failed: {}", tls_reason(&e)))?;
            write_frame(&mut tls, &message).await.map_err(io)
        } else {
            let mut stream = tokio::net::TcpStream::connect(address).await.map_err(io)?;
            write_frame(&mut stream, &message).await.map_err(io)
        }
    })
    .await;
    match sent {
        Ok(Ok(())) => Ok("sent".into()),
        Ok(Err(why)) => Err(why),
        Err(_) => Err("timed out".into()),
    }
}

/// The longest start of `text` within `max` bytes that ends on a character boundary.
fn cut(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn io(e: std::io::Error) -> String {
    format!("could not send: {}", e.kind())
}

/// Why a TLS handshake failed, in words for the delivery log (rustls's own, which name the
/// certificate problem without echoing data from the peer at length).
fn tls_reason(e: &std::io::Error) -> String {
    e.get_ref().map_or_else(|| e.kind().to_string(), |inner| inner.to_string()).chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(message: &str) -> Outgoing {
        Outgoing {
            id: "42".into(),
            kind: "risk.level_changed".into(),
            at: 1_800_000_000,
            endpoint_id: Some(7),
            message: message.into(),
            data: serde_json::json!({ "level": 4 }),
        }
    }

    #[test]
    fn cef_escapes_header_and_extension_and_keeps_one_line() {
        let line = cef(&event("Risk rose | a=b \\ c\nforged"));
        assert!(line.starts_with("CEF:0|Endpoint Analytics|Endpoint Analytics|"), "{line}");
        assert!(!line.contains('\n') && !line.contains('\r'), "{line}");
        let fields: Vec<&str> = line.splitn(8, '|').collect();
        // The pipe inside the name is escaped, so the header keeps its seven separators.
        assert_eq!(fields[4], "risk.level_changed");
        assert_eq!(fields[5], "Risk rose \\");
        assert!(
            line.contains(
                "|10|rt=1800000000000 externalId=42 cs1Label=endpointId cs1=7 msg=Risk rose | a\\=b \\\\ c forged"
            ),
            "{line}"
        );
        // Cut to a datagram, a long message keeps which event and endpoint it was.
        let long = format(&event(&"é".repeat(700)), CEF);
        assert!(cut(&long, MAX_UDP).contains("externalId=42 cs1Label=endpointId cs1=7"), "{long}");
    }

    #[test]
    fn a_ca_field_must_hold_certificates() {
        let key = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert!(check_ca_pem(key).unwrap_err().contains("never a private key"));
        assert!(check_ca_pem("not a certificate").is_err());
        assert!(check_ca_pem("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").is_err());
        assert!(check_ca_pem(&"x".repeat(MAX_CA_PEM + 1)).is_err());
    }
}
