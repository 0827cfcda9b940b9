//! `cargo xtask layers`: fails when a module imports one above it.
//!
//! The rule, in each crate of the workspace: modules are declared in their
//! parent (`main.rs`, `lib.rs`, `mod.rs`) from the bottom layer up. A
//! module may import only
//!
//! - modules declared before it at the same level, and their descendants,
//! - its own children, and their descendants;
//!
//! a parent comes after all its children, so a module that imports its
//! parent, or any ancestor up to the crate root, makes an upward import.
//! Between two modules at different depths, the rule applies to their
//! branches in the closest parent they share: `runner::action` may import
//! `output` only if `output` is declared before `runner` in `main.rs`.
//! Imports are `use` trees (grouped ones flattened, `pub use` re-exports
//! included) and paths in code, types and macro calls, when they start with
//! `crate::`, `super::` or `self::`; each leads to the deepest module it
//! names, and so to that module's file. Inline `mod tests { … }` blocks
//! are part of their file and exempt. Since every import goes down a layer
//! or back along the declarations, the rule leaves no room for a cycle.
//!
//! Crates are the workspace's members (`cargo metadata`), and each of their
//! targets under `src/` is read from its root file down through its `mod`
//! declarations, with `syn`.

mod paths;
mod tree;
mod rule;

use std::{
    collections::BTreeSet,
    fs, io,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail, ensure};
use rule::Violation;
use tree::Tree;

/// The rule in one line, for the error message.
const RULE: &str = "a module may import only modules declared before it in its parent (and their \
                    descendants) and its own children; a parent comes after its children";

/// A workspace member, and the root files of its targets under `src/`.
struct Crate {
    name: String,
    dir: PathBuf,
    roots: Vec<PathBuf>,
}

pub fn layers(root: &Path) -> anyhow::Result<()> {
    let crates = workspace_crates(root)?;
    let mut broken = Vec::new();
    let mut count = 0;
    let mut files = 0;
    for krate in &crates {
        let (violations, read) = check_crate(krate)?;
        for v in &violations {
            println!("{}: {v}", krate.name);
        }
        files += read.len();
        if !violations.is_empty() {
            count += violations.len();
            broken.push(krate.name.as_str());
        }
        for stray in stray_files(&krate.dir, &read)? {
            println!(
                "{}: note: {} is in no module tree (not compiled), not checked",
                krate.name,
                stray.display()
            );
        }
    }
    ensure!(
        count == 0,
        "layers: {count} imports break the layering in {} (the rule: {RULE})",
        broken.join(", ")
    );
    println!(
        "layers: {} crates, {files} files: every import goes to a layer below",
        crates.len()
    );
    Ok(())
}

/// The violations in `krate`'s targets, once per pair of files, and the
/// files read.
fn check_crate(krate: &Crate) -> anyhow::Result<(Vec<Violation>, BTreeSet<PathBuf>)> {
    let mut violations = BTreeSet::new();
    let mut read = BTreeSet::new();
    for root in &krate.roots {
        let tree = Tree::load(
            root,
            &mut |file| match fs::read_to_string(krate.dir.join(file)) {
                Ok(source) => {
                    read.insert(file.to_path_buf());
                    Ok(Some(source))
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e).with_context(|| format!("reading {}", file.display())),
            },
        )
        .with_context(|| format!("{}: {}", krate.name, root.display()))?;
        violations.extend(rule::check(&tree));
    }
    let mut seen = BTreeSet::new();
    let violations = violations
        .into_iter()
        .filter(|v| seen.insert((v.importer.clone(), v.imported.clone())))
        .collect();
    Ok((violations, read))
}

/// The workspace's members, from `cargo metadata`.
fn workspace_crates(root: &Path) -> anyhow::Result<Vec<Crate>> {
    let out = Command::new("cargo")
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--manifest-path",
        ])
        .arg(root.join("Cargo.toml"))
        .output()
        .context("cannot run cargo metadata")?;
    ensure!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let metadata: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("reading cargo metadata's output")?;
    let mut crates = Vec::new();
    for package in metadata["packages"].as_array().context("no packages")? {
        let (Some(name), Some(manifest)) =
            (package["name"].as_str(), package["manifest_path"].as_str())
        else {
            bail!("a package without a name or manifest in cargo metadata");
        };
        let dir = Path::new(manifest)
            .parent()
            .context("a manifest path")?
            .to_path_buf();
        let mut roots: Vec<PathBuf> = package["targets"]
            .as_array()
            .context("no targets")?
            .iter()
            .filter_map(|t| t["src_path"].as_str())
            .filter_map(|src| Some(Path::new(src).strip_prefix(&dir).ok()?.to_path_buf()))
            .filter(|src| src.starts_with("src"))
            .collect();
        roots.sort();
        roots.dedup();
        crates.push(Crate {
            name: name.to_string(),
            dir,
            roots,
        });
    }
    crates.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(crates)
}

/// The `.rs` files under `dir/src` that no tree read.
fn stray_files(dir: &Path, read: &BTreeSet<PathBuf>) -> anyhow::Result<Vec<PathBuf>> {
    let mut stray = Vec::new();
    let mut pending = vec![PathBuf::from("src")];
    while let Some(sub) = pending.pop() {
        for entry in fs::read_dir(dir.join(&sub))? {
            let entry = entry?;
            let path = sub.join(entry.file_name());
            if entry.file_type()?.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") && !read.contains(&path) {
                stray.push(path);
            }
        }
    }
    stray.sort();
    Ok(stray)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// The violations in a crate made of `files` (path, source), rooted at
    /// the first.
    fn violations(files: &[(&str, &str)]) -> Vec<String> {
        let root = PathBuf::from(files[0].0);
        let files: BTreeMap<PathBuf, &str> =
            files.iter().map(|(p, s)| (PathBuf::from(p), *s)).collect();
        let tree = Tree::load(&root, &mut |p| Ok(files.get(p).map(|s| s.to_string()))).unwrap();
        rule::check(&tree).iter().map(|v| v.to_string()).collect()
    }

    #[test]
    fn siblings_import_only_those_declared_before_them() {
        assert_eq!(
            violations(&[
                ("src/main.rs", "mod a; mod b; mod c; use c::Z; fn main() {}"),
                ("src/a.rs", "pub fn f() {}"),
                ("src/b.rs", "use crate::{a::f, c::{self, Y}}; pub fn g() {}"),
                ("src/c.rs", "use super::b::g; pub struct Y; pub struct Z;"),
            ]),
            ["src/b.rs imports src/c.rs (c is declared after b in src/main.rs)"]
        );
    }

    #[test]
    fn a_cycle_is_reported_on_its_upward_side() {
        assert_eq!(
            violations(&[
                ("src/lib.rs", "mod a; mod b;"),
                ("src/a.rs", "pub fn f() { crate::b::g() }"),
                ("src/b.rs", "pub fn g() { crate::a::f() }"),
            ]),
            ["src/a.rs imports src/b.rs (b is declared after a in src/lib.rs)"]
        );
    }

    #[test]
    fn parents_come_after_their_children() {
        assert_eq!(
            violations(&[
                (
                    "src/main.rs",
                    "mod util; mod runner; pub const X: u8 = 0; fn main() { runner::run() }"
                ),
                ("src/util.rs", "pub fn u() {}"),
                (
                    "src/runner/mod.rs",
                    "mod batch; mod action; pub use self::action::run; pub struct Job;"
                ),
                (
                    "src/runner/batch.rs",
                    "use super::Job; use crate::util::u; use super::action::A;"
                ),
                (
                    "src/runner/action.rs",
                    "pub struct A; pub fn run() { super::batch::b(); let _ = crate::X; }\n\
                     #[cfg(test)] mod tests { use super::super::Job; use crate::X; }"
                ),
            ]),
            [
                "src/runner/action.rs imports src/main.rs (an upward import: the crate root is \
                 a parent of runner::action, and a parent comes after its children)",
                "src/runner/batch.rs imports src/runner/action.rs (action is declared after \
                 batch in src/runner/mod.rs)",
                "src/runner/batch.rs imports src/runner/mod.rs (an upward import: runner is a \
                 parent of runner::batch, and a parent comes after its children)",
            ]
        );
    }

    #[test]
    fn deeper_modules_follow_their_branches() {
        assert_eq!(
            violations(&[
                ("src/main.rs", "mod a; mod b;"),
                ("src/a/mod.rs", "mod x; mod y;"),
                ("src/a/x.rs", "use crate::b::deep::D;"),
                ("src/a/y.rs", "use super::x::X;"),
                ("src/b.rs", "pub mod deep; use crate::a::y::Y;"),
                (
                    "src/b/deep.rs",
                    "use crate::a::x::X; mod inner { use crate::b::B; }"
                ),
            ]),
            [
                "src/a/x.rs imports src/b/deep.rs (b is declared after a in src/main.rs)",
                "src/b/deep.rs imports src/b.rs (an upward import: b is a parent of b::deep, and \
                 a parent comes after its children)",
            ]
        );
    }

    #[test]
    fn path_attributes_and_inline_modules_are_followed() {
        assert_eq!(
            violations(&[
                (
                    "src/main.rs",
                    "#[path = \"other/z.rs\"] mod z; mod wrap { mod w; }"
                ),
                ("src/other/z.rs", "use crate::wrap::w::W;"),
                ("src/wrap/w.rs", "pub struct W;"),
            ]),
            ["src/other/z.rs imports src/wrap/w.rs (wrap is declared after z in src/main.rs)"]
        );
    }

    /// xtask and the benchmark keep their own rule.
    #[test]
    fn xtask_and_bench_follow_the_rule() {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        for dir in ["xtask", "bench"] {
            let krate = Crate {
                name: dir.into(),
                dir: workspace.join(dir),
                roots: vec![PathBuf::from("src/main.rs")],
            };
            let (violations, _) = check_crate(&krate).unwrap();
            let lines: Vec<String> = violations.iter().map(|v| v.to_string()).collect();
            assert!(lines.is_empty(), "{dir}: {lines:#?}");
        }
    }
}
