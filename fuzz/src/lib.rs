//! What several fuzz targets share: the fixed token authority the JWT target
//! verifies with, and a parser of `WWW-Authenticate` challenges that checks
//! what Berth renders can be read back exactly.

use berth_auth::{KeySet, SigningKey, TokenAuthority};

/// A throw-away Ed25519 key, fixed so that the seed corpus's tokens (made
/// by `make_jwt_seeds`) verify under it. It protects nothing.
const FUZZ_KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIFgpHFTgCF1mejZkQn4eJowxkw1+WYYzZBd/p7NIAWhR
-----END PRIVATE KEY-----
";

/// The issuer and service (audience) of the fixed authority.
pub const ISSUER: &str = "berth-fuzz";
pub const SERVICE: &str = "registry.fuzz.example";

/// The time the seed tokens were issued at, and at which the target
/// verifies: 2030-01-01T00:00:00Z. Fixed, so runs are reproducible.
pub const NOW: i64 = 1_893_456_000;

/// The authority every JWT input is verified by.
pub fn jwt_authority() -> TokenAuthority {
    let key = SigningKey::from_pkcs8_pem(FUZZ_KEY_PEM).expect("the fixed fuzz key parses");
    TokenAuthority::new(KeySet::new(key), ISSUER, SERVICE)
}

/// `time`'s view of [`NOW`].
pub fn now() -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(NOW).expect("a valid time")
}

/// Parses a challenge `Scheme name="value",name="value"` as RFC 9110
/// §11.2 writes auth-params (quoted values only, which is all Berth
/// renders): the scheme and the parameters in order, values unescaped.
/// `None` when the text is not of that form.
pub fn parse_challenge(header: &str) -> Option<(String, Vec<(String, String)>)> {
    let (scheme, mut rest) = header.split_once(' ')?;
    if scheme.is_empty() || !scheme.bytes().all(is_token_byte) {
        return None;
    }
    let mut params = Vec::new();
    loop {
        let (name, after) = rest.split_once('=')?;
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            return None;
        }
        let mut chars = after.strip_prefix('"')?.char_indices();
        let mut value = String::new();
        let end = loop {
            match chars.next()? {
                (_, '\\') => value.push(chars.next()?.1),
                (i, '"') => break i,
                (_, c) => value.push(c),
            }
        };
        params.push((name.to_string(), value));
        let tail = &after[1 + end + 1..];
        if tail.is_empty() {
            return Some((scheme.to_string(), params));
        }
        rest = tail.strip_prefix(',')?;
    }
}

/// RFC 9110 `tchar`.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse() {
        assert_eq!(
            parse_challenge(r#"Bearer realm="a\"b",service="s""#),
            Some((
                "Bearer".into(),
                vec![("realm".into(), "a\"b".into()), ("service".into(), "s".into())]
            ))
        );
        assert_eq!(parse_challenge(r#"Bearer realm="a"#), None);
        assert_eq!(parse_challenge(r#"Bearer realm="a",,x="b""#), None);
    }
}
