//! Who is on the other end of a request: the client's address and the site's public origin.
//! What a reverse proxy wrote is believed only when the TCP peer is one of the configured
//! `trusted_proxies`, and only in the one header family the proxy is configured to write
//! (`proxy_header`): anyone else could write those headers to pose as another address (and
//! escape sign-in throttling, or pass the `/metrics` allow-list), and a client could send the
//! other family through a proxy that passes unknown headers on unchanged.

use std::net::IpAddr;

use actix_web::HttpRequest;
use actix_web::http::header;
use ipnet::IpNet;

pub use crate::config::ProxyHeader;

/// The reverse proxies in front of the product, and how they say who the client is.
#[derive(Debug, Clone)]
pub struct Proxies {
    pub trusted: Vec<IpNet>,
    pub header: ProxyHeader,
}

impl Proxies {
    /// No proxy is believed.
    pub fn none() -> Self {
        Self { trusted: Vec::new(), header: ProxyHeader::XForwardedFor }
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|n| n.contains(&ip))
    }

    /// Whether the request came straight from a trusted proxy.
    fn sent_by_proxy(&self, req: &HttpRequest) -> bool {
        peer(req).is_some_and(|p| self.trusts(p))
    }

    /// The client hops the proxies recorded, nearest to the client first.
    fn hops(&self, req: &HttpRequest) -> Vec<String> {
        match self.header {
            ProxyHeader::XForwardedFor => values(req, "x-forwarded-for"),
            ProxyHeader::Forwarded => forwarded_params(req, "for"),
        }
    }

    /// The scheme the nearest proxy says the browser used.
    fn scheme(&self, req: &HttpRequest) -> Option<String> {
        let last = match self.header {
            ProxyHeader::XForwardedFor => values(req, "x-forwarded-proto").pop(),
            ProxyHeader::Forwarded => forwarded_params(req, "proto").pop(),
        }?;
        let s = last.trim_matches('"').to_ascii_lowercase();
        matches!(s.as_str(), "http" | "https").then_some(s)
    }
}

/// The TCP peer's address, IPv4 clients of an IPv6 listener shown as IPv4.
fn peer(req: &HttpRequest) -> Option<IpAddr> {
    req.peer_addr().map(|a| a.ip().to_canonical())
}

/// One hop as a proxy wrote it: `203.0.113.7`, `"[2001:db8::1]:4711"`, `203.0.113.7:51234`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let h = hop.trim().trim_matches('"');
    if let Some(rest) = h.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    h.parse::<IpAddr>().ok().or_else(|| h.rsplit_once(':').and_then(|(ip, _)| ip.parse().ok()))
}

/// The comma-separated values of every instance of a header, in order.
fn values(req: &HttpRequest, name: &str) -> Vec<String> {
    req.headers()
        .get_all(name)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

/// One parameter (`for`, `proto`) of every element of every `Forwarded` header, in order.
fn forwarded_params(req: &HttpRequest, name: &str) -> Vec<String> {
    req.headers()
        .get_all(header::FORWARDED)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|element| {
            element.split(';').find_map(|pair| {
                let (k, v) = pair.split_once('=')?;
                k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
            })
        })
        .collect()
}

/// The client's address. Behind trusted proxies it is the nearest address, walking the recorded
/// hops from the peer outwards, that is not itself a trusted proxy: entries further out were
/// written by the client and prove nothing. A hop that is not an address (`unknown`, an
/// obfuscated name) stops the walk at the last proxy that could be believed.
pub fn client_ip(req: &HttpRequest, proxies: &Proxies) -> Option<IpAddr> {
    let peer = peer(req)?;
    if !proxies.trusts(peer) {
        if proxies.trusted.is_empty() {
            warn_once_about_an_unlisted_proxy(req);
        }
        return Some(peer);
    }
    let mut nearest = peer;
    for hop in proxies.hops(req).iter().rev() {
        match parse_hop(hop).map(|ip| ip.to_canonical()) {
            Some(ip) if proxies.trusts(ip) => nearest = ip,
            Some(ip) => return Some(ip),
            None => return Some(nearest),
        }
    }
    Some(nearest)
}

/// Requests carrying forwarding headers while no proxy is trusted most likely come through a
/// proxy nobody listed: every client behind it then has the proxy's address, and one guesser's
/// sign-in waits apply to all. Said once per process, in the log.
fn warn_once_about_an_unlisted_proxy(req: &HttpRequest) {
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let h = req.headers();
    if (h.contains_key("x-forwarded-for") || h.contains_key(header::FORWARDED))
        && !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed)
    {
        tracing::warn!(
            "requests carry X-Forwarded-For or Forwarded, but trusted_proxies is empty: the product sees the proxy's \
             address for every client behind it (one guesser's sign-in waits then apply to everyone). List the proxy \
             in trusted_proxies"
        );
    }
}

/// [`client_ip`] as text for the audit log and throttling keys (empty when unknown).
pub fn client_address(req: &HttpRequest, proxies: &Proxies) -> String {
    client_ip(req, proxies).map(|ip| ip.to_string()).unwrap_or_default()
}

/// The site's origin as the browser sees it (`https://ea.example.com`): the `Host` the request
/// carries (a proxy passes the browser's on: nginx `proxy_set_header Host $host`), with the
/// scheme a trusted proxy reports, else the connection's own. A forwarded host is never taken:
/// proxies pass a client's `X-Forwarded-Host` or `Forwarded: host=` on unchanged.
pub fn public_origin(req: &HttpRequest, proxies: &Proxies) -> String {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(|| req.app_config().host().to_owned());
    let own = if req.app_config().secure() { "https" } else { "http" };
    let scheme = proxies.sent_by_proxy(req).then(|| proxies.scheme(req)).flatten().unwrap_or_else(|| own.to_owned());
    format!("{scheme}://{host}")
}

/// The host (and port) part of [`public_origin`].
pub fn public_host(req: &HttpRequest, proxies: &Proxies) -> String {
    public_origin(req, proxies).split_once("://").map(|(_, h)| h.to_owned()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn proxies(list: &[&str], header: ProxyHeader) -> Proxies {
        Proxies { trusted: list.iter().map(|n| n.parse().unwrap()).collect(), header }
    }

    fn from(peer: &str) -> TestRequest {
        TestRequest::default().peer_addr(peer.parse().unwrap())
    }

    #[test]
    fn forwarded_headers_count_only_from_trusted_proxies_and_in_their_family() {
        let xff = proxies(&["10.0.0.0/8"], ProxyHeader::XForwardedFor);
        let direct = from("198.51.100.9:5000").insert_header(("x-forwarded-for", "203.0.113.7")).to_http_request();
        assert_eq!(client_address(&direct, &xff), "198.51.100.9", "a client's own header is not believed");
        let via = from("10.0.0.2:5000")
            .insert_header(("x-forwarded-for", "1.1.1.1, 203.0.113.7, 10.0.0.3"))
            .to_http_request();
        assert_eq!(client_address(&via, &xff), "203.0.113.7", "the nearest untrusted hop; the rest was the client's");
        // A client's Forwarded header passed through a proxy that appends X-Forwarded-For.
        let spoof = from("10.0.0.2:5000")
            .insert_header(("forwarded", "for=10.9.9.9"))
            .insert_header(("x-forwarded-for", "198.51.100.7"))
            .to_http_request();
        assert_eq!(client_address(&spoof, &xff), "198.51.100.7", "only the configured family counts");
        let fwd = proxies(&["10.0.0.0/8"], ProxyHeader::Forwarded);
        let rfc = from("10.0.0.2:5000")
            .insert_header(("forwarded", "for=192.0.2.60;proto=https, for=\"[2001:db8:cafe::17]:4711\""))
            .insert_header(("x-forwarded-for", "198.51.100.7"))
            .to_http_request();
        assert_eq!(client_address(&rfc, &fwd), "2001:db8:cafe::17", "RFC 7239 when configured");
        let unknown = from("10.0.0.2:5000").insert_header(("x-forwarded-for", "unknown")).to_http_request();
        assert_eq!(client_address(&unknown, &xff), "10.0.0.2");
        assert_eq!(client_address(&from("10.0.0.2:5000").to_http_request(), &xff), "10.0.0.2");
        assert_eq!(client_address(&direct, &Proxies::none()), "198.51.100.9", "no trusted proxies: the peer");
    }

    #[test]
    fn the_public_origin_takes_the_scheme_from_a_trusted_proxy_and_never_a_forwarded_host() {
        let xff = proxies(&["127.0.0.1/32"], ProxyHeader::XForwardedFor);
        let proxied = from("127.0.0.1:5000")
            .insert_header(("host", "ea.example.com"))
            .insert_header(("x-forwarded-proto", "https"))
            .insert_header(("x-forwarded-host", "evil.example"))
            .insert_header(("forwarded", "host=evil.example;proto=http"))
            .to_http_request();
        assert_eq!(public_origin(&proxied, &xff), "https://ea.example.com");
        assert_eq!(public_origin(&proxied, &Proxies::none()), "http://ea.example.com");
    }
}
