//! `berth-bench compare`: turns the raw `name: value unit` lines of several
//! rounds into the side-by-side table of medians that `bench/run.sh` prints
//! and `docs/performance.md` keeps. It lives here rather than in the shell
//! script so the medians do not depend on which `awk` a machine has.

use std::collections::HashMap;
use std::path::Path;

use crate::client::Result;
use crate::scenarios::format_value;

/// The figures of one registry (or of the machine) over all rounds, in the
/// order they first appeared.
#[derive(Default)]
struct Figures {
    order: Vec<String>,
    values: HashMap<String, (Vec<f64>, String)>,
}

impl Figures {
    fn read(path: &Path) -> Result<Figures> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut figures = Figures::default();
        for line in text.lines() {
            if let Some((name, value, unit)) = parse_line(line) {
                let entry = figures.values.entry(name.to_string()).or_insert_with(|| {
                    figures.order.push(name.to_string());
                    (Vec::new(), unit.to_string())
                });
                entry.0.push(value);
            }
        }
        Ok(figures)
    }

    fn median(&self, name: &str) -> Option<f64> {
        let (values, _) = self.values.get(name)?;
        let mut sorted = values.clone();
        sorted.sort_by(f64::total_cmp);
        let middle = sorted.len() / 2;
        Some(if sorted.len() % 2 == 1 {
            sorted[middle]
        } else {
            (sorted[middle - 1] + sorted[middle]) / 2.0
        })
    }

    fn unit(&self, name: &str) -> &str {
        self.values
            .get(name)
            .map(|(_, unit)| unit.as_str())
            .unwrap_or("")
    }
}

/// Accepts exactly `name: number unit`; anything else (progress, errors) is
/// not a figure.
fn parse_line(line: &str) -> Option<(&str, f64, &str)> {
    let (name, rest) = line.split_once(": ")?;
    if name.contains(char::is_whitespace) {
        return None;
    }
    let mut words = rest.split_whitespace();
    let value = words.next()?.parse::<f64>().ok()?;
    let unit = words.next()?;
    words.next().is_none().then_some((name, value, unit))
}

/// Prints a Markdown table of medians of `a` and `b` with the ratio b/a, and
/// one of the machine's figures when `hardware` is given.
pub fn run(
    a: &Path,
    a_label: &str,
    b: &Path,
    b_label: &str,
    hardware: Option<&Path>,
) -> Result<()> {
    let a = Figures::read(a)?;
    let b = Figures::read(b)?;
    println!("| figure | unit | {a_label} | {b_label} | {b_label} / {a_label} |");
    println!("|---|---|---:|---:|---:|");
    let mut names = a.order.clone();
    names.extend(
        b.order
            .iter()
            .filter(|name| !a.values.contains_key(*name))
            .cloned(),
    );
    for name in &names {
        let (median_a, median_b) = (a.median(name), b.median(name));
        let unit = if a.values.contains_key(name) {
            a.unit(name)
        } else {
            b.unit(name)
        };
        let ratio = match (median_a, median_b) {
            (Some(x), Some(y)) if x != 0.0 => format!("{:.2}", y / x),
            _ => "–".to_string(),
        };
        println!(
            "| {name} | {unit} | {} | {} | {ratio} |",
            show(median_a),
            show(median_b)
        );
    }
    if let Some(hardware) = hardware {
        let machine = Figures::read(hardware)?;
        println!();
        println!("| machine limit | unit | median |");
        println!("|---|---|---:|");
        for name in &machine.order {
            println!(
                "| {name} | {} | {} |",
                machine.unit(name),
                show(machine.median(name))
            );
        }
    }
    Ok(())
}

fn show(value: Option<f64>) -> String {
    value.map(format_value).unwrap_or_else(|| "–".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_figure_lines_parse() {
        assert_eq!(
            parse_line("pull_blob: 812.5 MB/s"),
            Some(("pull_blob", 812.5, "MB/s"))
        );
        assert_eq!(parse_line("error: same_blob: 3 of 32 clients failed"), None);
        assert_eq!(parse_line("round 1: 2 berth"), None);
        assert_eq!(parse_line("== round 1"), None);
    }

    #[test]
    fn median_of_even_count_is_the_mean_of_the_middle_two() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.txt");
        std::fs::write(&path, "x: 1 s\nx: 5 s\nx: 3 s\nx: 100 s\n").unwrap();
        assert_eq!(Figures::read(&path).unwrap().median("x"), Some(4.0));
    }
}
