//! Golden files shared with the Python client (`tests/vectors/*.json`):
//! hex helpers and the load-or-regenerate step both vector tests use.

use std::path::PathBuf;

/// `tests/vectors/<name>` at the repository root.
pub fn path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/vectors")
        .join(name)
}

pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn from_hex(s: &str) -> Vec<u8> {
    assert!(s.len() % 2 == 0, "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// The golden file `name`, parsed; first rewritten from `generated` when
/// `STIGMER_REGEN_VECTORS=1`. Callers compare the file with `generated`.
pub fn load(name: &str, generated: &str) -> (String, serde_json::Value) {
    let path = path(name);
    if std::env::var("STIGMER_REGEN_VECTORS").as_deref() == Ok("1") {
        std::fs::write(&path, generated).unwrap();
    }
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (regenerate with STIGMER_REGEN_VECTORS=1)",
            path.display()
        )
    });
    let file = serde_json::from_str(&text).unwrap();
    (text, file)
}
