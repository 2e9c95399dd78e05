//! `berth immutable …`: image lifecycle rules through the management API
//! (`/api/v1`), with the login `berth login` stored.

use reqwest::Method;
use serde_json::{json, Value};

use crate::cli::{ClientArgs, ClientImmutableCommand};
use crate::client::error::ClientError;
use crate::client::output::{Output, OutputFormat};
use crate::client::session::{segment, Session};
use crate::client::Profile;
use crate::config::Environment;

fn session(registry: Option<&str>, env: &Environment) -> Result<Session, ClientError> {
    Profile::load(env)?.session(registry)
}

/// The registry-token scope changing the settings of `scope`'s namespace
/// needs (`team-a/api` → `namespace:team-a:manage_settings`).
fn settings_scope(scope: &str) -> Vec<String> {
    let namespace = scope.split('/').next().unwrap_or(scope);
    vec![format!("namespace:{namespace}:manage_settings")]
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or("-").to_string()
}

pub fn immutable(
    args: ClientArgs,
    command: ClientImmutableCommand,
    env: &Environment,
) -> Result<(), ClientError> {
    let mut session = session(args.registry.as_deref(), env)?;
    let output = Output::new(args.output, args.quiet, args.format.as_deref(), env)?;
    match command {
        ClientImmutableCommand::Add { scope, tags } => {
            let added = session.call(
                Method::POST,
                "/api/v1/immutable-rules",
                Some(&json!({"scope": scope, "tags": tags})),
                &settings_scope(&scope),
                "adding an immutable-tag rule",
            )?;
            output.done(
                &added,
                &format!("Tags matching {tags} in {scope} are immutable now."),
            );
        }
        ClientImmutableCommand::List { namespace } => {
            let list = session.call(
                Method::GET,
                "/api/v1/immutable-rules",
                None,
                &["registry:catalog:*".to_string()],
                "listing immutable-tag rules",
            )?;
            let rules: Vec<Value> = list["rules"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|rule| {
                    namespace
                        .as_deref()
                        .is_none_or(|namespace| rule["namespace"] == namespace)
                })
                .cloned()
                .collect();
            output.list(
                &rules,
                &["scope", "tags", "author", "added"],
                |rule, _| {
                    let added = rule["created_at"]
                        .as_i64()
                        .and_then(|at| time::OffsetDateTime::from_unix_timestamp(at).ok())
                        .map(|at| at.date().to_string())
                        .unwrap_or_default();
                    vec![
                        text(&rule["scope"]),
                        text(&rule["tags"]),
                        text(&rule["author"]),
                        added,
                    ]
                },
                |rule| rule["tags"].as_str().unwrap_or(""),
            )?;
        }
        ClientImmutableCommand::Rm { scope, tags } => {
            session.call(
                Method::DELETE,
                &format!(
                    "/api/v1/immutable-rules/{}/{}",
                    segment(&scope),
                    segment(&tags)
                ),
                None,
                &settings_scope(&scope),
                "removing an immutable-tag rule",
            )?;
            if output.format == OutputFormat::Table && !output.quiet {
                println!("Removed the rule {scope} --tags {tags}.");
            }
        }
    }
    Ok(())
}
