//! A crate's module tree, read from its root file (`src/main.rs`,
//! `src/lib.rs`, `src/bin/x.rs`) by following its `mod x;` declarations
//! the way rustc does: each module with the file it lives in, its children
//! in the order they are declared, and the crate-relative paths its own
//! items name.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use syn::{Expr, ExprLit, Item, ItemMod, Lit, Meta, ext::IdentExt as _};

use super::paths::{self, Segments};

/// An index into [`Tree::modules`]; the crate root is 0.
pub type ModId = usize;

pub struct Module {
    /// The module's name (`crate` for the root).
    pub name: String,
    pub parent: Option<ModId>,
    /// In the order they are declared.
    pub children: Vec<ModId>,
    /// The file its items are in, relative to the crate's directory.
    pub file: PathBuf,
    /// A `mod x { … }` block, part of the file it is written in.
    pub inline: bool,
    /// An inline `mod tests`, or inside one: its imports are not checked.
    pub exempt: bool,
    /// The crate-relative paths its own items name.
    pub paths: Vec<Segments>,
}

pub struct Tree {
    pub modules: Vec<Module>,
}

/// Where a file's `mod x;` declarations look for their files.
struct Dirs {
    /// `x.rs` and `x/mod.rs` are looked for here.
    children: PathBuf,
    /// A `#[path]` is relative to this.
    path_attr: PathBuf,
}

impl Tree {
    /// Reads the tree whose root file is `root` (relative to the crate's
    /// directory), reading each file with `read`, which returns `None` for
    /// a file that does not exist.
    pub fn load(
        root: &Path,
        read: &mut dyn FnMut(&Path) -> anyhow::Result<Option<String>>,
    ) -> anyhow::Result<Self> {
        let mut tree = Self {
            modules: vec![Module {
                name: "crate".into(),
                parent: None,
                children: Vec::new(),
                file: root.to_path_buf(),
                inline: false,
                exempt: false,
                paths: Vec::new(),
            }],
        };
        let source = read(root)?.with_context(|| format!("{} is missing", root.display()))?;
        tree.file(0, &source, true, read)?;
        Ok(tree)
    }

    /// The file module `id`'s items, from `source`. A mod-rs file (a crate
    /// root, a `mod.rs`, a file named by `#[path]`) keeps its children
    /// beside it, any other file `x.rs` in `x/`.
    fn file(
        &mut self,
        id: ModId,
        source: &str,
        mod_rs: bool,
        read: &mut dyn FnMut(&Path) -> anyhow::Result<Option<String>>,
    ) -> anyhow::Result<()> {
        let file = self.modules[id].file.clone();
        let ast = syn::parse_file(source).with_context(|| format!("parsing {}", file.display()))?;
        let beside = file.parent().unwrap_or(Path::new("")).to_path_buf();
        let dirs = Dirs {
            children: if mod_rs {
                beside.clone()
            } else {
                file.with_extension("")
            },
            path_attr: beside,
        };
        self.items(id, &ast.items, &dirs, read)
    }

    fn items(
        &mut self,
        id: ModId,
        items: &[Item],
        dirs: &Dirs,
        read: &mut dyn FnMut(&Path) -> anyhow::Result<Option<String>>,
    ) -> anyhow::Result<()> {
        self.modules[id].paths = paths::of(items);
        for item in items {
            let Item::Mod(decl) = item else { continue };
            let name = decl.ident.unraw().to_string();
            let parent = &self.modules[id];
            let child = Module {
                name: name.clone(),
                parent: Some(id),
                children: Vec::new(),
                file: parent.file.clone(),
                inline: decl.content.is_some(),
                exempt: parent.exempt || (decl.content.is_some() && name == "tests"),
                paths: Vec::new(),
            };
            let child_id = self.modules.len();
            self.modules.push(child);
            self.modules[id].children.push(child_id);
            if let Some((_, inner)) = &decl.content {
                // Inside `mod x { … }`, declarations look in `x/`, and so
                // does a `#[path]`.
                let sub = dirs.children.join(&name);
                let dirs = Dirs {
                    children: sub.clone(),
                    path_attr: sub,
                };
                self.items(child_id, inner, &dirs, read)?;
                continue;
            }
            let (file, source, mod_rs) = match path_attr(decl)? {
                Some(path) => {
                    let file = dirs.path_attr.join(path);
                    let source = read(&file)?.with_context(|| {
                        format!(
                            "{} declares `mod {name}` at {}, which is missing",
                            self.modules[id].file.display(),
                            file.display()
                        )
                    })?;
                    (file, source, true)
                }
                None => {
                    let flat = dirs.children.join(format!("{name}.rs"));
                    let nested = dirs.children.join(&name).join("mod.rs");
                    match (read(&flat)?, read(&nested)?) {
                        (Some(source), None) => (flat, source, false),
                        (None, Some(source)) => (nested, source, true),
                        (Some(_), Some(_)) => bail!(
                            "both {} and {} exist for `mod {name}`",
                            flat.display(),
                            nested.display()
                        ),
                        (None, None) => bail!(
                            "{} declares `mod {name}`, but neither {} nor {} exists",
                            self.modules[id].file.display(),
                            flat.display(),
                            nested.display()
                        ),
                    }
                }
            };
            self.modules[child_id].file = file;
            self.file(child_id, &source, mod_rs, read)?;
        }
        Ok(())
    }

    /// The module a path leads to: from its start (`crate`, `self`, each
    /// `super` a level up), down through the modules it names, to the last
    /// one before an item. `None` for a `super` above the crate root.
    pub fn resolve(&self, scope: ModId, path: &[String]) -> Option<ModId> {
        let mut at = scope;
        let mut rest = path;
        if let [first, tail @ ..] = path
            && first == "crate"
        {
            at = 0;
            rest = tail;
        }
        while let [first, tail @ ..] = rest
            && (first == "super" || first == "self")
        {
            if first == "super" {
                at = self.modules[at].parent?;
            }
            rest = tail;
        }
        for segment in rest {
            match self.modules[at]
                .children
                .iter()
                .find(|&&c| self.modules[c].name == *segment)
            {
                Some(&child) => at = child,
                None => break,
            }
        }
        Some(at)
    }

    /// The module of the file `id` is written in: itself, or for an
    /// inline module the file module around it.
    pub fn file_module(&self, mut id: ModId) -> ModId {
        while self.modules[id].inline {
            id = self.modules[id]
                .parent
                .expect("an inline module has a parent");
        }
        id
    }

    /// `id` and its ancestors, `id` first.
    pub fn ancestors(&self, id: ModId) -> impl Iterator<Item = ModId> + '_ {
        std::iter::successors(Some(id), |&m| self.modules[m].parent)
    }

    /// `a::b::c`, or `the crate root`.
    pub fn name(&self, id: ModId) -> String {
        let mut names: Vec<&str> = self
            .ancestors(id)
            .filter(|&m| m != 0)
            .map(|m| self.modules[m].name.as_str())
            .collect();
        if names.is_empty() {
            return "the crate root".into();
        }
        names.reverse();
        names.join("::")
    }
}

/// The file a `#[path = "…"]` names, if the declaration has one.
fn path_attr(decl: &ItemMod) -> anyhow::Result<Option<PathBuf>> {
    for attr in &decl.attrs {
        if !attr.path().is_ident("path") {
            continue;
        }
        if let Meta::NameValue(nv) = &attr.meta
            && let Expr::Lit(ExprLit {
                lit: Lit::Str(s), ..
            }) = &nv.value
        {
            return Ok(Some(PathBuf::from(s.value())));
        }
        bail!("`mod {}`: a #[path] that is not a string", decl.ident);
    }
    Ok(None)
}
