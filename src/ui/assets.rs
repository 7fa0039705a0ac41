//! The dashboard's files, embedded in the binary at build time: plain HTML,
//! ES modules and CSS from `src/ui/assets/`, no build step and no Node
//! toolchain. Served only from here (the CSP allows no other origin).

/// `(name, content type, body)` of every asset under `/assets/`.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("assets/app.css"),
    ),
    (
        "common.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/common.js"),
    ),
    (
        "markdown.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/markdown.js"),
    ),
    (
        "list.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/list.js"),
    ),
    (
        "execution.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/execution.js"),
    ),
    (
        "daemon.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/daemon.js"),
    ),
];

/// The executions page.
pub(crate) const LIST_HTML: &str = include_str!("assets/list.html");
/// The execution page.
pub(crate) const EXECUTION_HTML: &str = include_str!("assets/execution.html");
/// The daemon page.
pub(crate) const DAEMON_HTML: &str = include_str!("assets/daemon.html");

/// The asset called `name`: its content type and body.
pub(crate) fn asset(name: &str) -> Option<(&'static str, &'static str)> {
    ASSETS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, t, b)| (*t, *b))
}
