//! Registry bearer tokens: short-lived JWTs as Docker's token specification
//! describes them, signed by Berth's token endpoint and checked by its `/v2/`.
//!
//! Claims: `iss` (this registry's token issuer), `sub` (the principal, empty
//! for anonymous), `aud` (the service name from the challenge), `exp`, `nbf`,
//! `iat`, `jti` (random, for logs) and `access`, a list of
//! `{type, name, actions}` carrying only the actions actually granted.
//!
//! Algorithm: EdDSA (Ed25519). Asymmetric, so a key that can verify cannot
//! sign (a replica or a separate registry can be given public keys only); small
//! keys and fast, constant-time signatures; and one fixed algorithm, so
//! verification accepts exactly `EdDSA` and nothing else: not `none`, and not
//! `HS256` keyed with the public key (the classic algorithm-confusion attack).
//!
//! Keys are named by `kid`, derived from the public key, so a token names the
//! key that can verify it. A [`KeySet`] signs with its current key and
//! verifies with the current and any retired public keys, so rotating keys
//! does not cut off tokens issued just before (they live minutes). Where the
//! keys are kept, and how every node of a deployment comes to share them, is
//! [`crate::keys`]' business; a [`TokenAuthority`] holds the set a node
//! currently uses and can be handed a newer one at any time.
//!
//! This module relies on jsonwebtoken's `rust_crypto` backend being the only
//! one enabled in the build (it is then selected without set-up).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Instant;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

use crate::error::{AuthError, TokenRejection};
use crate::model::Secret;
use crate::scope::Scope;

/// The one algorithm we sign with and accept.
pub const ALGORITHM: Algorithm = Algorithm::EdDSA;
const ALGORITHM_NAME: &str = "EdDSA";

/// Clock skew tolerated on `exp` and `nbf`, for servers in a cluster whose
/// clocks differ slightly. The same default as Distribution.
pub const LEEWAY: Duration = Duration::seconds(60);

/// Default token lifetime: clients fetch a new token when it expires, so a
/// short life bounds how long a revoked right survives.
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::minutes(5);

/// The least time between two key reloads caused by tokens naming a key this
/// node does not know. Such a token is usually signed with a key another
/// node has just started using, and one reload finds it; the limit keeps
/// tokens with made-up kids from turning into a database query each.
pub const UNKNOWN_KEY_RELOAD_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// One `access` entry of a token: a resource and the actions granted on it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessEntry {
    #[serde(rename = "type")]
    pub resource_type: String,
    pub name: String,
    pub actions: Vec<String>,
}

impl AccessEntry {
    /// The entry granting `actions` of a requested scope.
    pub fn granted(scope: &Scope, actions: Vec<String>) -> AccessEntry {
        AccessEntry {
            resource_type: scope.resource_type.as_str().to_string(),
            name: scope.name.clone(),
            actions,
        }
    }
}

/// The claims of a registry token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    /// The principal's name; empty for anonymous.
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub nbf: i64,
    pub iat: i64,
    pub jti: String,
    #[serde(default)]
    pub access: Vec<AccessEntry>,
}

impl Claims {
    /// Whether the token grants `action` on `name` of `resource_type`.
    /// An entry listing `*` grants every action on its resource.
    pub fn allows(&self, resource_type: &str, name: &str, action: &str) -> bool {
        self.access.iter().any(|entry| {
            entry.resource_type == resource_type
                && entry.name == name
                && entry.actions.iter().any(|a| a == action || a == "*")
        })
    }

    /// Whether the token holds the catalog scope (`registry:catalog:*`),
    /// which lists what the policy lets its subject see: repositories on
    /// `/v2/_catalog`, namespaces on `GET /api/v1/namespaces` (so a client
    /// can list namespaces whose names it does not know yet). It grants
    /// nothing else: seeing one namespace still needs `pull` in it.
    pub fn allows_listing(&self) -> bool {
        self.allows("registry", "catalog", "*")
    }

    /// Whether the token lets its holder see `namespace` on the management
    /// API: it grants `pull` on the namespace or on a repository in it.
    pub fn allows_seeing_namespace(&self, namespace: &str) -> bool {
        self.access.iter().any(|entry| {
            let in_namespace = match entry.resource_type.as_str() {
                "namespace" => entry.name == namespace,
                "repository" => berth_oci::RepoName::parse(&entry.name)
                    .is_ok_and(|repository| repository.namespace() == namespace),
                _ => false,
            };
            in_namespace && entry.actions.iter().any(|a| a == "pull" || a == "*")
        })
    }
}

/// A token just issued, with what the token endpoint's answer needs.
#[derive(Clone, Debug)]
pub struct IssuedToken {
    pub token: Secret,
    pub expires_in: Duration,
    pub issued_at: OffsetDateTime,
}

/// An Ed25519 signing key with its `kid`.
#[derive(Clone)]
pub struct SigningKey {
    kid: String,
    key: ed25519_dalek::SigningKey,
    encoding: EncodingKey,
}

impl SigningKey {
    /// A fresh random key.
    pub fn generate() -> SigningKey {
        let seed: [u8; 32] = rand::random();
        SigningKey::from_dalek(ed25519_dalek::SigningKey::from_bytes(&seed))
    }

    /// Loads a PKCS#8 PEM private key (`-----BEGIN PRIVATE KEY-----`).
    pub fn from_pkcs8_pem(pem: &str) -> Result<SigningKey, AuthError> {
        let key = ed25519_dalek::SigningKey::from_pkcs8_pem(pem)
            .map_err(|e| AuthError::Key(format!("not an Ed25519 PKCS#8 PEM key: {e}")))?;
        Ok(SigningKey::from_dalek(key))
    }

    /// The private key as PKCS#8 PEM, to save.
    pub fn to_pkcs8_pem(&self) -> Secret {
        let pem = self
            .key
            .to_pkcs8_pem(LineEnding::LF)
            .expect("an Ed25519 key always encodes");
        Secret::new(pem.as_str())
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public half, which verifies this key's tokens.
    pub fn public_key(&self) -> PublicKey {
        PublicKey::from_dalek(self.key.verifying_key())
    }

    fn from_dalek(key: ed25519_dalek::SigningKey) -> SigningKey {
        let der = key.to_pkcs8_der().expect("an Ed25519 key always encodes");
        SigningKey {
            kid: kid_of(&key.verifying_key()),
            encoding: EncodingKey::from_ed_der(der.as_bytes()),
            key,
        }
    }
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({})", self.kid)
    }
}

/// An Ed25519 public key with its `kid`: what verifies a key's tokens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey {
    kid: String,
    key: ed25519_dalek::VerifyingKey,
}

impl PublicKey {
    /// Loads an SPKI PEM public key (`-----BEGIN PUBLIC KEY-----`).
    pub fn from_spki_pem(pem: &str) -> Result<PublicKey, AuthError> {
        let key = ed25519_dalek::VerifyingKey::from_public_key_pem(pem)
            .map_err(|e| AuthError::Key(format!("not an Ed25519 public key PEM: {e}")))?;
        Ok(PublicKey::from_dalek(key))
    }

    /// The key as SPKI PEM, to save.
    pub fn to_spki_pem(&self) -> String {
        self.key
            .to_public_key_pem(LineEnding::LF)
            .expect("an Ed25519 public key always encodes")
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    fn from_dalek(key: ed25519_dalek::VerifyingKey) -> PublicKey {
        PublicKey {
            kid: kid_of(&key),
            key,
        }
    }

    fn decoding_key(&self) -> DecodingKey {
        DecodingKey::from_ed_der(self.key.as_bytes())
    }
}

/// A key's id: the first 16 hex digits of the SHA-256 of its public key, so
/// it is stable across restarts and needs no storage of its own.
fn kid_of(key: &ed25519_dalek::VerifyingKey) -> String {
    hex::encode(&Sha256::digest(key.as_bytes())[..8])
}

/// The signing key and every key tokens may be verified with, by `kid`.
pub struct KeySet {
    current: SigningKey,
    verifying: HashMap<String, DecodingKey>,
}

/// Shows kids only.
impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet")
            .field("current", &self.current.kid)
            .field("verifying", &self.kids())
            .finish()
    }
}

impl KeySet {
    pub fn new(current: SigningKey) -> KeySet {
        let public = current.public_key();
        let mut keys = KeySet {
            verifying: HashMap::new(),
            current,
        };
        keys.add_public_key(&public);
        keys
    }

    /// Adds a verification-only public key, e.g. of a retired signing key.
    pub fn add_public_key(&mut self, key: &PublicKey) {
        self.verifying.insert(key.kid.clone(), key.decoding_key());
    }

    pub fn current(&self) -> &SigningKey {
        &self.current
    }

    /// The kids tokens are accepted from, sorted.
    pub fn kids(&self) -> Vec<&str> {
        let mut kids: Vec<&str> = self.verifying.keys().map(String::as_str).collect();
        kids.sort();
        kids
    }
}

/// Issues and verifies registry tokens for one service.
pub struct TokenAuthority {
    /// The keys in use. Behind a lock so that keys reloaded while the server
    /// runs replace them for every later request; a request clones the `Arc`
    /// and never holds the lock while it signs or verifies.
    keys: RwLock<Arc<KeySet>>,
    /// When a token naming an unknown key last caused a reload, for
    /// [`TokenAuthority::may_reload_for_unknown_key`].
    last_unknown_key_reload: Mutex<Option<Instant>>,
    /// `iss`: who issued the token, e.g. `berth`.
    pub issuer: String,
    /// `aud`: the `service` of the challenge, e.g. the registry's host name.
    pub service: String,
    pub lifetime: Duration,
}

impl TokenAuthority {
    pub fn new(
        keys: KeySet,
        issuer: impl Into<String>,
        service: impl Into<String>,
    ) -> TokenAuthority {
        TokenAuthority {
            keys: RwLock::new(Arc::new(keys)),
            last_unknown_key_reload: Mutex::new(None),
            issuer: issuer.into(),
            service: service.into(),
            lifetime: DEFAULT_TOKEN_LIFETIME,
        }
    }

    /// The keys in use now.
    pub fn keys(&self) -> Arc<KeySet> {
        // A panic while holding the lock cannot leave the `Arc` half
        // written, so a poisoned lock still holds a usable set.
        Arc::clone(&self.keys.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Replaces the keys: later tokens are signed with `keys`' current key
    /// and verified with its keys only.
    pub fn set_keys(&self, keys: KeySet) {
        *self.keys.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(keys);
    }

    /// Whether a token naming an unknown key may make this node reload its
    /// keys at `now`: at most once per [`UNKNOWN_KEY_RELOAD_INTERVAL`]. A
    /// `true` answer counts as the reload.
    pub fn may_reload_for_unknown_key(&self, now: Instant) -> bool {
        let mut last = self
            .last_unknown_key_reload
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match *last {
            Some(at) if now.saturating_duration_since(at) < UNKNOWN_KEY_RELOAD_INTERVAL => false,
            _ => {
                *last = Some(now);
                true
            }
        }
    }

    /// Signs a token for `subject` (`None` for anonymous) carrying `access`.
    /// `not_after` caps the expiry, so a token issued to an access token that
    /// expires in a minute lives a minute.
    pub fn issue(
        &self,
        subject: Option<&str>,
        access: Vec<AccessEntry>,
        now: OffsetDateTime,
        not_after: Option<OffsetDateTime>,
    ) -> Result<IssuedToken, AuthError> {
        let mut expires = now + self.lifetime;
        if let Some(cap) = not_after {
            expires = expires.min(cap);
        }
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: subject.unwrap_or_default().to_string(),
            aud: self.service.clone(),
            exp: expires.unix_timestamp(),
            nbf: now.unix_timestamp(),
            iat: now.unix_timestamp(),
            jti: hex::encode(rand::random::<[u8; 16]>()),
            access,
        };
        let keys = self.keys();
        let mut header = Header::new(ALGORITHM);
        header.kid = Some(keys.current.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &keys.current.encoding)
            .map_err(|e| AuthError::Key(format!("signing failed: {e}")))?;
        Ok(IssuedToken {
            token: Secret::new(token),
            expires_in: expires - now,
            issued_at: now,
        })
    }

    /// Verifies a token's algorithm, key, signature, issuer, audience and
    /// validity period at `now`, and returns its claims.
    pub fn verify(&self, token: &str, now: OffsetDateTime) -> Result<Claims, TokenRejection> {
        let kid = self.check_header(token)?;
        let keys = self.keys();
        let key = keys.verifying.get(&kid).ok_or(TokenRejection::UnknownKey)?;
        let mut validation = Validation::new(ALGORITHM);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.service]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        // Time is checked below against the `now` we are given, not the system clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        let claims = jsonwebtoken::decode::<Claims>(token, key, &validation)
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidSignature => TokenRejection::BadSignature,
                ErrorKind::InvalidAudience => TokenRejection::WrongAudience,
                ErrorKind::InvalidIssuer => TokenRejection::WrongIssuer,
                ErrorKind::InvalidAlgorithm => TokenRejection::WrongAlgorithm,
                _ => TokenRejection::Malformed,
            })?
            .claims;
        let now = now.unix_timestamp();
        let leeway = LEEWAY.whole_seconds();
        if now >= claims.exp + leeway {
            return Err(TokenRejection::Expired);
        }
        if now + leeway < claims.nbf {
            return Err(TokenRejection::NotYetValid);
        }
        // A token lives at most what this authority issues: one that claims
        // longer (made with a leaked key, or by a misconfigured issuer) is
        // refused however valid its signature, so a key's compromise buys
        // minutes, not years.
        let lifetime = self.lifetime.whole_seconds();
        if claims.exp.saturating_sub(claims.iat) > lifetime
            || claims.exp.saturating_sub(claims.nbf) > lifetime
        {
            return Err(TokenRejection::LifetimeTooLong);
        }
        Ok(claims)
    }

    /// [`TokenAuthority::verify`], then checks that the token grants `action`
    /// on `name` of `resource_type` (`InsufficientScope` otherwise).
    pub fn verify_for(
        &self,
        token: &str,
        now: OffsetDateTime,
        resource_type: &str,
        name: &str,
        action: &str,
    ) -> Result<Claims, TokenRejection> {
        let claims = self.verify(token, now)?;
        if claims.allows(resource_type, name, action) {
            Ok(claims)
        } else {
            Err(TokenRejection::InsufficientScope)
        }
    }

    /// Reads the header ourselves before trusting any library with it: the
    /// algorithm must be exactly ours (so `none` and `HS256` are refused even
    /// though the library would also refuse them), and it must name a `kid`.
    fn check_header(&self, token: &str) -> Result<String, TokenRejection> {
        let mut parts = token.split('.');
        let (Some(header), Some(_), Some(_), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenRejection::Malformed);
        };
        let bytes = URL_SAFE_NO_PAD
            .decode(header)
            .map_err(|_| TokenRejection::Malformed)?;
        let header: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&bytes).map_err(|_| TokenRejection::Malformed)?;
        if header.get("alg").and_then(|a| a.as_str()) != Some(ALGORITHM_NAME) {
            return Err(TokenRejection::WrongAlgorithm);
        }
        match header.get("kid").and_then(|k| k.as_str()) {
            Some(kid) => Ok(kid.to_string()),
            None => Err(TokenRejection::UnknownKey),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISSUER: &str = "berth";
    const SERVICE: &str = "registry.example";

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    fn authority() -> TokenAuthority {
        TokenAuthority::new(KeySet::new(SigningKey::generate()), ISSUER, SERVICE)
    }

    fn pull(name: &str) -> Vec<AccessEntry> {
        vec![AccessEntry {
            resource_type: "repository".into(),
            name: name.into(),
            actions: vec!["pull".into()],
        }]
    }

    fn claims(authority: &TokenAuthority) -> Claims {
        Claims {
            iss: authority.issuer.clone(),
            sub: "alice".into(),
            aud: authority.service.clone(),
            exp: (now() + Duration::minutes(5)).unix_timestamp(),
            nbf: now().unix_timestamp(),
            iat: now().unix_timestamp(),
            jti: "x".into(),
            access: pull("team-a/api"),
        }
    }

    /// Signs arbitrary claims with the authority's own key and kid.
    fn sign(authority: &TokenAuthority, claims: &Claims) -> String {
        let mut header = Header::new(ALGORITHM);
        header.kid = Some(authority.keys().current.kid.clone());
        jsonwebtoken::encode(&header, claims, &authority.keys().current.encoding).unwrap()
    }

    fn b64(json: &serde_json::Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(json).unwrap())
    }

    #[test]
    fn seeing_a_namespace_needs_pull_in_it() {
        let entry = |resource_type: &str, name: &str, action: &str| AccessEntry {
            resource_type: resource_type.into(),
            name: name.into(),
            actions: vec![action.into()],
        };
        // (access entry, whether it shows team-a)
        let table = [
            (entry("namespace", "team-a", "pull"), true),
            (entry("namespace", "team-a", "*"), true),
            (entry("namespace", "team-a", "manage_members"), false),
            (entry("namespace", "team-ab", "pull"), false),
            (entry("repository", "team-a/api", "pull"), true),
            (entry("repository", "team-a/x/y", "*"), true),
            (entry("repository", "team-a/api", "push"), false),
            (entry("repository", "team-ab/api", "pull"), false),
            (entry("registry", "catalog", "*"), false),
        ];
        for (entry, expected) in table {
            let claims = Claims {
                access: vec![entry.clone()],
                ..claims(&authority())
            };
            assert_eq!(
                claims.allows_seeing_namespace("team-a"),
                expected,
                "{entry:?}"
            );
        }
    }

    #[test]
    fn only_the_catalog_scope_allows_listing() {
        let entry = |resource_type: &str, name: &str, action: &str| AccessEntry {
            resource_type: resource_type.into(),
            name: name.into(),
            actions: vec![action.into()],
        };
        let table = [
            (entry("registry", "catalog", "*"), true),
            (entry("registry", "users", "*"), false),
            (entry("namespace", "catalog", "*"), false),
            (entry("namespace", "team-a", "pull"), false),
        ];
        for (entry, expected) in table {
            let claims = Claims {
                access: vec![entry.clone()],
                ..claims(&authority())
            };
            assert_eq!(claims.allows_listing(), expected, "{entry:?}");
        }
    }

    #[test]
    fn issue_and_verify() {
        let authority = authority();
        let issued = authority
            .issue(Some("alice"), pull("team-a/api"), now(), None)
            .unwrap();
        assert_eq!(issued.expires_in, DEFAULT_TOKEN_LIFETIME);
        let claims = authority.verify(issued.token.expose(), now()).unwrap();
        assert_eq!(
            (
                claims.iss.as_str(),
                claims.sub.as_str(),
                claims.aud.as_str()
            ),
            (ISSUER, "alice", SERVICE)
        );
        assert_eq!(claims.exp - claims.iat, 300);
        assert_eq!(claims.jti.len(), 32);
        authority
            .verify_for(
                issued.token.expose(),
                now(),
                "repository",
                "team-a/api",
                "pull",
            )
            .unwrap();
        // The wire format is the spec's.
        let payload = issued.token.expose().split('.').nth(1).unwrap();
        let json: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        assert_eq!(
            json["access"][0],
            serde_json::json!({"type": "repository", "name": "team-a/api", "actions": ["pull"]})
        );
        let header = issued.token.expose().split('.').next().unwrap();
        let json: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
        assert_eq!(json["alg"], "EdDSA");
        assert_eq!(json["kid"], authority.keys().current().kid());
    }

    #[test]
    fn anonymous_and_capped_tokens() {
        let authority = authority();
        let cap = now() + Duration::seconds(30);
        let issued = authority.issue(None, vec![], now(), Some(cap)).unwrap();
        assert_eq!(issued.expires_in, Duration::seconds(30));
        let claims = authority.verify(issued.token.expose(), now()).unwrap();
        assert_eq!(claims.sub, "");
        assert_eq!(claims.exp, cap.unix_timestamp());
        assert!(claims.access.is_empty());
    }

    #[test]
    fn rejects_none_algorithm() {
        let authority = authority();
        let header = serde_json::json!({"alg": "none", "typ": "JWT", "kid": authority.keys().current().kid()});
        let body = serde_json::to_value(claims(&authority)).unwrap();
        for token in [
            format!("{}.{}.", b64(&header), b64(&body)),
            format!("{}.{}.AAAA", b64(&header), b64(&body)),
        ] {
            assert_eq!(
                authority.verify(&token, now()),
                Err(TokenRejection::WrongAlgorithm)
            );
        }
        let header = serde_json::json!({"alg": "NONE", "kid": authority.keys().current().kid()});
        assert_eq!(
            authority.verify(&format!("{}.{}.", b64(&header), b64(&body)), now()),
            Err(TokenRejection::WrongAlgorithm)
        );
    }

    #[test]
    fn rejects_hs256_keyed_with_the_public_key() {
        let authority = authority();
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(authority.keys().current().kid().to_string());
        let public_pem = authority.keys().current().public_key().to_spki_pem();
        let raw_public = authority.keys().current.key.verifying_key().to_bytes();
        for secret in [public_pem.as_bytes(), &raw_public[..]] {
            let token = jsonwebtoken::encode(
                &header,
                &claims(&authority),
                &EncodingKey::from_secret(secret),
            )
            .unwrap();
            assert_eq!(
                authority.verify(&token, now()),
                Err(TokenRejection::WrongAlgorithm)
            );
        }
    }

    #[test]
    fn rejects_other_asymmetric_algorithms() {
        let authority = authority();
        let header = serde_json::json!({"alg": "ES256", "kid": authority.keys().current().kid()});
        let body = serde_json::to_value(claims(&authority)).unwrap();
        assert_eq!(
            authority.verify(&format!("{}.{}.AAAA", b64(&header), b64(&body)), now()),
            Err(TokenRejection::WrongAlgorithm)
        );
    }

    #[test]
    fn rejects_wrong_key_and_unknown_kid() {
        let authority = authority();
        let impostor = TokenAuthority::new(KeySet::new(SigningKey::generate()), ISSUER, SERVICE);
        // Signed by another key under its own kid: unknown.
        let token = impostor
            .issue(Some("alice"), pull("team-a/api"), now(), None)
            .unwrap();
        assert_eq!(
            authority.verify(token.token.expose(), now()),
            Err(TokenRejection::UnknownKey)
        );
        // Signed by another key but claiming our kid: bad signature.
        let mut header = Header::new(ALGORITHM);
        header.kid = Some(authority.keys().current().kid().to_string());
        let forged = jsonwebtoken::encode(
            &header,
            &claims(&authority),
            &impostor.keys().current.encoding,
        )
        .unwrap();
        assert_eq!(
            authority.verify(&forged, now()),
            Err(TokenRejection::BadSignature)
        );
        // No kid at all.
        let no_kid = jsonwebtoken::encode(
            &Header::new(ALGORITHM),
            &claims(&authority),
            &authority.keys().current.encoding,
        )
        .unwrap();
        assert_eq!(
            authority.verify(&no_kid, now()),
            Err(TokenRejection::UnknownKey)
        );
    }

    #[test]
    fn rejects_tampering_and_garbage() {
        let authority = authority();
        let token = sign(&authority, &claims(&authority));
        let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
        let mut widened = claims(&authority);
        widened.access[0].actions.push("push".into());
        parts[1] = b64(&serde_json::to_value(&widened).unwrap());
        assert_eq!(
            authority.verify(&parts.join("."), now()),
            Err(TokenRejection::BadSignature)
        );
        for garbage in [
            "",
            "a.b",
            "a.b.c.d",
            "!!!.b.c",
            &format!("{}.e30.", b64(&serde_json::json!([1]))),
        ] {
            assert_eq!(
                authority.verify(garbage, now()),
                Err(TokenRejection::Malformed),
                "{garbage:?}"
            );
        }
    }

    #[test]
    fn rejects_wrong_audience_and_issuer() {
        let authority = authority();
        let mut wrong_aud = claims(&authority);
        wrong_aud.aud = "other.example".into();
        assert_eq!(
            authority.verify(&sign(&authority, &wrong_aud), now()),
            Err(TokenRejection::WrongAudience)
        );
        let mut wrong_iss = claims(&authority);
        wrong_iss.iss = "someone-else".into();
        assert_eq!(
            authority.verify(&sign(&authority, &wrong_iss), now()),
            Err(TokenRejection::WrongIssuer)
        );
    }

    #[test]
    fn rejects_expired_and_not_yet_valid() {
        let authority = authority();
        let token = authority
            .issue(Some("alice"), vec![], now(), None)
            .unwrap()
            .token;
        let token = token.expose();
        // Within the leeway either side, the token is accepted.
        authority
            .verify(token, now() + Duration::minutes(5) + Duration::seconds(59))
            .unwrap();
        authority
            .verify(token, now() - Duration::seconds(60))
            .unwrap();
        assert_eq!(
            authority.verify(token, now() + Duration::minutes(6)),
            Err(TokenRejection::Expired)
        );
        assert_eq!(
            authority.verify(token, now() - Duration::seconds(61)),
            Err(TokenRejection::NotYetValid)
        );
        // A token without exp is malformed, not eternal.
        let mut body = serde_json::to_value(claims(&authority)).unwrap();
        body.as_object_mut().unwrap().remove("exp");
        let mut header = Header::new(ALGORITHM);
        header.kid = Some(authority.keys().current().kid().to_string());
        let eternal =
            jsonwebtoken::encode(&header, &body, &authority.keys().current.encoding).unwrap();
        assert_eq!(
            authority.verify(&eternal, now()),
            Err(TokenRejection::Malformed)
        );
    }

    #[test]
    fn rejects_tokens_that_claim_to_live_longer_than_issued_ones() {
        let authority = authority();
        // (seconds from iat to exp, seconds from nbf to exp, accepted)
        let table = [
            (300, 300, true),
            (299, 299, true),
            (301, 301, false),
            (300, 301, false),
            (301, 300, false),
            (86_400 * 365, 300, false),
        ];
        for (from_iat, from_nbf, accepted) in table {
            let mut long = claims(&authority);
            long.exp = now().unix_timestamp() + 60;
            long.iat = long.exp - from_iat;
            long.nbf = long.exp - from_nbf;
            let verdict = authority.verify(&sign(&authority, &long), now());
            if accepted {
                verdict.unwrap();
            } else {
                assert_eq!(
                    verdict,
                    Err(TokenRejection::LifetimeTooLong),
                    "{from_iat} {from_nbf}"
                );
            }
        }
    }

    #[test]
    fn checks_requested_scope_against_access() {
        let authority = authority();
        let mut c = claims(&authority);
        c.access.push(AccessEntry {
            resource_type: "registry".into(),
            name: "catalog".into(),
            actions: vec!["*".into()],
        });
        let token = sign(&authority, &c);
        authority
            .verify_for(&token, now(), "repository", "team-a/api", "pull")
            .unwrap();
        authority
            .verify_for(&token, now(), "registry", "catalog", "*")
            .unwrap();
        for (t, name, action) in [
            ("repository", "team-a/api", "push"),
            ("repository", "team-a/api", "delete"),
            ("repository", "team-a/web", "pull"),
            ("repository", "team-a", "pull"),
            ("registry", "team-a/api", "pull"),
        ] {
            assert_eq!(
                authority.verify_for(&token, now(), t, name, action),
                Err(TokenRejection::InsufficientScope)
            );
        }
    }

    #[test]
    fn pem_round_trip() {
        let key = SigningKey::generate();
        let pem = key.to_pkcs8_pem();
        assert!(pem.expose().starts_with("-----BEGIN PRIVATE KEY-----"));
        assert_eq!(
            SigningKey::from_pkcs8_pem(pem.expose()).unwrap().kid(),
            key.kid()
        );
        assert!(SigningKey::from_pkcs8_pem("garbage").is_err());
        let public_pem = key.public_key().to_spki_pem();
        assert!(public_pem.starts_with("-----BEGIN PUBLIC KEY-----"));
        let public = PublicKey::from_spki_pem(&public_pem).unwrap();
        assert_eq!(public, key.public_key());
        assert_eq!(public.kid(), key.kid());
        assert!(PublicKey::from_spki_pem(pem.expose()).is_err());
        assert_eq!(format!("{key:?}"), format!("SigningKey({})", key.kid()));
    }

    #[test]
    fn replacing_the_keys_rotates_them() {
        let old_key = SigningKey::generate();
        let authority = TokenAuthority::new(KeySet::new(old_key.clone()), ISSUER, SERVICE);
        let old_token = authority
            .issue(Some("alice"), vec![], now(), None)
            .unwrap()
            .token;

        // The new set signs with a new key and still verifies the old one's
        // tokens, as a rotated set does.
        let mut rotated = KeySet::new(SigningKey::generate());
        rotated.add_public_key(&old_key.public_key());
        let new_kid = rotated.current().kid().to_string();
        let stale = TokenAuthority::new(KeySet::new(old_key.clone()), ISSUER, SERVICE);
        authority.set_keys(rotated);
        assert_eq!(authority.keys().kids().len(), 2);
        authority.verify(old_token.expose(), now()).unwrap();
        let new_token = authority
            .issue(Some("alice"), vec![], now(), None)
            .unwrap()
            .token;
        let header = new_token.expose().split('.').next().unwrap();
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
        assert_eq!(header["kid"], new_kid);
        authority.verify(new_token.expose(), now()).unwrap();
        // A node that has not loaded the new key does not know its tokens.
        assert_eq!(
            stale.verify(new_token.expose(), now()),
            Err(TokenRejection::UnknownKey)
        );

        // Once the retired key is gone from the set, its tokens stop verifying.
        authority.set_keys(KeySet::new(SigningKey::generate()));
        assert_eq!(
            authority.verify(old_token.expose(), now()),
            Err(TokenRejection::UnknownKey)
        );
    }

    #[test]
    fn unknown_key_reloads_are_rate_limited() {
        let authority = authority();
        let start = Instant::now();
        assert!(authority.may_reload_for_unknown_key(start));
        assert!(!authority.may_reload_for_unknown_key(start));
        assert!(!authority.may_reload_for_unknown_key(
            start + UNKNOWN_KEY_RELOAD_INTERVAL - std::time::Duration::from_millis(1)
        ));
        assert!(authority.may_reload_for_unknown_key(start + UNKNOWN_KEY_RELOAD_INTERVAL));
        assert!(!authority.may_reload_for_unknown_key(start + UNKNOWN_KEY_RELOAD_INTERVAL));
    }
}
