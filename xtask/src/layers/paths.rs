//! The paths a module's own items name that start at a module of the same
//! crate: `crate::…`, `super::…` and `self::…`, from `use` trees (grouped
//! ones flattened, `pub use` included), from paths in code and types
//! (`crate::a::f()`), and from the tokens of macro calls
//! (`format!("{}", crate::a::X)`). Paths in visibilities (`pub(in
//! crate::a)`) and attributes name no import, and nested modules (`mod x
//! { … }`) are left to the caller, which knows where they are.

use proc_macro2::{TokenStream, TokenTree};
use syn::{
    Attribute, Item, ItemMod, ItemUse, Macro, UseTree, Visibility,
    visit::{self, Visit},
};

/// A path's module segments, starting with `crate`, `super` or `self`;
/// what follows the last module is left on (the resolver stops at it).
pub type Segments = Vec<String>;

/// The crate-relative paths in `items`, except inside nested `mod`s.
pub fn of(items: &[Item]) -> Vec<Segments> {
    let mut paths = Paths(Vec::new());
    for item in items {
        paths.visit_item(item);
    }
    paths.0
}

/// Whether a path starting with `first` is relative to this crate's modules.
fn relative(first: &str) -> bool {
    matches!(first, "crate" | "super" | "self")
}

struct Paths(Vec<Segments>);

impl Paths {
    fn push(&mut self, segments: Segments) {
        if segments.first().is_some_and(|s| relative(s)) {
            self.0.push(segments);
        }
    }

    /// `crate::a::b`, `super::c` and `$crate::d` among a macro's tokens.
    fn tokens(&mut self, tokens: TokenStream) {
        let tokens: Vec<TokenTree> = tokens.into_iter().collect();
        let mut i = 0;
        while i < tokens.len() {
            match &tokens[i] {
                TokenTree::Group(group) => self.tokens(group.stream()),
                TokenTree::Ident(ident) if relative(&ident.to_string()) => {
                    let mut segments = vec![ident.to_string()];
                    while let [
                        TokenTree::Punct(a),
                        TokenTree::Punct(b),
                        TokenTree::Ident(next),
                        ..,
                    ] = &tokens[i + 1..]
                        && a.as_char() == ':'
                        && b.as_char() == ':'
                    {
                        segments.push(next.to_string());
                        i += 3;
                    }
                    if segments.len() > 1 {
                        self.push(segments);
                    }
                }
                _ => {}
            }
            i += 1;
        }
    }
}

/// Every path a `use` tree imports, `prefix` first; `a::{self}` is `a`.
fn flatten(tree: &UseTree, prefix: &mut Segments, out: &mut Vec<Segments>) {
    let mut with = |last: &syn::Ident| {
        let mut path = prefix.clone();
        if last != "self" || path.is_empty() {
            path.push(last.to_string());
        }
        out.push(path);
    };
    match tree {
        UseTree::Path(p) => {
            prefix.push(p.ident.to_string());
            flatten(&p.tree, prefix, out);
            prefix.pop();
        }
        UseTree::Name(n) => with(&n.ident),
        UseTree::Rename(r) => with(&r.ident),
        UseTree::Glob(_) => out.push(prefix.clone()),
        UseTree::Group(g) => {
            for tree in &g.items {
                flatten(tree, prefix, out);
            }
        }
    }
}

impl<'ast> Visit<'ast> for Paths {
    fn visit_item_use(&mut self, item: &'ast ItemUse) {
        if item.leading_colon.is_some() {
            return;
        }
        let mut out = Vec::new();
        flatten(&item.tree, &mut Vec::new(), &mut out);
        for path in out {
            self.push(path);
        }
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        // A lone `self` is the receiver, not a module.
        if path.leading_colon.is_none() && path.segments.len() > 1 {
            self.push(path.segments.iter().map(|s| s.ident.to_string()).collect());
        }
        visit::visit_path(self, path);
    }

    fn visit_macro(&mut self, mac: &'ast Macro) {
        self.visit_path(&mac.path);
        self.tokens(mac.tokens.clone());
    }

    fn visit_item_mod(&mut self, _: &'ast ItemMod) {}

    fn visit_visibility(&mut self, _: &'ast Visibility) {}

    fn visit_attribute(&mut self, _: &'ast Attribute) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(source: &str) -> Vec<String> {
        of(&syn::parse_file(source).unwrap().items)
            .into_iter()
            .map(|p| p.join("::"))
            .collect()
    }

    #[test]
    fn use_trees_are_flattened() {
        assert_eq!(
            paths(
                "use crate::{a::{X, self as y}, b}; pub use self::c::*; \
                 use super::{self as s, d::E as F}; use std::fs; use ::g::h;"
            ),
            [
                "crate::a::X",
                "crate::a",
                "crate::b",
                "self::c",
                "super",
                "super::d::E"
            ]
        );
    }

    #[test]
    fn paths_in_code_types_and_macros() {
        assert_eq!(
            paths(
                "pub(in crate::v) fn f(x: super::t::T) -> Self { \
                 crate::a::f(); let _ = Self::new(); \
                 format!(\"{}\", crate::m::X); vec![$crate::n::Y]; self.x; crate::mac!(); \
                 use crate::b::Z; } \
                 #[crate::attr] struct S; mod inner { use crate::hidden; }"
            ),
            [
                "super::t::T",
                "crate::a::f",
                "crate::m::X",
                "crate::n::Y",
                "crate::mac",
                "crate::b::Z"
            ]
        );
    }
}
