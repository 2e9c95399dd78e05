//! What is derived from the declaration for people to read: the listing
//! `berth config check` prints and the README's configuration tables.

use super::{Loaded, Source, KEYS, SECTIONS};

/// The effective configuration as a TOML document, every key in its
/// section with the source of its value; unset keys as comments saying what
/// unset means. Secrets show as `***`. Apart from those, the output read
/// back as a file gives the same configuration.
pub fn check_listing(loaded: &Loaded) -> String {
    let mut lines: Vec<(String, String)> = Vec::new();
    for section in SECTIONS {
        if !lines.is_empty() {
            lines.push((String::new(), String::new()));
        }
        lines.push((format!("# {}", section.doc.trim()), String::new()));
        lines.push((format!("[{}]", section.name), String::new()));
        for (index, key) in KEYS.iter().enumerate() {
            if key.section != section.name {
                continue;
            }
            let source = match &loaded.sources[index] {
                Source::Default => "default".to_string(),
                other => other.to_string(),
            };
            let line = match (key.show)(&loaded.config) {
                Some(value) => format!("{} = {value}", key.name),
                None => format!("# {} is unset: {}", key.name, key.default),
            };
            lines.push((line, format!("# {source}")));
        }
    }
    let width = lines.iter().map(|(line, _)| line.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (line, comment) in lines {
        if comment.is_empty() {
            out.push_str(&line);
        } else {
            out.push_str(&format!("{line:<width$}  {comment}"));
        }
        out.push('\n');
    }
    out.push_str(&super::upstream::listing(&loaded.upstreams));
    out
}

/// The marker lines around the generated part of README.md.
#[cfg(test)]
pub const README_BEGIN: &str =
    "<!-- configuration table: generated from crates/berth/src/config/keys.rs; \
     regenerate with `BERTH_UPDATE_README=1 cargo test -p berth readme` -->";
#[cfg(test)]
pub const README_END: &str = "<!-- end of the generated configuration table -->";

/// The README's configuration reference: a table per section, and which
/// keys keep their older top-level spelling.
#[cfg(test)]
pub fn readme_tables() -> String {
    let mut out = String::new();
    for section in SECTIONS {
        let doc = section.doc.trim().trim_end_matches('.');
        out.push_str(&format!(
            "\n`[{}]`: {}{}.\n\n",
            section.name,
            doc.chars()
                .next()
                .map(|c| c.to_lowercase().to_string())
                .unwrap_or_default(),
            doc.chars().skip(1).collect::<String>()
        ));
        out.push_str("| key | flag | environment | default | meaning |\n");
        out.push_str("|---|---|---|---|---|\n");
        for key in KEYS.iter().filter(|key| key.section == section.name) {
            let mut environment = format!("`{}`", key.env_var());
            let fallbacks = key.fallback_env();
            if !fallbacks.is_empty() {
                let names: Vec<String> = fallbacks.iter().map(|name| format!("`{name}`")).collect();
                environment.push_str(&format!(", else {}", names.join(", ")));
            }
            let default = if key.starts_unset() {
                key.default.to_string()
            } else {
                format!("`{}`", key.default)
            };
            out.push_str(&format!(
                "| `{}` | `--{}` | {environment} | {default} | {} |\n",
                key.name,
                key.flag,
                key.description()
            ));
        }
    }
    let newer: Vec<String> = KEYS
        .iter()
        .filter(|key| !key.is_legacy())
        .map(|key| format!("`{}`", key.name))
        .collect();
    out.push_str(&format!(
        "\nFiles written before sections put every key at the top level, named like \
         its flag with underscores (`listen = …`, `s3_endpoint = …`, `gc_interval = …`, \
         `auth = true`). That spelling is still accepted, with a warning, for every key \
         but the newer {}.\n",
        newer.join(", ")
    ));
    out
}
