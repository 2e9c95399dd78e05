//! Access control for Berth: who is asking, what they may do, and the
//! credentials that prove it. Everything here is pure logic plus the crypto it
//! needs; HTTP and SQL live elsewhere.
//!
//! # Layout
//!
//! - [`model`]: the vocabulary: [`Role`], [`Visibility`], [`Action`],
//!   [`Principal`], and the scopes an access token carries ([`TokenScope`]).
//! - [`scope`]: Docker token scopes (`repository:team-a/api:pull,push`), parsed
//!   and rendered, tolerant of resource types we do not know.
//! - [`policy`]: [`authorize`], a pure function from principal, namespace facts,
//!   repository and action to a [`Decision`]. The one place where rights are decided.
//! - [`password`]: argon2id hashing and verification of user passwords.
//! - [`secret`]: opaque high-entropy secrets: access (robot) tokens and refresh
//!   tokens, stored only as SHA-256 hashes; expiry parsing (`30d`).
//! - [`jwt`]: the short-lived registry bearer tokens (EdDSA JWTs per Docker's
//!   token spec), the [`KeySet`] a [`TokenAuthority`] signs and verifies
//!   with, replaceable while it serves.
//! - [`keys`]: the signing keys kept in the store and shared by every node:
//!   the first key (imported from an older install's key file), rotation,
//!   and how long a retired key keeps verifying.
//! - [`challenge`]: `WWW-Authenticate` rendering, `Authorization` header parsing,
//!   and the token endpoint's GET query and OAuth2 POST form as typed requests.
//! - [`throttle`]: failed-login throttling per (account, address) and per address.
//! - [`verified`]: passwords verified in the last few minutes, so that Basic
//!   credentials on every request cost one argon2 verification, not one each.
//! - [`hashing`]: password hashing on the blocking pool, with a bound on the
//!   attempts in flight ([`HashingPool`]).
//! - [`store`]: the [`AuthStore`] trait the metadata store implements, its
//!   records, and refresh-token issuance.
//! - [`login`]: credentials to [`Principal`] over an [`AuthStore`] and the
//!   throttle: the one path every password, access token and refresh token takes.
//! - [`meta_store`]: [`MetaAuthStore`], the [`AuthStore`] over `berth-meta`'s
//!   access-control tables (plain rows there; roles, scopes and hashes here).
//! - [`actor`]: who makes a change ([`Actor`], [`Change`]), which every
//!   write to the access-control records takes, so the event stream (and the
//!   audit trail reading it) knows who changed what.
//! - [`admin`]: creating users (with their personal namespace), namespaces and
//!   access tokens with the checks both the CLI and the management API need.
//! - [`error`]: [`AuthError`], the crate's one error type, and
//!   [`AuthStoreError`], the store's (below every other module, so nothing imports in a circle).
//!
//! Why the split: the server needs to answer three questions on every request
//! (who is this, may they do it, how do I say no), and each answer is a module
//! here that takes plain values, so it is tested without a socket or a database.
//!
//! **Architecture Invariant:** no HTTP framework types and no SQL. Time is
//! always a parameter (`now`), never read inside a decision, so tests use fake
//! time. Secrets are wrapped in [`Secret`], whose `Debug` never shows them.

pub mod actor;
pub mod admin;
pub mod challenge;
pub mod error;
pub mod hashing;
pub mod jwt;
pub mod key_encryption;
pub mod keys;
pub mod login;
pub mod meta_store;
pub mod model;
pub mod password;
pub mod policy;
pub mod robots;
pub mod scope;
pub mod secret;
pub mod store;
pub mod throttle;
pub mod verified;

pub use actor::{change_at, Actor, ActorKind, Change};
pub use challenge::{
    Challenge, ChallengeError, Credentials, Grant, TokenGetRequest, TokenPostRequest, TokenResponse,
};
pub use error::{AuthError, AuthStoreError, TokenRejection};
pub use hashing::{Busy, HashingPool};
pub use jwt::{AccessEntry, Claims, KeySet, PublicKey, SigningKey, TokenAuthority};
pub use login::{
    login_with_password, login_with_refresh_token, LoginContext, LoginError, LoginGuards,
};
pub use meta_store::MetaAuthStore;
pub use model::{Action, Principal, Role, Secret, TokenScope, TokenTarget, Visibility};
pub use policy::{authorize, Decision, Denial, NamespaceFacts, PolicyConfig};
pub use scope::{NamespaceAction, RegistryResource, ResourceType, Scope};
pub use secret::{Expiry, SecretHash};
pub use store::AuthStore;
pub use throttle::{LoginThrottle, ThrottleConfig};
