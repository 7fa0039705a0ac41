//! Fails the test command on any import cycle between the top-level modules
//! of `src/` (docs/ARCHITECTURE.md, "Invariants": data flows one way).
//!
//! Every `crate::` and `super::` path outside test code counts: in `use`
//! items, in types and expressions, and inside macro invocations (scanned as
//! tokens, since `tracing::warn!(...)` or `format!(...)` bodies are not
//! parsed as Rust). `#[cfg(test)]` items are skipped.
//!
//! Why hand-written around `syn` (a well-kept parser) and `petgraph` (a
//! well-kept graph library) rather than a ready tool: `cargo-modules`
//! (rust-analyzer based) and `cargo-cycles` both build their graphs from
//! `use` items only, miss paths written inline (`crate::protocol::x(...)`),
//! do not skip test code, and report cycles between submodules of one
//! module (such as `server::connection` ↔ `server`), which are allowed here.
//! What is left to write is a path resolver of some fifty lines.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use petgraph::algo::tarjan_scc;
use petgraph::graphmap::DiGraphMap;
use proc_macro2::{TokenStream, TokenTree};
use syn::visit::Visit;

/// One reference from one top-level module to another: where it is written.
#[derive(Clone, Debug)]
struct Edge {
    from: String,
    to: String,
    at: String,
}

/// The module path of a file under `src/` (`src/a/b.rs` and `src/a/b/mod.rs`
/// are `["a", "b"]`; `src/lib.rs` is `[]`).
fn module_path(relative: &Path) -> Vec<String> {
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if let Some(last) = parts.pop() {
        let stem = last.trim_end_matches(".rs").to_string();
        if stem != "mod" && stem != "lib" {
            parts.push(stem);
        }
    }
    parts
}

/// Collects the top-level modules a file's paths reach.
struct Collector<'a> {
    /// The module the code being visited is in (grows inside inline `mod`s).
    module: Vec<String>,
    /// The crate's top-level modules (`crate::X` counts only for these).
    tops: &'a BTreeSet<String>,
    file: String,
    edges: Vec<Edge>,
}

impl Collector<'_> {
    /// Records the path `segments` (from `crate`, `super` or `self`).
    fn note(&mut self, segments: &[String], line: usize) {
        let Some(from) = self.module.first().cloned() else {
            return; // lib.rs itself declares the modules
        };
        let target = match segments.first().map(String::as_str) {
            Some("crate") => segments.get(1).cloned(),
            Some("super") => {
                let ups = segments.iter().take_while(|s| *s == "super").count();
                if ups > self.module.len() {
                    return;
                }
                let base = &self.module[..self.module.len() - ups];
                match base.first() {
                    Some(top) => Some(top.clone()),
                    None => segments.get(ups).cloned(),
                }
            }
            _ => None,
        };
        if let Some(to) = target.filter(|t| self.tops.contains(t) && *t != from) {
            self.edges.push(Edge {
                from,
                to,
                at: format!("{}:{line}", self.file),
            });
        }
    }

    /// Finds `crate :: x` and `super :: x` sequences in macro tokens.
    fn scan_tokens(&mut self, tokens: TokenStream) {
        let trees: Vec<TokenTree> = tokens.into_iter().collect();
        for (i, tree) in trees.iter().enumerate() {
            match tree {
                TokenTree::Group(group) => self.scan_tokens(group.stream()),
                TokenTree::Ident(ident) if ident == "crate" || ident == "super" => {
                    let mut segments = vec![ident.to_string()];
                    let mut j = i + 1;
                    // `::` is two `:` puncts, then an identifier.
                    while let (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b)), Some(next)) =
                        (trees.get(j), trees.get(j + 1), trees.get(j + 2))
                    {
                        if a.as_char() != ':' || b.as_char() != ':' {
                            break;
                        }
                        match next {
                            TokenTree::Ident(id) => segments.push(id.to_string()),
                            _ => break,
                        }
                        j += 3;
                    }
                    let line = ident.span().start().line;
                    self.note(&segments, line);
                }
                _ => {}
            }
        }
    }
}

/// True for `#[cfg(test)]` (and `#[cfg(all(test, ...))]` and the like).
fn is_test_only(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|attr| {
        attr.path().is_ident("cfg") && {
            let mut test = false;
            let _ = attr.parse_nested_meta(|meta| {
                test |= meta.path.is_ident("test");
                if meta.path.is_ident("all") {
                    let _ = meta.parse_nested_meta(|inner| {
                        test |= inner.path.is_ident("test");
                        Ok(())
                    });
                }
                Ok(())
            });
            test
        }
    })
}

fn item_attrs(item: &syn::Item) -> &[syn::Attribute] {
    use syn::Item::*;
    match item {
        Const(i) => &i.attrs,
        Enum(i) => &i.attrs,
        ExternCrate(i) => &i.attrs,
        Fn(i) => &i.attrs,
        ForeignMod(i) => &i.attrs,
        Impl(i) => &i.attrs,
        Macro(i) => &i.attrs,
        Mod(i) => &i.attrs,
        Static(i) => &i.attrs,
        Struct(i) => &i.attrs,
        Trait(i) => &i.attrs,
        TraitAlias(i) => &i.attrs,
        Type(i) => &i.attrs,
        Union(i) => &i.attrs,
        Use(i) => &i.attrs,
        _ => &[],
    }
}

impl<'ast> Visit<'ast> for Collector<'_> {
    fn visit_item(&mut self, item: &'ast syn::Item) {
        if is_test_only(item_attrs(item)) {
            return;
        }
        syn::visit::visit_item(self, item);
    }

    fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
        if !is_test_only(&f.attrs) {
            syn::visit::visit_impl_item_fn(self, f);
        }
    }

    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        // An inline module's paths are relative to it; a `mod x;`
        // declaration is its own file, visited on its own.
        if m.content.is_some() {
            self.module.push(m.ident.to_string());
            syn::visit::visit_item_mod(self, m);
            self.module.pop();
        }
    }

    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        fn walk(c: &mut Collector<'_>, prefix: &mut Vec<String>, tree: &syn::UseTree) {
            match tree {
                syn::UseTree::Path(p) => {
                    prefix.push(p.ident.to_string());
                    walk(c, prefix, &p.tree);
                    prefix.pop();
                }
                syn::UseTree::Name(syn::UseName { ident, .. })
                | syn::UseTree::Rename(syn::UseRename { ident, .. }) => {
                    prefix.push(ident.to_string());
                    let segments = prefix.clone();
                    c.note(&segments, ident.span().start().line);
                    prefix.pop();
                }
                syn::UseTree::Glob(g) => {
                    let line = g.star_token.span.start().line;
                    let segments = prefix.clone();
                    c.note(&segments, line);
                }
                syn::UseTree::Group(g) => {
                    for tree in &g.items {
                        walk(c, prefix, tree);
                    }
                }
            }
        }
        walk(self, &mut Vec::new(), &item.tree);
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        if let Some(first) = path.segments.first() {
            self.note(&segments, first.ident.span().start().line);
        }
        syn::visit::visit_path(self, path);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        self.scan_tokens(mac.tokens.clone());
        syn::visit::visit_macro(self, mac);
    }
}

/// Every cross-module reference in the files `(path under src/, text)`;
/// `tops` are the crate's top-level modules.
fn edges(files: &[(PathBuf, String)], tops: &BTreeSet<String>) -> Vec<Edge> {
    let mut all = Vec::new();
    for (path, text) in files {
        let parsed = syn::parse_file(text)
            .unwrap_or_else(|e| panic!("src/{} does not parse: {e}", path.display()));
        let mut collector = Collector {
            module: module_path(path),
            tops,
            file: format!("src/{}", path.display()),
            edges: Vec::new(),
        };
        collector.visit_file(&parsed);
        all.extend(collector.edges);
    }
    all
}

/// The cycles among `edges`: each strongly connected component of two or
/// more modules, with the references that close it.
fn cycles(edges: &[Edge]) -> Vec<(Vec<String>, Vec<Edge>)> {
    let mut graph = DiGraphMap::<&str, ()>::new();
    for edge in edges {
        graph.add_edge(edge.from.as_str(), edge.to.as_str(), ());
    }
    tarjan_scc(&graph)
        .into_iter()
        .filter(|scc| scc.len() > 1)
        .map(|scc| {
            let members: BTreeSet<&str> = scc.iter().copied().collect();
            let inside = edges
                .iter()
                .filter(|e| members.contains(e.from.as_str()) && members.contains(e.to.as_str()))
                .cloned()
                .collect();
            (members.into_iter().map(String::from).collect(), inside)
        })
        .collect()
}

/// Every `.rs` file under `dir`, relative to it.
fn rust_files(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(next) = stack.pop() {
        let entries = std::fs::read_dir(&next).expect("read src/");
        for entry in entries {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("read a source file");
                let relative = path.strip_prefix(dir).expect("under src/").to_path_buf();
                out.push((relative, text));
            }
        }
    }
    out.sort();
    out
}

/// The top-level modules: `src/X.rs` and `src/X/mod.rs`.
fn top_modules(files: &[(PathBuf, String)]) -> BTreeSet<String> {
    files
        .iter()
        .filter_map(|(path, _)| module_path(path).first().cloned())
        .collect()
}

fn report(found: &[(Vec<String>, Vec<Edge>)]) -> String {
    let mut text = String::new();
    for (members, inside) in found {
        text.push_str(&format!("cycle between {}:\n", members.join(", ")));
        let mut by_pair: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
        for e in inside {
            by_pair
                .entry((e.from.clone(), e.to.clone()))
                .or_default()
                .insert(e.at.clone());
        }
        for ((from, to), at) in by_pair {
            let shown: Vec<_> = at.iter().take(3).cloned().collect();
            text.push_str(&format!(
                "  {from} -> {to} (in {} places, e.g. {})\n",
                at.len(),
                shown.join(", ")
            ));
        }
    }
    text
}

#[test]
fn no_cycle_between_top_level_modules() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files: Vec<_> = rust_files(&src)
        .into_iter()
        .filter(|(path, _)| path != Path::new("main.rs"))
        .collect();
    let tops = top_modules(&files);
    let found = cycles(&edges(&files, &tops));
    assert!(
        found.is_empty(),
        "import cycles between top-level modules of src/ (docs/ARCHITECTURE.md, \
         \"Invariants\"):\n{}",
        report(&found)
    );
}

/// The checker sees every kind of reference, and not test code.
#[test]
fn the_checker_finds_cycles_through_every_kind_of_path() {
    let tops: BTreeSet<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
    let case = |a: &str, b: &str| {
        let files = vec![
            (PathBuf::from("a/mod.rs"), a.to_string()),
            (PathBuf::from("b/inner.rs"), b.to_string()),
        ];
        cycles(&edges(&files, &tops))
    };
    let b_uses_a = "use crate::a::X;";
    // `use`, an inline path, `super::super::`, a macro body, a nested use group.
    for a in [
        "use crate::b::Y;",
        "fn f() { crate::b::inner::g(); }",
        "mod m { fn f() -> super::super::b::Y { todo!() } }",
        "fn f() { tracing::info!(\"{}\", crate::b::NAME); }",
        "use crate::{c, b::{inner::Z}};",
    ] {
        let found = case(a, b_uses_a);
        assert_eq!(found.len(), 1, "missed: {a}");
        assert_eq!(found[0].0, ["a", "b"]);
    }
    // Test code and paths within one module do not count.
    for a in [
        "#[cfg(test)] mod tests { use crate::b::Y; }",
        "#[cfg(test)] fn f() { crate::b::g(); }",
        "use crate::a::inner::X; use self::x::Y;",
        "struct S; impl S { #[cfg(test)] fn f() { crate::b::g(); } }",
    ] {
        assert!(case(a, b_uses_a).is_empty(), "wrongly counted: {a}");
    }
    // `super::` from b/inner.rs stays in b.
    assert!(case("use crate::b::Y;", "use super::Z;").is_empty());
}
