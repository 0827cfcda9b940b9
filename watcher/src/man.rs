//! `watcher man DIR`: the man pages. Those of the commands come from the
//! command-line definitions; the rest from the documentation itself, so
//! that both say the same: `watcher.toml(5)` is docs/config.md, and the
//! ENVIRONMENT of `watcher-run(1)` is the README's table of the variables
//! the action receives.

use std::{fmt::Write as _, path::Path};

use anyhow::Context as _;
use clap::CommandFactory as _;

use crate::cli::Cli;

/// The configuration file's documentation.
const CONFIG_MD: &str = include_str!("../../docs/config.md");
/// The README, whose `run` section lists the action's variables.
const README_MD: &str = include_str!("../../README.md");
/// The header of the README's table of the action's variables.
const ENVIRONMENT_TABLE: &str = "| variable | value |";

const VERSION: &str = concat!("watcher ", env!("CARGO_PKG_VERSION"));

/// Writes watcher.1, a page per subcommand (watcher-run.1, ...) and
/// watcher.toml.5 into `dir`.
pub fn write(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for (name, text) in pages()? {
        let path = dir.join(&name);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// Every page: its file name and its text.
fn pages() -> anyhow::Result<Vec<(String, String)>> {
    let mut cli = Cli::command();
    // Built, each subcommand has the global options it accepts too.
    cli.build();
    let mut pages = vec![(String::from("watcher.1"), render(cli.clone())?)];
    for sub in cli
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        let name = format!("watcher-{}", sub.get_name());
        // No version of its own: a subcommand takes no --version.
        let mut page = sub
            .clone()
            .display_name(name.clone())
            .bin_name(format!("watcher {}", sub.get_name()));
        // The global options after the subcommand's own.
        let globals: Vec<clap::Id> = sub
            .get_arguments()
            .filter(|a| a.is_global_set())
            .map(|a| a.get_id().clone())
            .collect();
        for (i, id) in globals.into_iter().enumerate() {
            page = page.mut_arg(id, |a| a.display_order(1000 + i));
        }
        let mut text = render(page)?;
        match sub.get_name() {
            "run" => insert_sections(&mut text, &environment()),
            "serve" | "check" => text += &see_also("watcher.toml(5), watcher\\-run(1)"),
            _ => {}
        }
        pages.push((format!("{name}.1"), text));
    }
    pages.push((String::from("watcher.toml.5"), config_page()));
    Ok(pages)
}

/// The page clap_mangen makes of `command`.
fn render(command: clap::Command) -> anyhow::Result<String> {
    let mut out = Vec::new();
    clap_mangen::Man::new(command)
        .source(VERSION)
        .render(&mut out)?;
    Ok(String::from_utf8(out)?)
}

/// Puts `sections` before the examples (clap_mangen's EXTRA section, from
/// `after_help`), or at the end.
fn insert_sections(page: &mut String, sections: &str) {
    match page.find("\n.SH EXTRA\n") {
        Some(at) => page.insert_str(at + 1, sections),
        None => page.push_str(sections),
    }
}

/// The ENVIRONMENT section of watcher-run(1): the README's table.
fn environment() -> String {
    let mut out = String::from(".SH ENVIRONMENT\n");
    out += &paragraph(
        "Besides the variables of watcher's own environment, COMMAND gets these, about the \
         batch of changes it runs for (its stdin carries the changed paths: see \
         `--stdin-format`):",
    );
    out += &markdown(&table_at(README_MD, ENVIRONMENT_TABLE));
    out
}

fn see_also(pages: &str) -> String {
    format!(".SH \"SEE ALSO\"\n{pages}\n")
}

/// watcher.toml(5): docs/config.md.
fn config_page() -> String {
    let mut out = String::from(".ie \\n(.g .ds Aq \\(aq\n.el .ds Aq '\n");
    let _ = writeln!(out, ".TH watcher.toml 5 \"\" \"{VERSION}\"");
    out += ".SH NAME\nwatcher.toml \\- the configuration file of watcher serve\n";
    out += ".SH SYNOPSIS\n\\fB/etc/watcher/watcher.toml\\fR\n";
    out += ".SH DESCRIPTION\n";
    // The first heading is the title: NAME says it.
    let body = CONFIG_MD
        .split_once('\n')
        .filter(|(first, _)| first.starts_with("# "))
        .map_or(CONFIG_MD, |(_, rest)| rest);
    out += &markdown(body);
    out += &see_also("watcher\\-serve(1), watcher\\-check(1), watcher\\-run(1)");
    out
}

/// The table whose header line is `header`, from `text`: the header and
/// the rows below it.
fn table_at(text: &str, header: &str) -> String {
    text.lines()
        .skip_while(|l| l.trim() != header)
        .take_while(|l| l.trim_start().starts_with('|'))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Renders the Markdown the documentation is written in as roff:
/// `## headings`, paragraphs, tables (one `.TP` entry per row: the first
/// cell, then the others, each after its column's name but the second's),
/// fenced code blocks, and `code`, **bold** and [links](...) in text.
fn markdown(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    let mut in_paragraph = false;
    while let Some(line) = lines.next() {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            in_paragraph = false;
        } else if let Some(heading) = trimmed.strip_prefix("## ") {
            in_paragraph = false;
            let _ = writeln!(out, ".SH \"{}\"", roff_text(&heading.to_uppercase()));
        } else if let Some(heading) = trimmed.strip_prefix("### ") {
            in_paragraph = false;
            let _ = writeln!(out, ".SS \"{}\"", roff_text(heading));
        } else if trimmed.starts_with("```") {
            in_paragraph = false;
            out += ".PP\n.RS 4\n.nf\n";
            for code in lines.by_ref().take_while(|l| !l.trim().starts_with("```")) {
                let _ = writeln!(out, "{}", roff_line(&roff_text(code)));
            }
            out += ".fi\n.RE\n";
        } else if trimmed.starts_with('|') {
            in_paragraph = false;
            let header = cells(trimmed);
            // The |---| line under the header.
            lines.next_if(|l| l.trim().starts_with("|-") || l.trim().starts_with("| -"));
            while let Some(row) = lines.next_if(|l| l.trim().starts_with('|')) {
                out += &table_row(&header, &cells(row.trim()));
            }
        } else {
            if !in_paragraph {
                out += ".PP\n";
                in_paragraph = true;
            }
            let _ = writeln!(out, "{}", roff_line(&inline(trimmed)));
        }
    }
    out
}

/// The cells of a table row `| a | b |`.
fn cells(row: &str) -> Vec<&str> {
    let row = row.trim().trim_start_matches('|').trim_end_matches('|');
    row.split('|').map(str::trim).collect()
}

/// A row as a tagged paragraph: the first cell is the tag, the second the
/// text, and the next ones `Header: cell` lines (`Default: "5s"`).
fn table_row(header: &[&str], row: &[&str]) -> String {
    let mut out = String::from(".TP\n");
    let _ = writeln!(out, "{}", roff_line(&inline(row.first().unwrap_or(&""))));
    let mut first = true;
    for (i, cell) in row.iter().enumerate().skip(1) {
        if cell.is_empty() {
            continue;
        }
        if !first {
            out += ".br\n";
        }
        first = false;
        let text = match header.get(i) {
            Some(name) if i > 1 => format!("{}: {cell}", capitalized(name)),
            _ => (*cell).to_owned(),
        };
        let _ = writeln!(out, "{}", roff_line(&inline(&text)));
    }
    out
}

fn capitalized(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// A paragraph of Markdown text, as roff.
fn paragraph(text: &str) -> String {
    format!(".PP\n{}\n", roff_line(&inline(text)))
}

/// Markdown text as roff text: `code` and **bold** in bold, a link as its
/// text, and roff's special characters escaped.
fn inline(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('`') {
            if let Some(end) = after.find('`') {
                let _ = write!(out, "\\fB{}\\fR", roff_text(&after[..end]));
                rest = &after[end + 1..];
                continue;
            }
        } else if let Some(after) = rest.strip_prefix("**") {
            if let Some(end) = after.find("**") {
                let _ = write!(out, "\\fB{}\\fR", inline(&after[..end]));
                rest = &after[end + 2..];
                continue;
            }
        } else if let Some(after) = rest.strip_prefix('[') {
            // [text](target): the text.
            if let Some((label, tail)) = after.split_once("](")
                && let Some(end) = tail.find(')')
                && !label.contains(['[', '`'])
            {
                out += &inline(label);
                rest = &tail[end + 1..];
                continue;
            }
        }
        let next = rest
            .char_indices()
            .skip(1)
            .find(|&(_, c)| matches!(c, '`' | '*' | '['))
            .map_or(rest.len(), |(i, _)| i);
        out += &roff_text(&rest[..next]);
        rest = &rest[next..];
    }
    out
}

/// `text` with roff's escape character and hyphens escaped.
fn roff_text(text: &str) -> String {
    text.replace('\\', "\\e").replace('-', "\\-")
}

/// A line of roff text that does not start a request.
fn roff_line(line: &str) -> String {
    if line.starts_with(['.', '\'']) {
        format!("\\&{line}")
    } else {
        line.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `code` names in the first cell of each row of the tables of a
    /// Markdown text (below its header line `header`).
    fn documented(text: &str, header: &str) -> Vec<String> {
        let mut names = Vec::new();
        let mut in_table = false;
        for line in text.lines().map(str::trim) {
            if line == header {
                in_table = true;
            } else if !line.starts_with('|') {
                in_table = false;
            } else if in_table && !line.starts_with("|-") {
                let first = cells(line)[0];
                names.extend(first.split('`').skip(1).step_by(2).map(str::to_owned));
            }
        }
        names.sort();
        names
    }

    #[test]
    fn the_configuration_page_documents_every_key_the_parser_takes() {
        let mut keys: Vec<String> = watcher_core::config::keys()
            .into_iter()
            .map(str::to_owned)
            .collect();
        keys.sort();
        assert_eq!(documented(CONFIG_MD, "| key | value | default |"), keys);
        assert!(!keys.is_empty());
        let page = config_page();
        for key in &keys {
            let shown = format!("\\fB{}\\fR", roff_text(key));
            assert!(page.contains(&shown), "{key} not in:\n{page}");
        }
    }

    #[test]
    fn the_environment_section_lists_every_variable_the_action_gets() {
        // Every variable action.rs sets, as written there.
        let source = include_str!("../../watcher-core/src/runner/action.rs");
        let mut set: Vec<String> = source
            .split('"')
            .filter(|s| {
                s.starts_with("WATCHER_")
                    && s[8..].chars().all(|c| c.is_ascii_uppercase() || c == '_')
            })
            .map(str::to_owned)
            .collect();
        set.sort();
        set.dedup();
        assert!(set.len() >= 7, "{set:?}");
        assert_eq!(documented(README_MD, ENVIRONMENT_TABLE), set);
        let section = environment();
        for var in &set {
            let shown = format!("\n\\fB{}\\fR\n", roff_text(var));
            assert!(section.contains(&shown), "{var} not in:\n{section}");
        }
    }

    #[test]
    fn markdown_becomes_roff() {
        let text = "## Keys\n\nSome `--flag` and a [link](x.md),\n.dot at the start\n\n\
                    | key | value | default |\n|---|---|---|\n| `a` | one \\ two | `\"5s\"` |\n\
                    | `b` | three | |\n\n```\nwatcher: -x\n```\n";
        assert_eq!(
            markdown(text),
            ".SH \"KEYS\"\n.PP\nSome \\fB\\-\\-flag\\fR and a link,\n\\&.dot at the start\n\
             .TP\n\\fBa\\fR\none \\e two\n.br\nDefault: \\fB\"5s\"\\fR\n.TP\n\\fBb\\fR\nthree\n\
             .PP\n.RS 4\n.nf\nwatcher: \\-x\n.fi\n.RE\n"
        );
    }

    #[test]
    fn every_page_is_made_and_subcommands_take_no_version() {
        let pages = pages().unwrap();
        let names: Vec<&str> = pages.iter().map(|(n, _)| n.as_str()).collect();
        for name in [
            "watcher.1",
            "watcher-trace.1",
            "watcher-run.1",
            "watcher-serve.1",
            "watcher-top.1",
            "watcher-check.1",
            "watcher-completions.1",
            "watcher.toml.5",
        ] {
            assert!(names.contains(&name), "{name}: {names:?}");
        }
        for (name, text) in &pages {
            let version = text.contains("\\-\\-version");
            assert_eq!(version, name == "watcher.1", "{name}");
            if name.ends_with(".1") {
                assert!(text.contains("\\-\\-verbose"), "{name}: no global options");
            }
        }
    }
}
