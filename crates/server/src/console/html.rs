//! The console's HTML: the layout every page shares, the error page, and
//! small pieces (sizes, times, copyable commands, bar charts). `maud`
//! escapes everything interpolated, so names and labels from pushes cannot
//! inject markup; no element carries a `style` attribute or inline script
//! (the Content-Security-Policy forbids both).

use maud::{html, Markup, DOCTYPE};
use time::OffsetDateTime;

use super::assets::{SCRIPT, STYLESHEET};
use super::session::Session;

/// Who is looking, as the layout shows it.
pub struct Chrome<'a> {
    /// The signed-in user's name and session, if any.
    pub session: Option<&'a Session>,
    /// Whether access control is on (with it off there is no signing in).
    pub access_control: bool,
    /// Whether the caller administers the registry (the Users page).
    pub admin: bool,
    /// The path of the page, for the sign-in link's way back.
    pub path: &'a str,
}

/// A whole page: header with navigation and the signed-in user, then
/// `body`.
pub fn layout(chrome: &Chrome<'_>, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { (title) " · Berth" }
                link rel="stylesheet" href=(STYLESHEET.path);
                script src=(SCRIPT.path) defer {}
            }
            body {
                a class="skip" href="#main" { "Skip to content" }
                header class="top" {
                    a class="brand" href="/" { "Berth" }
                    nav aria-label="Main" {
                        ul {
                            li { a href="/" { "Overview" } }
                            li { a href="/namespaces" { "Namespaces" } }
                            @if chrome.session.is_some() {
                                li { a href="/tokens" { "Tokens" } }
                            }
                            @if chrome.admin {
                                li { a href="/admin/users" { "Users" } }
                                li { a href="/admin/settings" { "Settings" } }
                                li { a href="/admin/replications" { "Replication" } }
                            }
                        }
                    }
                    div class="who" {
                        @if let Some(session) = chrome.session {
                            span { "Signed in as " a href="/account" { strong { (session.user) } } }
                            form class="inline" method="post" action="/sign-out" {
                                input type="hidden" name="csrf" value=(session.csrf_token());
                                button class="secondary" type="submit" { "Sign out" }
                            }
                        } @else if chrome.access_control {
                            a class="button" href=(sign_in_link(chrome.path)) { "Sign in" }
                        }
                    }
                }
                main id="main" {
                    (body)
                }
                footer {
                    "Berth container registry · the same data as "
                    code { "/v2/" } " and " code { "/api/v1" }
                }
            }
        }
    }
}

/// The sign-in page's address, coming back to `path` afterwards.
pub fn sign_in_link(path: &str) -> String {
    if path == "/" || path.starts_with("/sign-") {
        "/sign-in".to_string()
    } else {
        format!(
            "/sign-in?next={}",
            percent_encoding::utf8_percent_encode(path, percent_encoding::NON_ALPHANUMERIC)
        )
    }
}

/// The hidden field every form of a session carries.
pub fn csrf_field(session: Option<&Session>) -> Markup {
    html! {
        @if let Some(session) = session {
            input type="hidden" name="csrf" value=(session.csrf_token());
        }
    }
}

/// The body of an error page: what happened, in words, and where to go.
pub fn error_body(title: &str, message: &str) -> Markup {
    html! {
        h1 { (title) }
        div class="notice error" role="alert" { p { (message) } }
        p { a href="/" { "Back to the overview" } }
    }
}

/// `bytes` for people: `1.4 MB`.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A time for people, in UTC to the minute, in a `<time>` element whose
/// `datetime` is exact.
pub fn when(at: Option<OffsetDateTime>) -> Markup {
    match at {
        None => html! { span class="muted" { "never" } },
        Some(at) => {
            let exact = at
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default();
            let shown = format!(
                "{:04}-{:02}-{:02} {:02}:{:02} UTC",
                at.year(),
                u8::from(at.month()),
                at.day(),
                at.hour(),
                at.minute()
            );
            html! { time datetime=(exact) { (shown) } }
        }
    }
}

/// A command with a copy button (shown by the script, which alone can
/// copy; without it the command is there to select).
pub fn copyable(id: &str, label: &str, command: &str) -> Markup {
    html! {
        div class="copy" {
            pre id=(id) aria-label=(label) { code { (command) } }
            button type="button" class="secondary" data-copy=(id) hidden { "Copy" }
        }
    }
}

/// A horizontal bar chart in SVG, drawn on the server: one bar per
/// `(label, value)`, with the value written out for those who cannot see
/// the bars (and the chart titled for screen readers).
pub fn bar_chart(title: &str, bars: &[(String, u64)], format: fn(u64) -> String) -> Markup {
    let height_per_bar = 28u64;
    // Narrow enough that the labels stay readable when a phone scales the
    // chart down to its width.
    let label_width = 130u64;
    let bar_width = 250u64;
    let width = label_width + bar_width + 80;
    let height = height_per_bar * bars.len().max(1) as u64 + 8;
    let max = bars.iter().map(|(_, v)| *v).max().unwrap_or(0).max(1);
    // The figures in words, for screen readers: the chart is one image to
    // them, named by its title and described by its values.
    let described = bars
        .iter()
        .map(|(label, value)| format!("{label}: {}", format(*value)))
        .collect::<Vec<_>>()
        .join("; ");
    html! {
        svg class="chart" role="img" aria-label=(format!("{title}. {described}"))
            viewBox=(format!("0 0 {width} {height}")) xmlns="http://www.w3.org/2000/svg" {
            title { (title) }
            desc { (described) }
            @for (i, (label, value)) in bars.iter().enumerate() {
                @let y = i as u64 * height_per_bar + 4;
                @let length = if *value == 0 { 0 } else { (bar_width * value / max).max(1) };
                text x="0" y=(y + 17) { (truncate(label, 18)) }
                rect class=(format!("bar bar-{}", css_class(label))) x=(label_width) y=(y + 4) width=(length) height="18" rx="3" {}
                text x=(label_width + length + 6) y=(y + 17) { (format(*value)) }
            }
        }
    }
}

/// A column chart in SVG of one figure per day, drawn on the server: one
/// column a day, oldest left, with the highest value and the first and
/// last dates written on it. Screen readers get a summary as the image's
/// name and every day's figure in a visually hidden table after it.
pub fn daily_chart(title: &str, days: &[(String, u64)], format: fn(u64) -> String) -> Markup {
    let (left, top, plot_width, plot_height) = (70u64, 8u64, 380u64, 110u64);
    let width = left + plot_width + 10;
    let height = top + plot_height + 26;
    let max = days.iter().map(|(_, v)| *v).max().unwrap_or(0);
    let scale = max.max(1);
    let slot = plot_width / (days.len().max(1) as u64);
    let column = slot.saturating_sub(2).max(1);
    let summary = match (days.first(), days.last()) {
        (Some((first, _)), Some((last, latest))) => format!(
            "{title}, {first} to {last}: {} on the last day, {} at most",
            format(*latest),
            format(max)
        ),
        _ => format!("{title}: no data"),
    };
    let baseline = top + plot_height;
    html! {
        svg class="chart daily" role="img" aria-label=(summary)
            viewBox=(format!("0 0 {width} {height}")) xmlns="http://www.w3.org/2000/svg" {
            title { (summary) }
            text x="0" y=(top + 12) { (format(max)) }
            text x="0" y=(baseline) { (format(0)) }
            line class="axis" x1=(left) y1=(baseline) x2=(left + plot_width) y2=(baseline) {}
            @for (i, (_, value)) in days.iter().enumerate() {
                @let length = if *value == 0 { 0 } else { (plot_height * value / scale).max(1) };
                rect class="bar" x=(left + i as u64 * slot + 1) y=(baseline - length) width=(column) height=(length) {}
            }
            @if let (Some((first, _)), Some((last, _))) = (days.first(), days.last()) {
                text x=(left) y=(height - 4) { (first) }
                text class="end" x=(left + plot_width) y=(height - 4) { (last) }
            }
        }
        table class="visually-hidden" {
            caption { (title) }
            thead { tr { th scope="col" { "Day" } th scope="col" { "Value" } } }
            tbody {
                @for (day, value) in days {
                    tr { td { (day) } td { (format(*value)) } }
                }
            }
        }
    }
}

/// A bar's label as a CSS class name part: lower-case letters and digits,
/// anything else a `-` (so a severity's bar can have its own colour).
fn css_class(label: &str) -> String {
    label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

/// `text` cut to `max` characters with an ellipsis.
fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let mut cut: String = text.chars().take(max - 1).collect();
        cut.push('…');
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_people_write_them() {
        for (bytes, shown) in [
            (0, "0 B"),
            (999, "999 B"),
            (1000, "1.0 kB"),
            (1_450_000, "1.4 MB"),
            (3_000_000_000, "3.0 GB"),
        ] {
            assert_eq!(size(bytes), shown);
        }
    }

    #[test]
    fn interpolated_text_is_escaped() {
        let page = error_body("Oops", "<script>alert(1)</script>").into_string();
        assert!(!page.contains("<script>"), "{page}");
        assert!(page.contains("&lt;script&gt;"), "{page}");
    }

    #[test]
    fn sign_in_links_come_back_to_the_page() {
        assert_eq!(sign_in_link("/"), "/sign-in");
        assert_eq!(
            sign_in_link("/namespaces/team-a"),
            "/sign-in?next=%2Fnamespaces%2Fteam%2Da"
        );
    }
}
