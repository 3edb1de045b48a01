//! Syslog: an event as one RFC 5424 message, over UDP (one datagram each) or TCP (octet-counted
//! framing, RFC 6587 §3.4.1: the length, a space, the message). TLS is not offered yet.

use tokio::io::AsyncWriteExt;

use super::Outgoing;

/// The facility: local0 (16), the usual one for an application's own events.
const FACILITY: u8 = 16;
/// Our structured-data id. 32473 is the private enterprise number RFC 5612 sets aside for
/// documentation and examples; a site may map it as it likes.
const SD_ID: &str = "ea@32473";

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
    value.chars().fold(String::new(), |mut s, c| {
        if matches!(c, '"' | '\\' | ']') {
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

/// The RFC 5424 message: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD] MSG`.
pub fn format(e: &Outgoing) -> String {
    let time = chrono::DateTime::from_timestamp(e.at, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let host = hostname();
    let endpoint = e.endpoint_id.map_or(String::new(), |id| format!(" endpoint=\"{id}\""));
    format!(
        "<{}>1 {time} {host} endpoint-analytics {} {} [{SD_ID} id=\"{}\"{endpoint}] {}",
        FACILITY * 8 + severity(e),
        std::process::id(),
        // MSGID: printable US-ASCII, at most 32 characters (our kinds are).
        e.kind.chars().filter(|c| c.is_ascii_graphic()).take(32).collect::<String>(),
        param(&e.id),
        printable(&e.message),
    )
}

/// This host's name as RFC 5424 wants it (printable ASCII, at most 255), or `-`.
fn hostname() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let name: String = name.trim().chars().filter(|c| c.is_ascii_graphic()).take(255).collect();
    if name.is_empty() { "-".into() } else { name }
}

/// Sends the event to `host:port`.
pub async fn send(kind: &str, address: &str, e: &Outgoing) -> Result<String, String> {
    let message = format(e);
    let timeout = std::time::Duration::from_secs(10);
    let sent = tokio::time::timeout(timeout, async {
        if kind == super::SYSLOG_UDP {
            let socket = tokio::net::UdpSocket::bind("0.0.0.0:0").await?;
            socket.connect(address).await?;
            socket.send(message.as_bytes()).await.map(|_| ())
        } else {
            let mut stream = tokio::net::TcpStream::connect(address).await?;
            stream.write_all(format!("{} {message}", message.len()).as_bytes()).await?;
            stream.shutdown().await
        }
    })
    .await;
    match sent {
        Ok(Ok(())) => Ok("sent".into()),
        Ok(Err(e)) => Err(format!("could not send: {}", e.kind())),
        Err(_) => Err("timed out".into()),
    }
}
