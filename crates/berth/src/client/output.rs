//! How client commands print: aligned tables for people, JSON with a
//! documented schema for programs (`-o json`, docs/cli.md), bare names for
//! pipes (`-q`). Tables show relative times ("3 hours ago"); JSON carries
//! RFC 3339. Colour (bold column headings) only when stdout is a terminal
//! and `NO_COLOR` is unset, as <https://no-color.org> asks. `--format`
//! prints each item of a list through a template (minijinja, Jinja's
//! syntax) whose fields are those of the item's JSON.

use std::io::IsTerminal;

use clap::ValueEnum;
use comfy_table::{presets, CellAlignment, ColumnConstraint, Table};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use time::OffsetDateTime;

use crate::client::error::ClientError;
use crate::config::Environment;

/// `-o FORMAT`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns for people.
    #[default]
    Table,
    /// JSON for programs: an array for lists, an object otherwise.
    Json,
}

/// Where and how a command prints.
#[derive(Clone, Copy, Debug)]
pub struct Output {
    pub format: OutputFormat,
    pub quiet: bool,
    pub color: bool,
    pub now: OffsetDateTime,
    /// `--format`: each list item printed through this template (one per
    /// process, so it is kept for the process's life).
    pub template: Option<&'static ItemTemplate>,
}

/// A compiled `--format` template.
pub struct ItemTemplate {
    env: minijinja::Environment<'static>,
}

impl std::fmt::Debug for ItemTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ItemTemplate")
    }
}

impl ItemTemplate {
    /// Compiles `source`. Unknown fields are errors when rendered, so a
    /// misspelt name is reported instead of printing nothing.
    pub fn new(source: &str) -> Result<ItemTemplate, ClientError> {
        let mut env = minijinja::Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        env.add_template_owned("--format", source.to_string())
            .map_err(|error| {
                ClientError::Usage(format!(
                    "--format: {}: write fields as {{{{ name }}}}, e.g. \
                     --format '{{{{ repository }}}}:{{{{ tags | join(\",\") }}}}'",
                    error.detail().unwrap_or("not a valid template")
                ))
            })?;
        Ok(ItemTemplate { env })
    }

    /// One item through the template, as a line.
    pub fn render<T: Serialize>(&self, item: &T) -> Result<String, ClientError> {
        let template = self.env.get_template("--format").expect("added in new");
        let mut line =
            template
                .render(minijinja::Value::from_serialize(item))
                .map_err(|error| {
                    ClientError::Usage(format!(
                    "--format: {}: the fields are those of -o json (docs/cli.md, \"JSON schemas\")",
                    error.detail().map_or_else(|| error.kind().to_string(), str::to_string)
                ))
                })?;
        line.push('\n');
        Ok(line)
    }
}

/// Whether to colour: only on a terminal, and never when `NO_COLOR` is set
/// to anything non-empty.
pub fn use_color(is_terminal: bool, no_color: Option<&str>) -> bool {
    is_terminal && no_color.is_none_or(str::is_empty)
}

impl Output {
    pub fn new(
        format: OutputFormat,
        quiet: bool,
        template: Option<&str>,
        env: &Environment,
    ) -> Result<Output, ClientError> {
        let template = match template {
            Some(source) => Some(&*Box::leak(Box::new(ItemTemplate::new(source)?))),
            None => None,
        };
        // `Environment::get` already treats an empty variable as unset.
        Ok(Output {
            format,
            quiet,
            color: use_color(std::io::stdout().is_terminal(), env.get("NO_COLOR")),
            now: OffsetDateTime::now_utc(),
            template,
        })
    }

    /// With `--format`, the items through the template, one line each.
    pub fn render_template<T: Serialize>(
        &self,
        items: &[T],
    ) -> Option<Result<String, ClientError>> {
        let template = self.template?;
        Some(items.iter().map(|item| template.render(item)).collect())
    }

    /// Prints a list: through `--format`, JSON array, names only (`-q`),
    /// or a table.
    pub fn list<T: Serialize>(
        &self,
        items: &[T],
        headers: &[&str],
        row: impl Fn(&T, &Output) -> Vec<String>,
        name: impl Fn(&T) -> &str,
    ) -> Result<(), ClientError> {
        print!("{}", self.render_list(items, headers, row, name)?);
        Ok(())
    }

    /// What [`Output::list`] prints.
    pub fn render_list<T: Serialize>(
        &self,
        items: &[T],
        headers: &[&str],
        row: impl Fn(&T, &Output) -> Vec<String>,
        name: impl Fn(&T) -> &str,
    ) -> Result<String, ClientError> {
        if let Some(rendered) = self.render_template(items) {
            return rendered;
        }
        Ok(match (self.format, self.quiet) {
            (OutputFormat::Json, _) => json_line(&items),
            (OutputFormat::Table, true) => items.iter().map(|i| format!("{}\n", name(i))).collect(),
            (OutputFormat::Table, false) => {
                let rows: Vec<Vec<String>> = items.iter().map(|i| row(i, self)).collect();
                render_table(headers, &rows, self.color)
            }
        })
    }

    /// Prints the result of a change: the JSON object, nothing (`-q`), or
    /// a sentence for people.
    pub fn done<T: Serialize>(&self, value: &T, sentence: &str) {
        match (self.format, self.quiet) {
            (OutputFormat::Json, _) => print!("{}", json_line(value)),
            (OutputFormat::Table, true) => {}
            (OutputFormat::Table, false) => println!("{sentence}"),
        }
    }

    /// A time for a table: relative to now.
    pub fn ago(&self, at: OffsetDateTime) -> String {
        ago(at, self.now)
    }

    /// A progress bar for `len` steps of `unit` ("repositories"), on
    /// stderr: drawn only when stderr is a terminal (indicatif draws
    /// nothing to a pipe) and without `-q`, and cleared with
    /// `finish_and_clear`, so what stdout carries never changes.
    pub fn progress(&self, len: u64, unit: &str) -> ProgressBar {
        progress(len, unit, self.quiet)
    }
}

/// [`Output::progress`], for commands that print without an [`Output`].
pub fn progress(len: u64, unit: &str, quiet: bool) -> ProgressBar {
    let target = if quiet {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    };
    progress_on(len, unit, target)
}

/// A progress bar drawn to `target`, without colour.
fn progress_on(len: u64, unit: &str, target: ProgressDrawTarget) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len), target);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} ({elapsed})")
            .expect("a valid progress template"),
    );
    bar.set_message(unit.to_string());
    bar
}

/// Pretty JSON and a newline.
pub fn json_line<T: Serialize + ?Sized>(value: &T) -> String {
    let mut text = serde_json::to_string_pretty(value).expect("output serializes");
    text.push('\n');
    text
}

/// Columns separated by three spaces, no borders (as `docker images`
/// prints), headings upper case and bold when `color`.
pub fn render_table(headers: &[&str], rows: &[Vec<String>], color: bool) -> String {
    let mut table = Table::new();
    table.load_preset(presets::NOTHING);
    table.set_header(headers.iter().map(|h| h.to_uppercase()));
    for row in rows {
        table.add_row(row);
    }
    for column in table.column_iter_mut() {
        column.set_padding((0, 3));
        column.set_cell_alignment(CellAlignment::Left);
        // Never wrap: a pipe or a narrow terminal gets whole values.
        column.set_constraint(ColumnConstraint::ContentWidth);
    }
    let mut out = String::new();
    for (index, line) in table.lines().enumerate() {
        let line = line.trim_end();
        if index == 0 && color {
            out.push_str(&format!("\x1b[1m{line}\x1b[0m\n"));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// `at` relative to `now`, in the largest whole unit ("5 seconds ago",
/// "3 hours ago", "2 weeks ago"); future times say "in …".
pub fn ago(at: OffsetDateTime, now: OffsetDateTime) -> String {
    let seconds = (now - at).whole_seconds();
    let (magnitude, future) = (seconds.unsigned_abs(), seconds < 0);
    const UNITS: [(&str, u64); 6] = [
        ("year", 365 * 86_400),
        ("month", 30 * 86_400),
        ("week", 7 * 86_400),
        ("day", 86_400),
        ("hour", 3_600),
        ("minute", 60),
    ];
    let (unit, count) = UNITS
        .iter()
        .find(|(_, size)| magnitude >= *size)
        .map_or(("second", magnitude), |(unit, size)| {
            (*unit, magnitude / size)
        });
    if count == 0 {
        return "just now".into();
    }
    let plural = if count == 1 { "" } else { "s" };
    if future {
        format!("in {count} {unit}{plural}")
    } else {
        format!("{count} {unit}{plural} ago")
    }
}

/// A size for a table, in decimal units with three significant digits as
/// `docker images` shows them ("2.91 MB"); JSON keeps the exact bytes.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 999.5 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        return format!("{bytes} B");
    }
    let text = if value >= 99.95 {
        format!("{value:.0}")
    } else if value >= 9.995 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    };
    format!("{text} {}", UNITS[unit])
}

/// An optional value in a table cell.
pub fn or_dash(value: Option<&str>) -> String {
    value.unwrap_or("-").to_string()
}

/// A JSON value of an API answer in a table cell: a string as it is,
/// `null` as `-`, anything else as JSON.
pub fn cell(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(text) => text.clone(),
        serde_json::Value::Null => "-".to_string(),
        other => other.to_string(),
    }
}

/// A time of an API answer (seconds since the epoch) in a table cell, as
/// RFC 3339; `-` when absent.
pub fn cell_time(value: &serde_json::Value) -> String {
    value
        .as_i64()
        .and_then(|at| OffsetDateTime::from_unix_timestamp(at).ok())
        .and_then(|at| {
            at.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "-".to_string())
}

#[cfg(test)]
mod tests {
    use time::Duration;

    use super::*;

    #[test]
    fn api_values_become_cells() {
        use serde_json::json;
        for (value, text, at) in [
            (json!("run"), "run", "-"),
            (json!(null), "-", "-"),
            (json!(3), "3", "1970-01-01T00:00:03Z"),
            (json!(true), "true", "-"),
        ] {
            assert_eq!(
                (cell(&value).as_str(), cell_time(&value).as_str()),
                (text, at),
                "{value}"
            );
        }
    }

    #[test]
    fn human_sizes() {
        // (bytes, shown)
        let cases: &[(u64, &str)] = &[
            (0, "0 B"),
            (999, "999 B"),
            (1_000, "1.00 kB"),
            (1_234, "1.23 kB"),
            (12_345, "12.3 kB"),
            (123_456, "123 kB"),
            (999_999, "1.00 MB"),
            (2_910_000, "2.91 MB"),
            (58_213_344, "58.2 MB"),
            (7_000_000_000, "7.00 GB"),
        ];
        for (bytes, shown) in cases {
            assert_eq!(human_size(*bytes), *shown, "{bytes}");
        }
    }

    #[test]
    fn relative_times() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let cases: &[(i64, &str)] = &[
            (0, "just now"),
            (1, "1 second ago"),
            (59, "59 seconds ago"),
            (60, "1 minute ago"),
            (3_599, "59 minutes ago"),
            (7_200, "2 hours ago"),
            (86_400 * 3, "3 days ago"),
            (86_400 * 14, "2 weeks ago"),
            (86_400 * 61, "2 months ago"),
            (86_400 * 800, "2 years ago"),
            (-86_400 * 30, "in 1 month"),
            (-90, "in 1 minute"),
        ];
        for (seconds_ago, text) in cases {
            assert_eq!(
                ago(now - Duration::seconds(*seconds_ago), now),
                *text,
                "{seconds_ago}"
            );
        }
    }

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        let cases = [
            (true, None, true),
            (true, Some(""), true),
            (true, Some("1"), false),
            (false, None, false),
            (false, Some("1"), false),
        ];
        for (terminal, no_color, expected) in cases {
            assert_eq!(
                use_color(terminal, no_color),
                expected,
                "{terminal} {no_color:?}"
            );
        }
    }

    /// On a terminal the bar shows how far it got, and clearing it
    /// leaves nothing behind; with -q it is never drawn.
    #[test]
    fn progress_bars_draw_on_a_terminal_and_clear() {
        let term = indicatif::InMemoryTerm::new(4, 100);
        let bar = progress_on(
            5,
            "repositories",
            ProgressDrawTarget::term_like(Box::new(term.clone())),
        );
        bar.inc(2);
        bar.tick();
        assert!(
            term.contents().contains("2/5 repositories"),
            "{:?}",
            term.contents()
        );
        bar.finish_and_clear();
        assert_eq!(term.contents().trim(), "");
        let quiet = Output {
            format: OutputFormat::Table,
            quiet: true,
            color: false,
            now: OffsetDateTime::UNIX_EPOCH,
            template: None,
        };
        assert!(quiet.progress(5, "repositories").is_hidden());
    }

    #[derive(Serialize)]
    struct Item {
        name: String,
        role: Option<String>,
    }

    #[test]
    fn lists_in_every_format() {
        let items = vec![
            Item {
                name: "team-a".into(),
                role: Some("owner".into()),
            },
            Item {
                name: "alice".into(),
                role: None,
            },
        ];
        let row = |i: &Item, _: &Output| vec![i.name.clone(), or_dash(i.role.as_deref())];
        fn name(item: &Item) -> &str {
            item.name.as_str()
        }
        let now = OffsetDateTime::UNIX_EPOCH;
        let output = |format, quiet, color| Output {
            format,
            quiet,
            color,
            now,
            template: None,
        };
        let cases: &[(Output, &str)] = &[
            (
                output(OutputFormat::Table, false, false),
                "NAME     ROLE\nteam-a   owner\nalice    -\n",
            ),
            (
                output(OutputFormat::Table, false, true),
                "\x1b[1mNAME     ROLE\x1b[0m\nteam-a   owner\nalice    -\n",
            ),
            (output(OutputFormat::Table, true, false), "team-a\nalice\n"),
            (
                output(OutputFormat::Json, false, false),
                "[\n  {\n    \"name\": \"team-a\",\n    \"role\": \"owner\"\n  },\n  {\n    \"name\": \"alice\",\n    \"role\": null\n  }\n]\n",
            ),
            // -q does not change JSON: programs asked for the whole thing.
            (
                output(OutputFormat::Json, true, false),
                "[\n  {\n    \"name\": \"team-a\",\n    \"role\": \"owner\"\n  },\n  {\n    \"name\": \"alice\",\n    \"role\": null\n  }\n]\n",
            ),
        ];
        for (output, expected) in cases {
            assert_eq!(
                output
                    .render_list(&items, &["name", "role"], row, name)
                    .unwrap(),
                *expected,
                "{output:?}"
            );
        }
        // An empty list is a heading alone, nothing, or `[]`.
        let empty: Vec<Item> = Vec::new();
        let table = output(OutputFormat::Table, false, false);
        assert_eq!(
            table
                .render_list(&empty, &["name", "role"], row, name)
                .unwrap(),
            "NAME   ROLE\n"
        );
        let json = output(OutputFormat::Json, false, false);
        assert_eq!(
            json.render_list(&empty, &["name"], row, name).unwrap(),
            "[]\n"
        );

        // --format, whatever -o and -q say: one line per item from its
        // JSON fields; a missing field or a broken template is misuse.
        let template = |source: &str| Output {
            template: Some(Box::leak(Box::new(ItemTemplate::new(source).unwrap()))),
            ..output(OutputFormat::Json, true, false)
        };
        let cases = [
            ("{{ name }}", "team-a\nalice\n"),
            ("{{ name }} {{ role or '-' }}", "team-a owner\nalice -\n"),
            (
                "{{ name | upper }}:{{ 'none' if role is none else role }}",
                "TEAM-A:owner\nALICE:none\n",
            ),
        ];
        for (source, expected) in cases {
            assert_eq!(
                template(source)
                    .render_list(&items, &["name"], row, name)
                    .unwrap(),
                expected,
                "{source}"
            );
        }
        let misspelt = template("{{ nmae }}").render_list(&items, &["name"], row, name);
        assert!(
            matches!(&misspelt, Err(ClientError::Usage(m)) if m.contains("-o json")),
            "{misspelt:?}"
        );
        let broken = ItemTemplate::new("{{ name ");
        assert!(
            matches!(&broken, Err(ClientError::Usage(m)) if m.starts_with("--format")),
            "{broken:?}"
        );
    }
}
