//! How the server treats connections and the proxies in front of it: the
//! part of the configuration the HTTP layer needs, handed over by the
//! binary as typed values (the binary declares and parses the keys).

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
    /// Whether plain HTTP/1 connections send blobs from their files
    /// ([`crate::sendfile`]).
    pub sendfile: bool,
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
            sendfile: true,
        }
    }
}
