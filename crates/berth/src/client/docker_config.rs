//! Docker's credential format, written in two places: the
//! `kubernetes.io/dockerconfigjson` Secret a cluster pulls with (`berth token
//! add --k8s-secret`, `berth admin token create --k8s-secret`), and the
//! `auths` of docker's `config.json` and podman's `auth.json` that `berth
//! login --docker` fills so those clients push without a login of their own.

use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use berth_auth::Secret;
use serde_json::{Map, Value};

use super::config::write_private;
use super::error::ClientError;

/// A `kubernetes.io/dockerconfigjson` Secret for `imagePullSecrets`, named
/// `secret_name` (in `namespace`, when given), holding `user` and `token`
/// for `host` (written once, in `berth_auth`, for the console too).
pub use berth_auth::robots::kubernetes_pull_secret as kubernetes_secret;

/// Sets `auths[host]` in the docker/podman credential file at `path` to an
/// identity token (an OAuth2 refresh token, which docker, podman, skopeo and
/// buildah exchange at the registry's token endpoint themselves), keeping
/// everything else the file holds.
pub fn store_identity_token(
    path: &Path,
    host: &str,
    user: &str,
    refresh_token: &Secret,
) -> Result<(), ClientError> {
    let mut root = read_json_object(path)?;
    let auths = root
        .entry("auths")
        .or_insert_with(|| Value::Object(Map::new()));
    if !auths.is_object() {
        *auths = Value::Object(Map::new());
    }
    auths.as_object_mut().expect("auths is an object").insert(
        host.to_string(),
        serde_json::json!({
            // Docker writes `user:` with an identity token; clients take the
            // token, not a password, from the entry.
            "auth": STANDARD.encode(format!("{user}:")),
            "identitytoken": refresh_token.expose(),
        }),
    );
    write_json_object(path, &root)
}

/// Removes `auths[host]` from the credential file at `path`, if the file
/// exists. Returns whether there was an entry.
pub fn remove_entry(path: &Path, host: &str) -> Result<bool, ClientError> {
    if !path.exists() {
        return Ok(false);
    }
    let mut root = read_json_object(path)?;
    let removed = root
        .get_mut("auths")
        .and_then(Value::as_object_mut)
        .and_then(|auths| auths.remove(host))
        .is_some();
    if removed {
        write_json_object(path, &root)?;
    }
    Ok(removed)
}

fn read_json_object(path: &Path) -> Result<Map<String, Value>, ClientError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) if text.trim().is_empty() => return Ok(Map::new()),
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Map::new()),
        Err(e) => {
            return Err(ClientError::Local(format!(
                "cannot read {}: {e}: check its permissions",
                path.display()
            )))
        }
    };
    match serde_json::from_str(&text) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(ClientError::Local(format!(
            "{} is not a JSON object, so berth will not change it: fix it or move it away",
            path.display()
        ))),
    }
}

fn write_json_object(path: &Path, root: &Map<String, Value>) -> Result<(), ClientError> {
    let text = serde_json::to_string_pretty(root).expect("JSON serializes");
    write_private(path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_secret(yaml: &str) -> Value {
        let encoded = yaml
            .lines()
            .find_map(|line| line.trim().strip_prefix(".dockerconfigjson: "))
            .unwrap();
        serde_json::from_slice(&STANDARD.decode(encoded).unwrap()).unwrap()
    }

    #[test]
    fn kubernetes_secrets_hold_a_docker_config() {
        let token = Secret::new("berth_at_x");
        for namespace in [None, Some("apps")] {
            let yaml = kubernetes_secret("pull", namespace, "registry.example:5000", "ci", &token);
            assert!(yaml.contains("type: kubernetes.io/dockerconfigjson\n"));
            assert!(yaml.contains("  name: pull\n"));
            assert_eq!(
                yaml.contains("  namespace: apps\n"),
                namespace.is_some(),
                "{yaml}"
            );
            let entry = &decode_secret(&yaml)["auths"]["registry.example:5000"];
            assert_eq!(entry["username"], "ci");
            assert_eq!(entry["password"], "berth_at_x");
            assert_eq!(entry["auth"], STANDARD.encode("ci:berth_at_x"));
        }
    }

    #[test]
    fn identity_tokens_join_and_leave_an_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".docker").join("config.json");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(
            &path,
            r#"{"auths":{"other.example":{"auth":"eDp5"}},"credsStore":"x"}"#,
        )
        .unwrap();
        store_identity_token(&path, "reg.example", "alice", &Secret::new("berth_rt_1")).unwrap();
        let root: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(root["credsStore"], "x");
        assert_eq!(root["auths"]["other.example"]["auth"], "eDp5");
        assert_eq!(root["auths"]["reg.example"]["identitytoken"], "berth_rt_1");
        assert_eq!(
            root["auths"]["reg.example"]["auth"],
            STANDARD.encode("alice:")
        );
        assert!(remove_entry(&path, "reg.example").unwrap());
        assert!(!remove_entry(&path, "reg.example").unwrap());
        let root: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert!(root["auths"].get("reg.example").is_none());
        assert_eq!(root["auths"]["other.example"]["auth"], "eDp5");
        // A file that is not an object is left alone.
        std::fs::write(&path, "[]").unwrap();
        assert!(store_identity_token(&path, "r", "a", &Secret::new("t")).is_err());
    }
}
