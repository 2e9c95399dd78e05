//! The creator rule: a robot (access token) may do what its scopes say
//! *and* its creator may do now. Checked at every use, wherever a robot is
//! authenticated (Basic with its secret, or a registry token naming it), so
//! a creator demoted in a namespace takes their robots' rights there with
//! them, and a creator disabled or deleted leaves their robots unable to
//! authenticate at all.
//!
//! Tokens made by `berth admin token create` on the database have no
//! creator: they stand for the registry's operator and keep their scopes.

use crate::error::AuthStoreError;
use crate::model::Principal;
use crate::policy::{narrow_to_creator, NamespaceFacts, PolicyConfig};
use crate::store::AuthStore;

/// `principal` as it may act now: a robot's scopes narrowed to its
/// creator's current rights, `None` when its creator is disabled or gone;
/// any other principal unchanged.
pub async fn as_of_now(
    store: &dyn AuthStore,
    config: &PolicyConfig,
    principal: Principal,
) -> Result<Option<Principal>, AuthStoreError> {
    let Principal::AccessToken {
        name,
        scopes,
        expires_at,
        created_by: Some(creator),
    } = principal
    else {
        return Ok(Some(principal));
    };
    let Some(user) = store
        .get_user(&creator)
        .await?
        .filter(|user| !user.is_disabled())
    else {
        return Ok(None);
    };
    let creator_principal = Principal::User {
        name: user.name.clone(),
        is_admin: user.is_admin,
    };
    // One lookup per namespace the scopes name; a token has few.
    let mut facts: Vec<(String, NamespaceFacts)> = Vec::new();
    for scope in &scopes {
        let namespace = scope.namespace();
        if !facts.iter().any(|(known, _)| known == namespace) {
            let found = store.namespace_facts(namespace, Some(&user.name)).await?;
            facts.push((namespace.to_string(), found));
        }
    }
    let narrowed = narrow_to_creator(&creator_principal, config, &scopes, |namespace| {
        facts
            .iter()
            .find(|(known, _)| known == namespace)
            .map_or(NamespaceFacts::Missing, |(_, found)| *found)
    });
    Ok(Some(Principal::AccessToken {
        name,
        scopes: narrowed,
        expires_at,
        created_by: Some(creator),
    }))
}

/// A `kubernetes.io/dockerconfigjson` Secret for `imagePullSecrets`, named
/// `secret_name` (in `namespace`, when given), holding `user` and `token`
/// for `host`: what a cluster pulls a robot's images with. The CLI prints
/// it (`--k8s-secret`) and the web console shows it when a token is made.
pub fn kubernetes_pull_secret(
    secret_name: &str,
    namespace: Option<&str>,
    host: &str,
    user: &str,
    token: &crate::Secret,
) -> String {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    let auth = STANDARD.encode(format!("{user}:{}", token.expose()));
    let config = serde_json::json!({
        "auths": { host: { "username": user, "password": token.expose(), "auth": auth } }
    });
    let encoded = STANDARD.encode(config.to_string());
    let namespace = namespace
        .map(|ns| format!("  namespace: {ns}\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {secret_name}\n{namespace}type: kubernetes.io/dockerconfigjson\ndata:\n  .dockerconfigjson: {encoded}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actor::test_change;
    use crate::admin;
    use crate::meta_store::MetaAuthStore;
    use crate::model::{Role, Secret, TokenScope, Visibility};
    use crate::secret::Expiry;

    #[tokio::test]
    async fn a_robot_follows_its_creator() {
        let store = MetaAuthStore::in_memory().await;
        let change = test_change();
        let password = Secret::new("long enough password");
        for (user, is_admin) in [("root", true), ("alice", false)] {
            admin::create_user(&store, user, &password, is_admin, &change)
                .await
                .unwrap();
        }
        admin::create_namespace(&store, "team", Visibility::Private, Some("alice"), &change)
            .await
            .unwrap();
        let scopes = vec![TokenScope::parse("team:pull,push,delete").unwrap()];
        admin::create_access_token(
            &store,
            "ci",
            scopes.clone(),
            Expiry::Never,
            Some("alice"),
            None,
            &change,
        )
        .await
        .unwrap();
        let config = PolicyConfig::default();
        let robot = || Principal::AccessToken {
            name: "ci".into(),
            scopes: scopes.clone(),
            expires_at: None,
            created_by: Some("alice".into()),
        };
        let rights = |principal: Option<Principal>| match principal {
            Some(Principal::AccessToken { scopes, .. }) => {
                Some(scopes.iter().map(TokenScope::to_string).collect::<Vec<_>>())
            }
            other => panic!("{other:?}"),
        };
        let now = |store: &MetaAuthStore| {
            let store = store.clone();
            let robot = robot();
            async move { as_of_now(&store, &config, robot).await.unwrap() }
        };
        assert_eq!(
            rights(now(&store).await),
            Some(vec!["team:pull,push,delete".to_string()])
        );
        // Alice becomes a writer (root owns it now): the robot may no longer delete.
        store
            .set_member(&change, "team", "root", Role::Owner)
            .await
            .unwrap();
        store
            .set_member(&change, "team", "alice", Role::Writer)
            .await
            .unwrap();
        assert_eq!(
            rights(now(&store).await),
            Some(vec!["team:pull,push".to_string()])
        );
        store.remove_member(&change, "team", "alice").await.unwrap();
        assert_eq!(rights(now(&store).await), Some(Vec::new()));
        // Disabled or deleted, the creator takes the robot with them.
        store
            .set_member(&change, "team", "alice", Role::Owner)
            .await
            .unwrap();
        admin::set_disabled(&store, "alice", true, &change)
            .await
            .unwrap();
        assert_eq!(now(&store).await, None);
        admin::set_disabled(&store, "alice", false, &change)
            .await
            .unwrap();
        assert!(now(&store).await.is_some());
        admin::delete_user(&store, "alice", &change).await.unwrap();
        assert_eq!(now(&store).await, None);
        // A token without a creator (made on the database) keeps its scopes.
        let operator = Principal::AccessToken {
            name: "ci".into(),
            scopes: scopes.clone(),
            expires_at: None,
            created_by: None,
        };
        assert_eq!(
            as_of_now(&store, &config, operator.clone()).await.unwrap(),
            Some(operator)
        );
    }
}
