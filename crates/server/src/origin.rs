//! Who a request comes from and how the client reached the registry: the
//! client's address (for login throttling, logs and the events' actor), and
//! the scheme and host it used (for the challenge realm).
//!
//! Behind a reverse proxy every connection comes from the proxy, which says
//! who it serves in `X-Forwarded-For`, `X-Forwarded-Proto` and
//! `X-Forwarded-Host`. Those headers are believed only when the socket peer
//! is one of the configured `trusted_proxies`; from anyone else they are
//! ignored, since a client could otherwise pick the address it is throttled
//! under or the realm other clients are sent to.
//!
//! The client's address is the **rightmost** `X-Forwarded-For` entry that is
//! not itself a trusted proxy: each proxy appends the address it received
//! the connection from, so the entries to the left of the first untrusted
//! one were written by the client and prove nothing. If every entry is a
//! trusted proxy, the leftmost is the client. An entry that is not an
//! address stops the walk, and the last trusted hop counts as the client
//! (never a value the client could have written).
//!
//! A trusted proxy may say the same in the standard `Forwarded` header
//! (RFC 7239: `for=`, `proto=`, `host=` in one element per proxy); when a
//! trusted peer sends it, it is believed instead of the `X-Forwarded-*`
//! headers, with the same rules: the rightmost `for` that is not a trusted
//! proxy is the client (an obfuscated or `unknown` node stops the walk),
//! and `proto` and `host` come from the first element, the one the proxy
//! facing the client wrote.
//!
//! A `Host` (or forwarded host) is used only when it is a plain
//! `host[:port]`, so a forged one cannot smuggle a path, credentials or
//! parameters into the realm (see [`valid_host`]).
//!
//! **Architecture Invariant:** the client's address, scheme and host are
//! resolved once per request, by [`resolve_origin`], and every other module
//! reads the [`ClientOrigin`] it leaves in the request's extensions, never
//! the socket peer or the forwarded headers themselves.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderName, Request};

use crate::AppState;

/// Where a request comes from, as resolved by [`resolve_origin`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientOrigin {
    /// The client's address: the socket peer, or the address a trusted
    /// proxy forwarded for. `None` without a socket (router tests).
    pub address: Option<IpAddr>,
    /// Whether a trusted proxy said the client used `https` (`Some(true)`)
    /// or `http` (`Some(false)`); `None` means the listener's own scheme.
    pub forwarded_https: Option<bool>,
    /// The host[:port] the client addressed: a trusted proxy's
    /// `X-Forwarded-Host`, else `Host`; `None` when absent or not a plain
    /// host[:port].
    pub host: Option<String>,
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// One element of an RFC 7239 `Forwarded` header: what one proxy said
/// about the connection it received, unquoted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct ForwardedElement {
    for_node: Option<String>,
    proto: Option<String>,
    host: Option<String>,
}

/// The elements of every `Forwarded` header, in order (several headers are
/// one list); `None` when there is none. A pair with a quoted value may
/// hold commas and semicolons; malformed pairs are skipped, and a value is
/// kept only as far as it is plain text.
fn forwarded_elements(headers: &HeaderMap) -> Option<Vec<ForwardedElement>> {
    let values: Vec<&str> = headers
        .get_all(header::FORWARDED)
        .iter()
        .map(|value| value.to_str().unwrap_or(""))
        .collect();
    if values.is_empty() {
        return None;
    }
    let mut elements = Vec::new();
    for value in values {
        let mut element = ForwardedElement::default();
        let mut pair = String::new();
        let mut quoted = false;
        let mut escaped = false;
        let finish_pair = |pair: &mut String, element: &mut ForwardedElement| {
            if let Some((name, value)) = pair.split_once('=') {
                let value = value.trim().to_string();
                match name.trim().to_ascii_lowercase().as_str() {
                    "for" => element.for_node = Some(value),
                    "proto" => element.proto = Some(value),
                    "host" => element.host = Some(value),
                    _ => {}
                }
            }
            pair.clear();
        };
        for c in value.chars() {
            match c {
                _ if escaped => {
                    pair.push(c);
                    escaped = false;
                }
                '\\' if quoted => escaped = true,
                '"' => quoted = !quoted,
                ';' if !quoted => finish_pair(&mut pair, &mut element),
                ',' if !quoted => {
                    finish_pair(&mut pair, &mut element);
                    elements.push(std::mem::take(&mut element));
                }
                _ => pair.push(c),
            }
        }
        finish_pair(&mut pair, &mut element);
        elements.push(element);
    }
    Some(elements)
}

impl ClientOrigin {
    /// Resolves the origin of a request from its socket `peer` (if any),
    /// its headers, and the proxies whose forwarded headers are believed.
    pub fn resolve(
        peer: Option<IpAddr>,
        headers: &HeaderMap,
        trusted_proxies: &[ipnet::IpNet],
    ) -> ClientOrigin {
        let trusted = |address: &IpAddr| {
            let address = canonical(*address);
            trusted_proxies.iter().any(|net| net.contains(&address))
        };
        let host_header = first_value(headers, &header::HOST).filter(|host| valid_host(host));
        let Some(peer) = peer.filter(|peer| trusted(peer)) else {
            return ClientOrigin {
                address: peer,
                forwarded_https: None,
                host: host_header,
            };
        };
        // RFC 7239's header, when the proxy sends it; else the X- headers.
        let (client, proto, forwarded_host) = match forwarded_elements(headers) {
            Some(elements) => {
                let nodes: Vec<&str> = elements
                    .iter()
                    .map(|element| element.for_node.as_deref().unwrap_or(""))
                    .collect();
                let first = elements.first();
                (
                    walk_forwarded_for(peer, &nodes, &trusted),
                    first.and_then(|element| element.proto.clone()),
                    first.and_then(|element| element.host.clone()),
                )
            }
            None => (
                forwarded_client(peer, headers, &trusted),
                first_value(headers, &X_FORWARDED_PROTO),
                first_value(headers, &X_FORWARDED_HOST),
            ),
        };
        let forwarded_https = proto.and_then(|proto| match proto.to_ascii_lowercase().as_str() {
            "https" => Some(true),
            "http" => Some(false),
            _ => None,
        });
        let forwarded_host = forwarded_host.filter(|host| valid_host(host));
        ClientOrigin {
            address: Some(client),
            forwarded_https,
            host: forwarded_host.or(host_header),
        }
    }

    /// Whether the client reached the registry over HTTPS, given whether
    /// the listener speaks TLS.
    pub fn https(&self, listener_tls: bool) -> bool {
        self.forwarded_https.unwrap_or(listener_tls)
    }
}

/// The client behind the trusted proxy `peer`: the rightmost
/// `X-Forwarded-For` entry that is not trusted (see the module's comment).
fn forwarded_client(
    peer: IpAddr,
    headers: &HeaderMap,
    trusted: &dyn Fn(&IpAddr) -> bool,
) -> IpAddr {
    // Several headers are one list, in order (RFC 9110 §5.3).
    let entries: Vec<&str> = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .flat_map(|value| value.to_str().unwrap_or("").split(','))
        .map(str::trim)
        .collect();
    walk_forwarded_for(peer, &entries, trusted)
}

/// The client behind the trusted proxy `peer`, from the addresses the
/// proxies recorded, in order: the rightmost that is not trusted; an entry
/// that is not an address stops the walk at the last trusted hop.
fn walk_forwarded_for(peer: IpAddr, entries: &[&str], trusted: &dyn Fn(&IpAddr) -> bool) -> IpAddr {
    let mut client = peer;
    for entry in entries.iter().rev() {
        match parse_forwarded_address(entry) {
            Some(address) => {
                client = address;
                if !trusted(&address) {
                    break;
                }
            }
            None => break,
        }
    }
    client
}

/// An `X-Forwarded-For` entry or a `Forwarded` `for` node: an IPv4 or IPv6
/// address, possibly with a port (`192.0.2.1:4711`, `[2001:db8::1]:4711`)
/// or in brackets (`[2001:db8::1]`, as RFC 7239 writes IPv6 nodes).
fn parse_forwarded_address(entry: &str) -> Option<IpAddr> {
    let unbracketed = entry
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .unwrap_or(entry);
    unbracketed
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .map(canonical)
}

/// IPv4 addresses mapped into IPv6 (`::ffff:10.0.0.1`, as a dual-stack
/// listener reports IPv4 peers) compare as IPv4.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        IpAddr::V4(_) => address,
    }
}

/// The first comma-separated value of the first `name` header, trimmed.
/// For `X-Forwarded-Proto` and `-Host` the first value is the one the proxy
/// facing the client wrote.
fn first_value(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let value = headers.get(name)?.to_str().ok()?;
    let first = value.split(',').next()?.trim();
    (!first.is_empty()).then(|| first.to_string())
}

/// Whether `host` is a plain `host[:port]`: a DNS name or IPv4 address of
/// letters, digits, `-` and `.`, or a bracketed IPv6 address, and an
/// optional decimal port. Anything else (a path, `@`, spaces, quotes) is
/// refused, so it cannot change what a realm URL means.
pub fn valid_host(host: &str) -> bool {
    if host.is_empty() || host.len() > 255 {
        return false;
    }
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let Some((inside, after)) = rest.split_once(']') else {
            return false;
        };
        if inside.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        match after {
            "" => return true,
            _ => match after.strip_prefix(':') {
                Some(port) => ("v6", Some(port)),
                None => return false,
            },
        }
    } else {
        match host.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        }
    };
    let name_ok = !name.is_empty()
        && !name.starts_with(['-', '.'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.'));
    let port_ok =
        port.is_none_or(|port| !port.is_empty() && port.len() <= 5 && port.parse::<u16>().is_ok());
    name_ok && port_ok
}

/// The middleware that resolves each request's [`ClientOrigin`] and leaves
/// it in the request's extensions.
pub async fn resolve_origin(
    State(state): State<AppState>,
    mut request: Request<axum::body::Body>,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip());
    let origin = ClientOrigin::resolve(peer, request.headers(), &state.settings.trusted_proxies);
    request.extensions_mut().insert(origin);
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        map
    }

    #[test]
    fn client_address_table() {
        let trusted: Vec<ipnet::IpNet> = vec![
            "10.0.0.0/8".parse().unwrap(),
            "2001:db8:ffff::/48".parse().unwrap(),
        ];
        // (peer, X-Forwarded-For headers, expected client address)
        let cases: &[(&str, &[&str], &str)] = &[
            // Untrusted peers: the header is ignored.
            ("192.0.2.1", &["198.51.100.1"], "192.0.2.1"),
            ("192.0.2.1", &[], "192.0.2.1"),
            // A trusted peer without the header: the peer itself.
            ("10.0.0.1", &[], "10.0.0.1"),
            // The rightmost untrusted entry wins; what the client prepended does not count.
            ("10.0.0.1", &["198.51.100.1"], "198.51.100.1"),
            ("10.0.0.1", &["203.0.113.5, 198.51.100.1"], "198.51.100.1"),
            (
                "10.0.0.1",
                &["203.0.113.5, 198.51.100.1, 10.0.0.7"],
                "198.51.100.1",
            ),
            // Several headers are one list.
            (
                "10.0.0.1",
                &["203.0.113.5", "198.51.100.1, 10.0.0.7"],
                "198.51.100.1",
            ),
            // Only trusted hops: the leftmost.
            ("10.0.0.1", &["10.1.1.1, 10.2.2.2"], "10.1.1.1"),
            // Garbage stops the walk at the last trusted hop.
            ("10.0.0.1", &["198.51.100.1, garbage"], "10.0.0.1"),
            ("10.0.0.1", &["198.51.100.1, garbage, 10.0.0.9"], "10.0.0.9"),
            // Ports, IPv6, and IPv4 mapped into IPv6.
            ("10.0.0.1", &["198.51.100.1:4711"], "198.51.100.1"),
            ("10.0.0.1", &["[2001:db8::1]:4711"], "2001:db8::1"),
            ("::ffff:10.0.0.1", &["2001:db8::1"], "2001:db8::1"),
            ("2001:db8:ffff::1", &["::ffff:198.51.100.1"], "198.51.100.1"),
        ];
        for (peer, forwarded, expected) in cases {
            let pairs: Vec<(&str, &str)> =
                forwarded.iter().map(|v| ("x-forwarded-for", *v)).collect();
            let origin =
                ClientOrigin::resolve(Some(peer.parse().unwrap()), &headers(&pairs), &trusted);
            let expected: IpAddr = expected.parse().unwrap();
            assert_eq!(origin.address, Some(expected), "{peer} {forwarded:?}");
        }
        assert_eq!(
            ClientOrigin::resolve(
                None,
                &headers(&[("x-forwarded-for", "198.51.100.1")]),
                &trusted
            )
            .address,
            None
        );
    }

    #[test]
    fn scheme_and_host_table() {
        let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        // (peer, headers, forwarded https, host)
        type Case<'a> = (
            &'a str,
            &'a [(&'a str, &'a str)],
            Option<bool>,
            Option<&'a str>,
        );
        let cases: &[Case] = &[
            (
                "192.0.2.1",
                &[("host", "registry.example:5000")],
                None,
                Some("registry.example:5000"),
            ),
            (
                "192.0.2.1",
                &[
                    ("host", "a.example"),
                    ("x-forwarded-proto", "https"),
                    ("x-forwarded-host", "evil.example"),
                ],
                None,
                Some("a.example"),
            ),
            (
                "10.0.0.1",
                &[
                    ("host", "internal:5000"),
                    ("x-forwarded-proto", "https"),
                    ("x-forwarded-host", "registry.example"),
                ],
                Some(true),
                Some("registry.example"),
            ),
            (
                "10.0.0.1",
                &[("host", "internal"), ("x-forwarded-proto", "HTTP")],
                Some(false),
                Some("internal"),
            ),
            (
                "10.0.0.1",
                &[("x-forwarded-proto", "https, http")],
                Some(true),
                None,
            ),
            ("10.0.0.1", &[("x-forwarded-proto", "gopher")], None, None),
            // An invalid forwarded host falls back to Host; an invalid Host is dropped.
            (
                "10.0.0.1",
                &[("host", "ok.example"), ("x-forwarded-host", "a/b")],
                None,
                Some("ok.example"),
            ),
            ("192.0.2.1", &[("host", "evil.example/x?y")], None, None),
            (
                "192.0.2.1",
                &[("host", "[2001:db8::1]:443")],
                None,
                Some("[2001:db8::1]:443"),
            ),
        ];
        for (peer, pairs, https, host) in cases {
            let origin =
                ClientOrigin::resolve(Some(peer.parse().unwrap()), &headers(pairs), &trusted);
            assert_eq!(origin.forwarded_https, *https, "{peer} {pairs:?}");
            assert_eq!(origin.host.as_deref(), *host, "{peer} {pairs:?}");
        }
    }

    #[test]
    fn forwarded_header_table() {
        let trusted: Vec<ipnet::IpNet> = vec![
            "10.0.0.0/8".parse().unwrap(),
            "2001:db8:ffff::/48".parse().unwrap(),
        ];
        // (peer, Forwarded headers, client address, forwarded https, host)
        type Case<'a> = (
            &'a str,
            &'a [&'a str],
            &'a str,
            Option<bool>,
            Option<&'a str>,
        );
        let cases: &[Case] = &[
            // From an untrusted peer the header is ignored.
            ("192.0.2.1", &["for=198.51.100.1;proto=https;host=evil.example"], "192.0.2.1", None, None),
            // RFC 7239's examples, and what a proxy chain writes.
            ("10.0.0.1", &["for=192.0.2.60;proto=http;by=203.0.113.43"], "192.0.2.60", Some(false), None),
            ("10.0.0.1", &["For=\"[2001:db8:cafe::17]:4711\""], "2001:db8:cafe::17", None, None),
            ("10.0.0.1", &["for=\"[2001:db8:cafe::17]\""], "2001:db8:cafe::17", None, None),
            ("10.0.0.1", &["for=192.0.2.43, for=198.51.100.17"], "198.51.100.17", None, None),
            ("10.0.0.1", &["for=192.0.2.43", "for=198.51.100.17;proto=https"], "198.51.100.17", None, None),
            ("10.0.0.1", &["for=198.51.100.1, for=10.0.0.7"], "198.51.100.1", None, None),
            // proto and host from the first element, the client-facing proxy's.
            (
                "10.0.0.1",
                &["for=198.51.100.1;proto=https;host=registry.example, for=10.0.0.7;proto=http;host=internal"],
                "198.51.100.1",
                Some(true),
                Some("registry.example"),
            ),
            ("10.0.0.1", &["for=198.51.100.1;host=\"registry.example:8443\""], "198.51.100.1", None, Some("registry.example:8443")),
            // Obfuscated and unknown nodes stop the walk; garbage is no address.
            ("10.0.0.1", &["for=198.51.100.1, for=_hidden"], "10.0.0.1", None, None),
            ("10.0.0.1", &["for=unknown"], "10.0.0.1", None, None),
            ("10.0.0.1", &["proto=https"], "10.0.0.1", Some(true), None),
            // A quoted value keeps its commas and semicolons inside.
            ("10.0.0.1", &["for=198.51.100.1;host=\"a,b;c\""], "198.51.100.1", None, None),
            // An invalid host is not reflected; an unknown proto is no scheme.
            ("10.0.0.1", &["for=198.51.100.1;host=\"evil.example/x\";proto=gopher"], "198.51.100.1", None, None),
        ];
        for (peer, values, client, https, host) in cases {
            let pairs: Vec<(&str, &str)> = values.iter().map(|v| ("forwarded", *v)).collect();
            let origin =
                ClientOrigin::resolve(Some(peer.parse().unwrap()), &headers(&pairs), &trusted);
            let client: IpAddr = client.parse().unwrap();
            assert_eq!(origin.address, Some(client), "{peer} {values:?}");
            assert_eq!(origin.forwarded_https, *https, "{peer} {values:?}");
            assert_eq!(origin.host.as_deref(), *host, "{peer} {values:?}");
        }
        // With both, the standard header is believed and the X- ones are not.
        let both = headers(&[
            ("forwarded", "for=198.51.100.1;proto=https"),
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-proto", "http"),
        ]);
        let origin = ClientOrigin::resolve(Some("10.0.0.1".parse().unwrap()), &both, &trusted);
        assert_eq!(origin.address, Some("198.51.100.1".parse().unwrap()));
        assert_eq!(origin.forwarded_https, Some(true));
    }

    #[test]
    fn valid_host_table() {
        for good in [
            "registry.example",
            "registry.example:5000",
            "localhost",
            "127.0.0.1:5000",
            "[::1]",
            "[2001:db8::1]:443",
            "xn--bcher-kva.example",
        ] {
            assert!(valid_host(good), "{good}");
        }
        for bad in [
            "",
            "evil.example/path",
            "user@evil.example",
            "evil.example:",
            "evil.example:99999",
            "evil.example:80:80",
            "evil example",
            "evil.example\"",
            "[::1",
            "[not-v6]:80",
            "[::1]x",
            "-lead.example",
            ".example",
            "a?b",
            "a#b",
        ] {
            assert!(!valid_host(bad), "{bad}");
        }
    }
}
