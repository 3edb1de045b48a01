//! Who is on the other end of a request: the client's address and the site's public origin,
//! believing what a reverse proxy wrote (`Forwarded`, `X-Forwarded-For`, `-Proto`, `-Host`) only
//! when the TCP peer is one of the configured `trusted_proxies`. Anyone else could write those
//! headers to pose as another address (and escape sign-in throttling, or pass the `/metrics`
//! allow-list).

use std::net::IpAddr;

use actix_web::HttpRequest;
use actix_web::http::header;
use ipnet::IpNet;

/// The TCP peer's address, IPv4 clients of an IPv6 listener shown as IPv4.
fn peer(req: &HttpRequest) -> Option<IpAddr> {
    req.peer_addr().map(|a| a.ip().to_canonical())
}

fn trusted(ip: IpAddr, proxies: &[IpNet]) -> bool {
    proxies.iter().any(|n| n.contains(&ip))
}

/// One hop as a proxy wrote it: `203.0.113.7`, `"[2001:db8::1]:4711"`, `203.0.113.7:51234`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let h = hop.trim().trim_matches('"');
    if let Some(rest) = h.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    h.parse::<IpAddr>().ok().or_else(|| h.rsplit_once(':').and_then(|(ip, _)| ip.parse().ok()))
}

/// The `for=` addresses of every `Forwarded` header, nearest client first.
fn forwarded_for(req: &HttpRequest) -> Vec<String> {
    req.headers()
        .get_all(header::FORWARDED)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|element| {
            element.split(';').find_map(|pair| {
                let (k, v) = pair.split_once('=')?;
                k.trim().eq_ignore_ascii_case("for").then(|| v.trim().to_owned())
            })
        })
        .collect()
}

fn x_forwarded_for(req: &HttpRequest) -> Vec<String> {
    req.headers()
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

/// The client's address. Behind trusted proxies it is the nearest address, walking the recorded
/// hops from the peer outwards, that is not itself a trusted proxy: entries further out were
/// written by the client and prove nothing. A hop that is not an address (`unknown`, an
/// obfuscated name) stops the walk at the last proxy that could be believed.
pub fn client_ip(req: &HttpRequest, proxies: &[IpNet]) -> Option<IpAddr> {
    let peer = peer(req)?;
    if !trusted(peer, proxies) {
        return Some(peer);
    }
    let hops = match forwarded_for(req) {
        f if !f.is_empty() => f,
        _ => x_forwarded_for(req),
    };
    let mut nearest = peer;
    for hop in hops.iter().rev() {
        match parse_hop(hop).map(|ip| ip.to_canonical()) {
            Some(ip) if trusted(ip, proxies) => nearest = ip,
            Some(ip) => return Some(ip),
            None => return Some(nearest),
        }
    }
    Some(nearest)
}

/// [`client_ip`] as text for the audit log and throttling keys (empty when unknown).
pub fn client_address(req: &HttpRequest, proxies: &[IpNet]) -> String {
    client_ip(req, proxies).map(|ip| ip.to_string()).unwrap_or_default()
}

/// The site's origin as the browser sees it (`https://ea.example.com`): from a trusted proxy's
/// headers, else the request's own scheme and `Host`.
pub fn public_origin(req: &HttpRequest, proxies: &[IpNet]) -> String {
    if peer(req).is_some_and(|p| trusted(p, proxies)) {
        let ci = req.connection_info();
        return format!("{}://{}", ci.scheme(), ci.host());
    }
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(|| req.app_config().host().to_owned());
    let scheme = if req.app_config().secure() { "https" } else { "http" };
    format!("{scheme}://{host}")
}

/// The host (and port) part of [`public_origin`].
pub fn public_host(req: &HttpRequest, proxies: &[IpNet]) -> String {
    public_origin(req, proxies).split_once("://").map(|(_, h)| h.to_owned()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    fn from(peer: &str) -> TestRequest {
        TestRequest::default().peer_addr(peer.parse().unwrap())
    }

    #[test]
    fn forwarded_headers_count_only_from_trusted_proxies() {
        let proxies = nets(&["10.0.0.0/8"]);
        let direct = from("198.51.100.9:5000").insert_header(("x-forwarded-for", "203.0.113.7")).to_http_request();
        assert_eq!(client_address(&direct, &proxies), "198.51.100.9", "a client's own header is not believed");
        let via = from("10.0.0.2:5000")
            .insert_header(("x-forwarded-for", "1.1.1.1, 203.0.113.7, 10.0.0.3"))
            .to_http_request();
        assert_eq!(
            client_address(&via, &proxies),
            "203.0.113.7",
            "the nearest untrusted hop; the rest was the client's"
        );
        let fwd = from("10.0.0.2:5000")
            .insert_header(("forwarded", "for=192.0.2.60;proto=https, for=\"[2001:db8:cafe::17]:4711\""))
            .to_http_request();
        assert_eq!(client_address(&fwd, &proxies), "2001:db8:cafe::17", "Forwarded wins and is read per RFC 7239");
        let unknown = from("10.0.0.2:5000").insert_header(("x-forwarded-for", "unknown")).to_http_request();
        assert_eq!(client_address(&unknown, &proxies), "10.0.0.2");
        assert_eq!(client_address(&from("10.0.0.2:5000").to_http_request(), &proxies), "10.0.0.2");
        assert_eq!(client_address(&direct, &[]), "198.51.100.9", "no trusted proxies: the peer");
    }

    #[test]
    fn the_public_origin_comes_from_a_trusted_proxy_only() {
        let proxies = nets(&["127.0.0.1/32"]);
        let proxied = from("127.0.0.1:5000")
            .insert_header(("host", "internal:8080"))
            .insert_header(("x-forwarded-proto", "https"))
            .insert_header(("x-forwarded-host", "ea.example.com"))
            .to_http_request();
        assert_eq!(public_origin(&proxied, &proxies), "https://ea.example.com");
        assert_eq!(public_origin(&proxied, &[]), "http://internal:8080");
    }
}
