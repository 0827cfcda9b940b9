//! The rule, checked on one module tree: each import goes to a module
//! declared before the importer's branch in their closest common parent,
//! or below the importer; never up to an ancestor.

use std::{fmt, path::PathBuf};

use super::tree::{ModId, Tree};

/// An import the rule forbids, between two files.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Violation {
    pub importer: PathBuf,
    pub imported: PathBuf,
    pub why: Why,
}

#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Why {
    /// The imported module's branch, `later`, is declared after the
    /// importer's, `earlier`, in `parent`'s file.
    After {
        later: String,
        earlier: String,
        parent: PathBuf,
    },
    /// The imported module is an ancestor of the importer.
    Upward { ancestor: String, module: String },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} imports {} (",
            self.importer.display(),
            self.imported.display()
        )?;
        match &self.why {
            Why::After {
                later,
                earlier,
                parent,
            } => write!(
                f,
                "{later} is declared after {earlier} in {}",
                parent.display()
            )?,
            Why::Upward { ancestor, module } => write!(
                f,
                "an upward import: {ancestor} is a parent of {module}, and a parent comes after \
                 its children"
            )?,
        }
        f.write_str(")")
    }
}

/// Every import in `tree` that breaks the rule, once per pair of files,
/// sorted.
pub fn check(tree: &Tree) -> Vec<Violation> {
    let mut found = Vec::new();
    for (scope, module) in tree.modules.iter().enumerate() {
        if module.exempt {
            continue;
        }
        let importer = tree.file_module(scope);
        for path in &module.paths {
            let Some(target) = tree.resolve(scope, path) else {
                continue;
            };
            if let Some(why) = why(tree, importer, tree.file_module(target)) {
                found.push(Violation {
                    importer: tree.modules[importer].file.clone(),
                    imported: tree.modules[tree.file_module(target)].file.clone(),
                    why,
                });
            }
        }
    }
    found.sort();
    found.dedup_by(|a, b| (&a.importer, &a.imported) == (&b.importer, &b.imported));
    found
}

/// Why the file module `importer` may not import the file module
/// `imported`, or `None` when it may.
fn why(tree: &Tree, importer: ModId, imported: ModId) -> Option<Why> {
    if importer == imported || tree.ancestors(imported).any(|m| m == importer) {
        // Itself, or below it.
        return None;
    }
    let importer_line: Vec<ModId> = tree.ancestors(importer).collect();
    if importer_line.contains(&imported) {
        return Some(Why::Upward {
            ancestor: tree.name(imported),
            module: tree.name(importer),
        });
    }
    // The children of the closest common ancestor on each side.
    let mut imported_branch = imported;
    let common = loop {
        let parent = tree.modules[imported_branch].parent?;
        if let Some(at) = importer_line.iter().position(|&m| m == parent) {
            break at;
        }
        imported_branch = parent;
    };
    let importer_branch = importer_line[common - 1];
    let parent = &tree.modules[importer_line[common]];
    let position = |m| parent.children.iter().position(|&c| c == m);
    (position(imported_branch) > position(importer_branch)).then(|| Why::After {
        later: tree.modules[imported_branch].name.clone(),
        earlier: tree.modules[importer_branch].name.clone(),
        parent: parent.file.clone(),
    })
}
