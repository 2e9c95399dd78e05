//! `berth va IMAGE`, `berth va policy …` and `berth exemption …`: the
//! Vulnerability Advisor through the management API (`/api/v1`), with the
//! login `berth login` stored.

use reqwest::Method;
use serde_json::{json, Value};

use crate::cli::{
    ClientArgs, ClientExemptionCommand, ClientPolicyCommand, VaArgs, VaCommand, VaOutput,
};
use crate::client::error::ClientError;
use crate::client::output::{json_line, or_dash, render_table, use_color, Output, OutputFormat};
use crate::client::session::{segment, Session};
use crate::client::Profile;
use crate::config::Environment;

fn session(registry: Option<&str>, env: &Environment) -> Result<Session, ClientError> {
    Profile::load(env)?.session(registry)
}

/// The namespace of an image or scope (its first path component).
fn namespace_of(name: &str) -> &str {
    let end = name.find(['/', ':', '@']).unwrap_or(name.len());
    &name[..end]
}

/// The repository of an image (`team/app:v1` → `team/app`).
fn repository_of(image: &str) -> &str {
    if let Some((repository, _)) = image.split_once('@') {
        return repository;
    }
    match image.rsplit_once(':') {
        Some((repository, tag)) if !tag.contains('/') => repository,
        _ => image,
    }
}

pub fn va(args: VaArgs, env: &Environment) -> Result<(), ClientError> {
    match args.command {
        Some(VaCommand::Policy { client, command }) => return policy(client, command, env),
        Some(VaCommand::Summary { namespace, client }) => {
            return summary(client, namespace.as_deref(), env)
        }
        None => {}
    }
    let Some(image) = args.image.as_deref() else {
        return Err(ClientError::Usage(
            "name an image (berth va NS/REPO:TAG), or use `berth va policy`".into(),
        ));
    };
    let mut session = session(args.registry.as_deref(), env)?;
    let pull = vec![format!("repository:{}:pull", repository_of(image))];
    if args.output == VaOutput::Cyclonedx {
        let sbom = session.call(
            Method::GET,
            &format!("/api/v1/images/{}/sbom/cyclonedx", segment(image)),
            None,
            &pull,
            "reading the SBOM",
        )?;
        print!("{}", json_line(&sbom));
        return Ok(());
    }
    let report = session.call(
        Method::GET,
        &format!("/api/v1/images/{}/vulnerabilities", segment(image)),
        None,
        &pull,
        "reading the vulnerability report",
    )?;
    match args.output {
        VaOutput::Json => print!("{}", json_line(&report)),
        VaOutput::Sarif => print!("{}", json_line(&sarif(&report, args.all))),
        _ => print!("{}", table(&report, args.all, env)),
    }
    Ok(())
}

/// The findings of a report that are shown: those with a fix, and with
/// `all` those without one too.
fn shown(image: &Value, all: bool) -> Vec<&Value> {
    let mut findings: Vec<&Value> = image["findings"].as_array().into_iter().flatten().collect();
    if all {
        findings.extend(image["unfixed"].as_array().into_iter().flatten());
    }
    findings
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or("").to_string()
}

/// The report for people: a status line per image and a table of findings.
fn table(report: &Value, all: bool, env: &Environment) -> String {
    use std::io::IsTerminal;
    let color = use_color(std::io::stdout().is_terminal(), env.get("NO_COLOR"));
    let mut out = format!(
        "{} ({}): {}\n",
        text(&report["image"]),
        text(&report["digest"]),
        text(&report["status"])
    );
    for image in report["images"].as_array().into_iter().flatten() {
        if let Some(platform) = image["platform"].as_str() {
            out.push_str(&format!("\n{platform}: {}\n", text(&image["status"])));
        }
        if let Some(partial) = image["partial"].as_str() {
            out.push_str(&format!("partial index: {partial}\n"));
        }
        let findings = shown(image, all);
        if !findings.is_empty() {
            let rows: Vec<Vec<String>> = findings
                .iter()
                .map(|f| {
                    let cve = f["aliases"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .find(|a| a.starts_with("CVE-"))
                        .map(str::to_string);
                    vec![
                        text(&f["advisory"]),
                        or_dash(cve.as_deref()),
                        text(&f["severity"]),
                        text(&f["package"]),
                        text(&f["installed_version"]),
                        or_dash(f["fixed_version"].as_str()),
                    ]
                })
                .collect();
            out.push_str(&render_table(
                &[
                    "advisory",
                    "cve",
                    "severity",
                    "package",
                    "installed",
                    "fixed in",
                ],
                &rows,
                color,
            ));
        }
        let unfixed = image["unfixed"].as_array().map_or(0, Vec::len);
        if !all && unfixed > 0 {
            out.push_str(&format!(
                "{unfixed} more without a published fix (--all shows them)\n"
            ));
        }
        let exempted = image["exempted"].as_array().map_or(0, Vec::len);
        if exempted > 0 {
            out.push_str(&format!("{exempted} exempted (berth exemption list)\n"));
        }
    }
    out
}

/// SARIF 2.1.0: one rule per advisory, one result per finding.
fn sarif(report: &Value, all: bool) -> Value {
    let image = text(&report["image"]);
    let mut rules: Vec<Value> = Vec::new();
    let mut results = Vec::new();
    for part in report["images"].as_array().into_iter().flatten() {
        for finding in shown(part, all) {
            let id = text(&finding["advisory"]);
            if !rules.iter().any(|r| r["id"] == id.as_str()) {
                rules.push(json!({
                    "id": id,
                    "shortDescription": {"text": text(&finding["summary"])},
                    "properties": {"security-severity": finding["score"], "severity": finding["severity"]},
                }));
            }
            let level = match finding["severity"].as_str() {
                Some("critical" | "high") => "error",
                Some("medium") => "warning",
                _ => "note",
            };
            results.push(json!({
                "ruleId": id,
                "level": level,
                "message": {"text": format!(
                    "{} {} is affected by {}; fixed in {}",
                    text(&finding["package"]),
                    text(&finding["installed_version"]),
                    id,
                    finding["fixed_version"].as_str().unwrap_or("no release yet"),
                )},
                "locations": [{"physicalLocation": {"artifactLocation": {"uri": image}}}],
                "properties": {"purl": finding["purl"], "layer": finding["layer"]},
            }));
        }
    }
    json!({
        "version": "2.1.0",
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "runs": [{
            "tool": {"driver": {"name": "berth", "version": env!("CARGO_PKG_VERSION"), "rules": rules}},
            "results": results,
        }],
    })
}

fn policy(
    args: ClientArgs,
    command: ClientPolicyCommand,
    env: &Environment,
) -> Result<(), ClientError> {
    let mut session = session(args.registry.as_deref(), env)?;
    let output = Output::new(args.output, args.quiet, args.format.as_deref(), env)?;
    match command {
        ClientPolicyCommand::Set {
            namespace,
            mode,
            severity,
            block_unscanned,
            sbom,
        } => {
            let body = json!({
                "mode": mode,
                "severity": severity,
                "block_unscanned": block_unscanned,
                "attach_sbom": sbom == "on",
            });
            let set = session.call(
                Method::PUT,
                &format!(
                    "/api/v1/namespaces/{}/vulnerability-policy",
                    segment(&namespace)
                ),
                Some(&body),
                &[format!("namespace:{namespace}:manage_settings")],
                "setting the vulnerability policy",
            )?;
            output.done(
                &set,
                &format!("Set the vulnerability policy of {namespace}: {mode} at {severity}."),
            );
        }
        ClientPolicyCommand::List => {
            let list = session.call(
                Method::GET,
                "/api/v1/vulnerability-policies",
                None,
                &["registry:catalog:*".to_string()],
                "listing vulnerability policies",
            )?;
            let policies: Vec<Value> = list["policies"].as_array().cloned().unwrap_or_default();
            output.list(
                &policies,
                &["namespace", "mode", "severity", "block unscanned", "sbom"],
                |p, _| {
                    vec![
                        text(&p["namespace"]),
                        text(&p["mode"]),
                        text(&p["severity"]),
                        p["block_unscanned"].as_bool().unwrap_or(false).to_string(),
                        if p["attach_sbom"].as_bool().unwrap_or(true) {
                            "on"
                        } else {
                            "off"
                        }
                        .to_string(),
                    ]
                },
                |p| p["namespace"].as_str().unwrap_or(""),
            )?;
        }
    }
    Ok(())
}

/// The severities of a summary's columns, most severe first.
const SUMMARY_SEVERITIES: [&str; 5] = ["critical", "high", "medium", "low", "unknown"];

/// `berth va summary [NAMESPACE]`: `GET /api/v1/vulnerabilities/summary`,
/// a row per namespace with images with issues and a total row, or the
/// API's object with `-o json`.
fn summary(
    args: ClientArgs,
    namespace: Option<&str>,
    env: &Environment,
) -> Result<(), ClientError> {
    let mut session = session(args.registry.as_deref(), env)?;
    let output = Output::new(args.output, args.quiet, args.format.as_deref(), env)?;
    let (path, scopes) = match namespace {
        Some(namespace) => (
            format!(
                "/api/v1/vulnerabilities/summary?namespace={}",
                segment(namespace)
            ),
            vec![format!("namespace:{namespace}:pull")],
        ),
        None => (
            "/api/v1/vulnerabilities/summary".to_string(),
            vec!["registry:catalog:*".to_string()],
        ),
    };
    let summary = session.call(
        Method::GET,
        &path,
        None,
        &scopes,
        "reading the vulnerability summary",
    )?;
    let namespaces: Vec<Value> = summary["namespaces"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if let Some(rendered) = output.render_template(&namespaces) {
        print!("{}", rendered?);
    } else if output.format == OutputFormat::Json {
        print!("{}", json_line(&summary));
    } else {
        print!("{}", summary_table(&summary, output.quiet, output.color));
    }
    Ok(())
}

/// The table of a summary: a row per namespace, then the total; with
/// `quiet`, the namespaces' names only.
fn summary_table(summary: &Value, quiet: bool, color: bool) -> String {
    let namespaces: Vec<Value> = summary["namespaces"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if quiet {
        return namespaces
            .iter()
            .map(|n| format!("{}\n", text(&n["namespace"])))
            .collect();
    }
    let row = |name: String, images: &Value, findings: &Value| {
        let mut cells = vec![name, images.as_u64().unwrap_or(0).to_string()];
        cells.extend(
            SUMMARY_SEVERITIES
                .iter()
                .map(|severity| findings[*severity].as_u64().unwrap_or(0).to_string()),
        );
        cells
    };
    let mut rows: Vec<Vec<String>> = namespaces
        .iter()
        .map(|n| {
            row(
                text(&n["namespace"]),
                &n["images_with_issues"],
                &n["findings"],
            )
        })
        .collect();
    rows.push(row(
        "total".to_string(),
        &summary["images_with_issues"],
        &summary["findings"],
    ));
    let mut headers = vec!["namespace", "images with issues"];
    headers.extend(SUMMARY_SEVERITIES);
    let mut table = render_table(&headers, &rows, color);
    table.push_str(
        "Findings with a published fix and no exemption, as last assessed (berth va IMAGE lists them).\n",
    );
    table
}

/// The scope a token needs to change exemptions in `scope`.
fn exemption_scopes(scope: &str) -> Vec<String> {
    if scope == "*" {
        vec!["registry:users:*".to_string()]
    } else {
        vec![format!("namespace:{}:manage_settings", namespace_of(scope))]
    }
}

pub fn exemption(
    args: ClientArgs,
    command: ClientExemptionCommand,
    env: &Environment,
) -> Result<(), ClientError> {
    let mut session = session(args.registry.as_deref(), env)?;
    let output = Output::new(args.output, args.quiet, args.format.as_deref(), env)?;
    match command {
        ClientExemptionCommand::Add {
            scope,
            issue,
            reason,
            expires,
        } => {
            let mut body = json!({"scope": scope, "issue": issue, "reason": reason});
            if let Some(expires) = expires {
                body["expires"] = json!(expires);
            }
            let added = session.call(
                Method::POST,
                "/api/v1/exemptions",
                Some(&body),
                &exemption_scopes(&scope),
                "adding an exemption",
            )?;
            output.done(&added, &format!("Exempted {issue} in {scope}."));
        }
        ClientExemptionCommand::List { scope } => {
            // A scope in a namespace asks for that namespace's page (which
            // also holds the registry-wide ones) and keeps the scope's own.
            let namespace = scope
                .as_deref()
                .filter(|s| *s != "*")
                .map(|s| s.split(['/', ':', '@']).next().unwrap_or(s));
            let path = match namespace {
                Some(namespace) => format!("/api/v1/exemptions?namespace={}", segment(namespace)),
                None => "/api/v1/exemptions".to_string(),
            };
            let mut exemptions: Vec<Value> = session.all_pages(
                &path,
                "exemptions",
                &["registry:catalog:*".to_string()],
                "listing exemptions",
            )?;
            exemptions.retain(|e| scope.as_deref().is_none_or(|s| e["scope"] == s));
            output.list(
                &exemptions,
                &["scope", "issue", "reason", "author", "expires"],
                |e, _| {
                    let expires = match (e["expired"].as_bool(), e["expires_at"].as_i64()) {
                        (Some(true), _) => "expired".to_string(),
                        (_, Some(at)) => time::OffsetDateTime::from_unix_timestamp(at)
                            .map(|t| t.date().to_string())
                            .unwrap_or_default(),
                        _ => "never".to_string(),
                    };
                    vec![
                        text(&e["scope"]),
                        text(&e["issue"]),
                        text(&e["reason"]),
                        text(&e["author"]),
                        expires,
                    ]
                },
                |e| e["issue"].as_str().unwrap_or(""),
            )?;
        }
        ClientExemptionCommand::Rm { scope, issue } => {
            session.call(
                Method::DELETE,
                &format!("/api/v1/exemptions/{}/{}", segment(&scope), segment(&issue)),
                None,
                &exemption_scopes(&scope),
                "removing an exemption",
            )?;
            if output.format == OutputFormat::Table && !output.quiet {
                println!("Removed the exemption of {issue} in {scope}.");
            }
        }
    }
    Ok(())
}
