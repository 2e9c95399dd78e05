//! Where a registry is: what the user typed (`reg.example`,
//! `reg.example:5000`, `https://reg.example/`, `http://10.0.0.5:5000`)
//! parsed once into the base URL the client talks to and the `host[:port]`
//! key that names it in the configuration, in docker's credential files and
//! in image references.
//!
//! Plain HTTP is used only when the user asks for it with `http://`, or for a
//! loopback host (`localhost`, `127.0.0.0/8`, `::1`), as docker treats them:
//! a password or token sent in the clear to any other host could be read on
//! the way.

use std::net::IpAddr;

use url::Url;

use super::error::ClientError;

/// A registry's address, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryAddr {
    /// `host[:port]`, lowercase, without scheme: the key of the
    /// configuration and of docker's `auths`.
    pub key: String,
    /// The base URL requests are made against (`https://host[:port]`).
    pub url: Url,
}

impl RegistryAddr {
    /// Parses what the user typed. A bare host is HTTPS unless it is a
    /// loopback host, which is plain HTTP (`https://localhost:5000` to force
    /// TLS there).
    pub fn parse(input: &str) -> Result<RegistryAddr, ClientError> {
        let input = input.trim();
        let bad = |why: &str| {
            ClientError::Usage(format!(
                "{input:?} is not a registry address ({why}): give a host name, \
                 host:port, or a URL such as https://registry.example.com"
            ))
        };
        if input.is_empty() {
            return Err(bad("it is empty"));
        }
        let with_scheme = if input.contains("://") {
            input.to_string()
        } else {
            format!("https://{input}")
        };
        let mut url = Url::parse(&with_scheme).map_err(|e| bad(&e.to_string()))?;
        match url.scheme() {
            "http" | "https" => {}
            other => {
                return Err(bad(&format!(
                    "the scheme {other}:// is neither http nor https"
                )))
            }
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad(
                "credentials do not belong in the address; use berth login -u",
            ));
        }
        if url.query().is_some() || url.fragment().is_some() || !matches!(url.path(), "" | "/") {
            return Err(bad(
                "a registry address has no path; images are named separately",
            ));
        }
        let host = url
            .host_str()
            .ok_or_else(|| bad("it has no host name"))?
            .to_ascii_lowercase();
        if !input.contains("://") && is_loopback(&host) {
            url.set_scheme("http")
                .map_err(|()| bad("cannot use http"))?;
        }
        let key = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host,
        };
        url.set_path("/");
        Ok(RegistryAddr { key, url })
    }

    /// The URL of `path` (which starts with `/`) on this registry.
    pub fn join(&self, path: &str) -> String {
        let base = self.url.as_str().trim_end_matches('/');
        format!("{base}{path}")
    }
}

/// Whether `host` (as `Url` prints it: IPv6 in brackets) is a loopback host.
pub fn is_loopback(host: &str) -> bool {
    if host == "localhost" || host.ends_with(".localhost") {
        return true;
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_as_docker_treats_them() {
        // (input, key, base URL), or None when the input is refused.
        let cases: &[(&str, Option<(&str, &str)>)] = &[
            ("reg.example", Some(("reg.example", "https://reg.example/"))),
            (
                "Reg.Example:5000",
                Some(("reg.example:5000", "https://reg.example:5000/")),
            ),
            (
                "https://reg.example/",
                Some(("reg.example", "https://reg.example/")),
            ),
            (
                "https://reg.example:443",
                Some(("reg.example", "https://reg.example/")),
            ),
            (
                "http://10.0.0.5:5000",
                Some(("10.0.0.5:5000", "http://10.0.0.5:5000/")),
            ),
            (
                "localhost:5000",
                Some(("localhost:5000", "http://localhost:5000/")),
            ),
            (
                "127.0.0.1:41234",
                Some(("127.0.0.1:41234", "http://127.0.0.1:41234/")),
            ),
            ("[::1]:5000", Some(("[::1]:5000", "http://[::1]:5000/"))),
            (
                "https://localhost:5000",
                Some(("localhost:5000", "https://localhost:5000/")),
            ),
            // Not loopback: stays HTTPS without an explicit http://.
            (
                "10.0.0.5:5000",
                Some(("10.0.0.5:5000", "https://10.0.0.5:5000/")),
            ),
            ("", None),
            ("ftp://reg.example", None),
            ("https://user:pw@reg.example", None),
            ("reg.example/team-a/app", None),
            ("https://reg.example/?x=1", None),
            ("reg example", None),
        ];
        for (input, expected) in cases {
            let parsed = RegistryAddr::parse(input);
            match (parsed, expected) {
                (Ok(addr), Some((key, url))) => {
                    assert_eq!(addr.key, *key, "{input}");
                    assert_eq!(addr.url.as_str(), *url, "{input}");
                }
                (Err(e), None) => assert_eq!(e.exit_code(), 2, "{input}: {e}"),
                (other, _) => panic!("{input}: unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn paths_join_onto_the_base() {
        let addr = RegistryAddr::parse("127.0.0.1:5000").unwrap();
        assert_eq!(
            addr.join("/api/v1/users"),
            "http://127.0.0.1:5000/api/v1/users"
        );
    }
}
