//! Who makes a change, as the event stream records it: a [`Principal`] seen
//! from the network becomes an [`Actor`], and with a time a [`Change`],
//! which every write to the access-control records takes (the audit trail
//! reads the events they write).

use std::net::IpAddr;

use time::OffsetDateTime;

pub use berth_meta::{Actor, ActorKind, Change};

use crate::model::Principal;

impl Principal {
    /// The actor this principal is when it changes something, from
    /// `address` when the change came over the network.
    pub fn actor(&self, address: Option<IpAddr>) -> Actor {
        let actor = match self {
            Principal::User { name, .. } => Actor::user(name.clone()),
            Principal::AccessToken { name, .. } => Actor::robot(name.clone()),
            Principal::Anonymous => Actor::anonymous(),
        };
        match address {
            Some(address) => actor.from_address(address),
            None => actor,
        }
    }
}

/// The change `actor` makes at `at`.
pub fn change_at(actor: &Actor, at: OffsetDateTime) -> Change {
    Change::new(actor.clone(), at.unix_timestamp())
}

/// The time of `change`, as this crate keeps times.
pub(crate) fn change_time(change: &Change) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(change.at).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// A change made by a test.
#[cfg(test)]
pub(crate) fn test_change() -> Change {
    Change::new(Actor::system("test"), 1_800_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principals_become_actors() {
        let address: IpAddr = "192.0.2.1".parse().unwrap();
        let cases = [
            (
                Principal::User {
                    name: "alice".into(),
                    is_admin: false,
                },
                ActorKind::User,
                Some("alice"),
            ),
            (
                Principal::AccessToken {
                    name: "ci".into(),
                    scopes: Vec::new(),
                    expires_at: None,
                    created_by: None,
                },
                ActorKind::Robot,
                Some("ci"),
            ),
            (Principal::Anonymous, ActorKind::Anonymous, None),
        ];
        for (principal, kind, name) in cases {
            let actor = principal.actor(Some(address));
            assert_eq!(actor.kind, kind);
            assert_eq!(actor.name.as_deref(), name);
            assert_eq!(actor.address, Some(address));
            assert_eq!(principal.actor(None).address, None);
        }
        let at = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let change = change_at(&Actor::system("admin"), at);
        assert_eq!(change.at, 1_800_000_000);
        assert_eq!(change_time(&change), at);
    }
}
