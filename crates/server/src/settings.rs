//! How the server treats connections and the proxies in front of it: the
//! part of the configuration the HTTP layer needs, handed over by the
//! binary as typed values (the binary declares and parses the keys).

use std::net::IpAddr;
use std::time::Duration;

/// Connection limits and trusted proxies.
///
/// All enforced by the accept loop ([`crate::run`], [`crate::connection`])
/// and, for `trusted_proxies`, by [`crate::origin`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerSettings {
    /// Reverse proxies whose forwarded headers are believed; empty, none
    /// are, and the peer address and `Host` stand.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// How long a kept-alive connection may wait for its next request.
    pub idle_timeout: Duration,
    /// How long a client may take to send a request's headers, so a
    /// connection that dribbles its headers cannot hold a slot forever.
    pub header_timeout: Duration,
    /// The longest pause between two reads of a request body.
    pub body_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// Connections served at once from one client address.
    pub max_connections_per_address: usize,
    /// Which plain HTTP/1 connections send blobs from their files
    /// ([`crate::sendfile`]).
    pub sendfile: Sendfile,
}

/// When a plain HTTP/1 connection sends blob bodies from their files by
/// `sendfile` rather than copying them through the server.
///
/// `sendfile` spares the server its copy of every byte, but the bytes then
/// reach the client straight from the page cache. A client on another
/// machine pays nothing for that. A client on this machine (a TLS proxy in
/// front, a node pulling from itself) copies them out of memory that is cold
/// in the processor's caches, where the copying path hands it bytes the
/// server has just touched: over loopback that costs the client more than
/// the server saves, and halved a 512 MiB pull's speed on one of the
/// machines measured (docs/performance.md, "`sendfile` by default only for
/// clients on other machines").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Sendfile {
    /// For every client but one on a loopback address.
    #[default]
    Auto,
    /// For every client.
    Always,
    /// For none.
    Never,
}

impl Sendfile {
    /// Whether a connection from `peer` (the socket's own peer, not a
    /// forwarded address: what matters is where the bytes go) sends blobs
    /// by `sendfile`.
    pub fn for_peer(self, peer: IpAddr) -> bool {
        match self {
            Sendfile::Auto => !peer.to_canonical().is_loopback(),
            Sendfile::Always => true,
            Sendfile::Never => false,
        }
    }
}

/// How the server calls out to addresses its users give (webhooks).
#[derive(Clone, Debug, Default)]
pub struct OutboundSettings {
    /// Seals webhook secrets at rest (`[auth] key_encryption_key_file`);
    /// `None` stores them as given.
    pub key_encryption: Option<berth_auth::key_encryption::KeyEncryptionKey>,
    /// Whether private, loopback and link-local addresses may be called
    /// (`[server] outbound_allow_private`).
    pub allow_private: bool,
}

/// The defaults `berth serve` declares, for servers built without the
/// binary (tests).
impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            trusted_proxies: Vec::new(),
            idle_timeout: Duration::from_secs(60),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(60),
            max_connections: 10_000,
            max_connections_per_address: 256,
            sendfile: Sendfile::Auto,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Sendfile;

    #[test]
    fn sendfile_follows_the_peer_only_when_automatic() {
        let cases = [
            ("127.0.0.1", [false, true, false]),
            ("127.3.2.1", [false, true, false]),
            ("::1", [false, true, false]),
            ("::ffff:127.0.0.1", [false, true, false]),
            ("10.0.0.7", [true, true, false]),
            ("192.168.1.20", [true, true, false]),
            ("::ffff:10.0.0.7", [true, true, false]),
            ("2001:db8::1", [true, true, false]),
        ];
        for (peer, expected) in cases {
            let peer = peer.parse().unwrap();
            for (mode, expected) in [Sendfile::Auto, Sendfile::Always, Sendfile::Never]
                .into_iter()
                .zip(expected)
            {
                assert_eq!(mode.for_peer(peer), expected, "{mode:?} for {peer}");
            }
        }
    }
}
