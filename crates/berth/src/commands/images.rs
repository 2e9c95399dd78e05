//! `berth image …` and `berth manifest inspect`: a registry's images
//! through the management API (`/api/v1/repositories/…`), with image
//! references parsed as docker parses them (`client::reference`).

use reqwest::Method;
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::cli::{ClientArgs, ClientImageCommand, ClientManifestCommand, ImageListArgs};
use crate::client::error::ClientError;
use crate::client::output::{human_size, json_line, render_table, Output, OutputFormat};
use crate::client::reference::{ImageRef, Target};
use crate::client::session::{segment, Session};
use crate::client::{Image, Profile, Repository};
use crate::config::Environment;

/// The session for a reference: the registry it names, else `--registry`
/// or the default.
fn session_for(
    profile: &Profile,
    args: &ClientArgs,
    reference: &ImageRef,
) -> Result<Session, ClientError> {
    profile.session(reference.registry.as_deref().or(args.registry.as_deref()))
}

fn images_path(repository: &str) -> String {
    format!("/api/v1/repositories/{}/images", segment(repository))
}

fn pull(repository: &str) -> Vec<String> {
    vec![format!("repository:{repository}:pull")]
}

pub fn image(
    args: ClientArgs,
    command: ClientImageCommand,
    env: &Environment,
) -> Result<(), ClientError> {
    // References are checked before anything is sent (misuse exits 2).
    let parse_all = |inputs: &[String]| -> Result<Vec<ImageRef>, ClientError> {
        inputs.iter().map(|i| ImageRef::parse(i)).collect()
    };
    let profile = Profile::load(env)?;
    let output = Output::new(args.output, args.quiet, args.format.as_deref(), env)?;
    match command {
        ClientImageCommand::List(list) => {
            let mut session = profile.session(args.registry.as_deref())?;
            let images = collect(&mut session, &list, &output)?;
            print_by_tag(&output, &images, &list)?;
        }
        ClientImageCommand::Digests(list) => {
            let mut session = profile.session(args.registry.as_deref())?;
            let images = collect(&mut session, &list, &output)?;
            print_by_digest(&output, &images, &list)?;
        }
        ClientImageCommand::Inspect { images } => {
            let references = parse_all(&images)?;
            let mut inspected = Vec::new();
            for reference in &references {
                let mut session = session_for(&profile, &args, reference)?;
                inspected.push(inspect(&mut session, reference)?);
            }
            // Always JSON, as `docker image inspect` prints.
            print!("{}", json_line(&inspected));
        }
        ClientImageCommand::Tag { source, target } => {
            let source = ImageRef::parse(&source)?;
            let target = ImageRef::parse(&target)?;
            let Target::Tag(tag) = &target.target else {
                return Err(ClientError::Usage(
                    "the target of `berth image tag` is a tag (NS/REPO:TAG), not a digest".into(),
                ));
            };
            if source.registry != target.registry {
                return Err(ClientError::Usage(
                    "`berth image tag` works within one registry; copy between registries \
                     with `skopeo copy`"
                        .into(),
                ));
            }
            let mut session = session_for(&profile, &args, &target)?;
            let tagged = session.call(
                Method::PUT,
                &format!(
                    "/api/v1/repositories/{}/tags/{}",
                    segment(target.repository.as_str()),
                    segment(tag.as_str())
                ),
                Some(&json!({
                    "source_repository": source.repository.as_str(),
                    "source_reference": source.target.as_str(),
                })),
                &[
                    format!("repository:{}:pull", source.repository.as_str()),
                    format!("repository:{}:push", target.repository.as_str()),
                ],
                "tagging images",
            )?;
            output.done(
                &tagged,
                &format!("Tagged {} as {}.", source.name(), target.name()),
            );
        }
        ClientImageCommand::Untag { image } => {
            let reference = ImageRef::parse(&image)?;
            let Target::Tag(tag) = &reference.target else {
                return Err(ClientError::Usage(
                    "`berth image untag` takes a tag (NS/REPO:TAG); remove a digest with \
                     `berth image rm`"
                        .into(),
                ));
            };
            let mut session = session_for(&profile, &args, &reference)?;
            session.call(
                Method::DELETE,
                &format!(
                    "/api/v1/repositories/{}/tags/{}",
                    segment(reference.repository.as_str()),
                    segment(tag.as_str())
                ),
                None,
                &[format!(
                    "repository:{}:delete",
                    reference.repository.as_str()
                )],
                "removing tags",
            )?;
            output.done(
                &json!({ "repository": reference.repository.as_str(), "tag": tag.as_str(), "removed": true }),
                &format!("Untagged {}.", reference.name()),
            );
        }
        ClientImageCommand::Rm { images } => {
            let references = parse_all(&images)?;
            let mut removed = Vec::new();
            for reference in &references {
                let mut session = session_for(&profile, &args, reference)?;
                let deleted = session.call(
                    Method::DELETE,
                    &format!(
                        "{}/{}",
                        images_path(reference.repository.as_str()),
                        segment(reference.target.as_str())
                    ),
                    None,
                    &[format!(
                        "repository:{}:delete",
                        reference.repository.as_str()
                    )],
                    "removing images",
                )?;
                if output.format == OutputFormat::Table && !output.quiet {
                    println!(
                        "Deleted {}@{}.",
                        reference.repository.as_str(),
                        deleted["digest"].as_str().unwrap_or_default()
                    );
                }
                removed.push(deleted);
            }
            if output.format == OutputFormat::Json {
                print!("{}", json_line(&removed));
            }
        }
        ClientImageCommand::Restore { image } => {
            let reference = ImageRef::parse(&image)?;
            let Target::Digest(digest) = &reference.target else {
                return Err(ClientError::Usage(
                    "`berth image restore` takes a digest (NS/REPO@DIGEST); \
                     `berth trash list` shows the deleted images"
                        .into(),
                ));
            };
            let mut session = session_for(&profile, &args, &reference)?;
            let restored = session.call(
                Method::POST,
                &format!(
                    "{}/{}/restore",
                    images_path(reference.repository.as_str()),
                    segment(digest.as_str())
                ),
                None,
                &[format!(
                    "repository:{}:delete",
                    reference.repository.as_str()
                )],
                "restoring images",
            )?;
            let names = |field: &str| -> Vec<String> {
                restored[field]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            };
            let tags = names("tags");
            let mut sentence = format!("Restored {}", reference.name());
            if tags.is_empty() {
                sentence.push_str(" without tags.");
            } else {
                sentence.push_str(&format!(" with tags {}.", tags.join(", ")));
            }
            let referrers = names("referrers").len();
            if referrers > 0 {
                sentence.push_str(&format!(" {referrers} referrer(s) came back with it."));
            }
            for conflict in restored["conflicts"].as_array().into_iter().flatten() {
                let tag = conflict["tag"].as_str().unwrap_or_default();
                match conflict["current"].as_str() {
                    Some(current) => sentence
                        .push_str(&format!("\nNot restored: tag {tag} names {current} now.")),
                    None => sentence.push_str(&format!(
                        "\nNot restored: tag {tag} (its image is not part of this restore)."
                    )),
                }
            }
            output.done(&restored, &sentence);
        }
    }
    Ok(())
}

pub fn manifest(
    args: ClientArgs,
    command: ClientManifestCommand,
    env: &Environment,
) -> Result<(), ClientError> {
    let ClientManifestCommand::Inspect { image } = command;
    let reference = ImageRef::parse(&image)?;
    let profile = Profile::load(env)?;
    let mut session = session_for(&profile, &args, &reference)?;
    let inspected = inspect(&mut session, &reference)?;
    print!("{}", json_line(&inspected["manifest"]));
    Ok(())
}

fn inspect(session: &mut Session, reference: &ImageRef) -> Result<Value, ClientError> {
    session.call(
        Method::GET,
        &format!(
            "{}/{}",
            images_path(reference.repository.as_str()),
            segment(reference.target.as_str())
        ),
        None,
        &pull(reference.repository.as_str()),
        "inspecting images",
    )
}

/// Every image the listing arguments select, repository by repository.
fn collect(
    session: &mut Session,
    list: &ImageListArgs,
    output: &Output,
) -> Result<Vec<Image>, ClientError> {
    let repositories = match &list.restrict {
        Some(restrict) if restrict.contains('/') => vec![restrict.clone()],
        restrict => repositories(session, restrict.as_deref())?,
    };
    let tagged = if list.include_untagged { "any" } else { "true" };
    let mut images = Vec::new();
    // A request or more per repository: across many, seconds.
    let progress = output.progress(repositories.len() as u64, "repositories");
    for repository in repositories {
        progress.inc(1);
        let path = format!("{}?tagged={tagged}", images_path(&repository));
        let page: Vec<Image> =
            session.all_pages(&path, "images", &pull(&repository), "listing images")?;
        images.extend(page);
    }
    progress.finish_and_clear();
    Ok(images)
}

/// The repositories of a namespace, or of every namespace the caller sees.
fn repositories(
    session: &mut Session,
    namespace: Option<&str>,
) -> Result<Vec<String>, ClientError> {
    let path = match namespace {
        Some(namespace) => format!("/api/v1/repositories?namespace={}", segment(namespace)),
        None => "/api/v1/repositories".to_string(),
    };
    let repositories: Vec<Repository> = session.all_pages(
        &path,
        "repositories",
        &["registry:catalog:*".to_string()],
        "listing repositories",
    )?;
    Ok(repositories.into_iter().map(|r| r.name).collect())
}

/// `sha256:0123456789ab` (the first 12 hex digits) unless `--no-trunc`.
fn short_digest(digest: &str, no_trunc: bool) -> String {
    if no_trunc {
        return digest.to_string();
    }
    match digest.split_once(':') {
        Some((algorithm, hex)) => format!("{algorithm}:{}", &hex[..hex.len().min(12)]),
        None => digest.to_string(),
    }
}

/// What kind of image: an index, an artifact (it has an artifact type), or
/// an image.
fn kind(image: &Image) -> &'static str {
    if image.media_type.ends_with("index.v1+json") || image.media_type.ends_with("list.v2+json") {
        "index"
    } else if image.artifact_type.is_some() {
        "artifact"
    } else {
        "image"
    }
}

/// When the image was built (its configuration), else when it was pushed.
fn created(image: &Image, output: &Output) -> String {
    let built = image.created.as_deref().and_then(|text| {
        OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()
    });
    output.ago(built.unwrap_or(image.pushed_at))
}

fn platforms(image: &Image) -> String {
    if image.platforms.is_empty() {
        return "-".into();
    }
    image
        .platforms
        .iter()
        .map(|p| p.name())
        .collect::<Vec<_>>()
        .join(",")
}

/// One row per tag (`<none>` for an untagged image), as `ibmcloud cr
/// image-list` prints; with `--format`, one line per image, as `-o json`
/// has one object per image.
fn print_by_tag(
    output: &Output,
    images: &[Image],
    list: &ImageListArgs,
) -> Result<(), ClientError> {
    if let Some(rendered) = output.render_template(images) {
        print!("{}", rendered?);
        return Ok(());
    }
    let rows: Vec<(String, &Image)> = images
        .iter()
        .flat_map(|image| {
            if image.tags.is_empty() {
                vec![("<none>".to_string(), image)]
            } else {
                image.tags.iter().map(|t| (t.clone(), image)).collect()
            }
        })
        .collect();
    let mut headers = vec!["repository", "tag", "digest"];
    if list.show_type {
        headers.push("type");
    }
    headers.extend(["platforms", "created", "size"]);
    print!("{}", render_tag_rows(output, images, &rows, &headers, list));
    Ok(())
}

fn render_tag_rows(
    output: &Output,
    images: &[Image],
    rows: &[(String, &Image)],
    headers: &[&str],
    list: &ImageListArgs,
) -> String {
    match (output.format, output.quiet) {
        // One object per image, as the API lists them.
        (OutputFormat::Json, _) => json_line(images),
        (_, true) => rows
            .iter()
            .map(|(tag, image)| {
                if tag == "<none>" {
                    format!("{}@{}\n", image.repository, image.digest)
                } else {
                    format!("{}:{tag}\n", image.repository)
                }
            })
            .collect(),
        (_, false) => {
            let cells: Vec<Vec<String>> = rows
                .iter()
                .map(|(tag, image)| {
                    let mut row = vec![
                        image.repository.clone(),
                        tag.clone(),
                        short_digest(&image.digest, list.no_trunc),
                    ];
                    if list.show_type {
                        row.push(kind(image).into());
                    }
                    row.extend([
                        platforms(image),
                        created(image, output),
                        human_size(image.size),
                    ]);
                    row
                })
                .collect();
            render_table(headers, &cells, output.color)
        }
    }
}

/// One row per image, its tags joined.
fn print_by_digest(
    output: &Output,
    images: &[Image],
    list: &ImageListArgs,
) -> Result<(), ClientError> {
    let mut headers = vec!["repository", "digest", "tags"];
    if list.show_type {
        headers.push("type");
    }
    headers.extend(["platforms", "created", "size", "pulls", "last pulled"]);
    output.list(
        images,
        &headers,
        |image, output| {
            let mut row = vec![
                image.repository.clone(),
                short_digest(&image.digest, list.no_trunc),
                if image.tags.is_empty() {
                    "-".into()
                } else {
                    image.tags.join(",")
                },
            ];
            if list.show_type {
                row.push(kind(image).into());
            }
            row.extend([
                platforms(image),
                created(image, output),
                human_size(image.size),
                image.pull_count.to_string(),
                image
                    .last_pulled
                    .map_or_else(|| "never".into(), |at| output.ago(at)),
            ]);
            row
        },
        |image| image.digest.as_str(),
    )
}
