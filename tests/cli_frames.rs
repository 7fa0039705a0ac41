//! The CLI against a daemon run with a larger `--max-frame-length` than the
//! default: states over the client's default 4 MiB frame can still be read
//! (`get`), appended to without an offset (which reads the message first)
//! and streamed (`subscribe`), since the CLI accepts what the daemon it
//! verified sends, up to 64 MiB.

mod common;

use std::io::Write;

use common::{cli_create, stigmer_ok, Daemon};

#[test]
fn states_over_four_mib_work_from_the_cli() {
    let d = Daemon::start(&["--max-frame-length", "16777216"]);
    let id = cli_create(&d, "agent", "s");
    // 5 MiB of text, from a file (a frame of its own to the daemon).
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    let big = "x".repeat(5 << 20);
    file.write_all(big.as_bytes()).expect("write");
    let path = file.path().to_str().expect("utf-8 path").to_string();
    stigmer_ok(&d, &["executions", "append", &id, "--text-file", &path]);
    // No offset: the CLI reads the 5 MiB message to find its end.
    stigmer_ok(&d, &["executions", "append", &id, "--text", " and more"]);
    let json = stigmer_ok(&d, &["executions", "get", &id, "-o", "json"]);
    let value: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    let content = value["status"]["messages"][0]["content"]
        .as_str()
        .expect("content");
    assert_eq!(content.len(), big.len() + " and more".len());
    assert!(content.ends_with("x and more"));
}
