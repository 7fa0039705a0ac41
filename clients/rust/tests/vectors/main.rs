//! Golden frames shared by every client (tests/vectors/vectors.json).
//!
//! The file is generated from the Rust values in catalogue.rs, so it is the
//! encoding prost produces; other clients (the Python one) decode each vector
//! and re-encode it to prove they speak the same bytes. This test checks that
//! the committed file still matches the generator, that every vector's
//! length prefix is right, and that decoding then re-encoding gives the same
//! bytes.
//!
//! Regenerate after a deliberate change:
//! `STIGMER_REGEN_VECTORS=1 cargo test -p stigmer-client --test vectors`.
//!
//! One test binary: `fixtures.rs` (the vector type and message builders),
//! `catalogue.rs` (every vector), and here the file's encoding and the
//! tests.

#[path = "../golden/mod.rs"]
mod golden;

mod catalogue;
mod fixtures;

use golden::{from_hex, to_hex};
use stigmer_client::proto::daemon::{
    request::Command, response::Result as Reply, EventType, PingRequest, Request, Response,
};
use stigmer_client::proto::Message;

use catalogue::all_vectors;
use fixtures::{req, Msg, Vector};

/// The file's shape version (the `version` key). Never changes the shape.
const FILE_VERSION: u64 = 1;

fn encode(msg: &Msg) -> Vec<u8> {
    let body = match msg {
        Msg::Request(r) => r.encode_to_vec(),
        Msg::Response(r) => r.encode_to_vec(),
    };
    let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
    let mut frame = len.to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    frame
}

/// The file's text, with keys in a reader-friendly order
/// (name, message, description, frame_hex).
fn render_file(vectors: &[Vector]) -> String {
    let q = |s: &str| serde_json::to_string(s).unwrap();
    let mut out = format!("{{\n  \"version\": {FILE_VERSION},\n  \"vectors\": [\n");
    for (i, v) in vectors.iter().enumerate() {
        let message = match v.msg {
            Msg::Request(_) => "Request",
            Msg::Response(_) => "Response",
        };
        out.push_str(&format!(
            "    {{\n      \"name\": {},\n      \"message\": {},\n      \"description\": {},\n      \"frame_hex\": {}\n    }}{}\n",
            q(v.name),
            q(message),
            q(v.description),
            q(&to_hex(&encode(&v.msg))),
            if i + 1 < vectors.len() { "," } else { "" }
        ));
    }
    out.push_str("  ]\n}\n");
    out
}

#[test]
fn vectors_file_matches_generator_and_round_trips() {
    let generated = render_file(&all_vectors());
    let (text, file) = golden::load("vectors.json", &generated);
    assert_eq!(file["version"], FILE_VERSION);
    let vectors = file["vectors"].as_array().unwrap();
    assert!(!vectors.is_empty());
    let mut names = std::collections::HashSet::new();
    for v in vectors {
        let name = v["name"].as_str().unwrap();
        assert!(names.insert(name.to_string()), "duplicate vector {name}");
        assert!(!v["description"].as_str().unwrap().is_empty());
        let hex = v["frame_hex"].as_str().unwrap();
        assert_eq!(hex, hex.to_lowercase(), "{name}: hex must be lowercase");
        let frame = from_hex(hex);
        assert!(frame.len() >= 4, "{name}: no length prefix");
        let len = u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
        let body = &frame[4..];
        assert_eq!(len, body.len(), "{name}: length prefix");
        let reencoded = match v["message"].as_str().unwrap() {
            "Request" => {
                let m = Request::decode(body).unwrap();
                assert_eq!(m.protocol_version, 1, "{name}");
                assert_ne!(m.id, 0, "{name}: request ids are non-zero");
                assert!(m.command.is_some(), "{name}");
                m.encode_to_vec()
            }
            "Response" => {
                let m = Response::decode(body).unwrap();
                assert!(m.result.is_some(), "{name}");
                m.encode_to_vec()
            }
            other => panic!("{name}: unknown message {other}"),
        };
        assert_eq!(reencoded, body, "{name}: re-encoding differs");
    }
    assert_eq!(
        text, generated,
        "tests/vectors/vectors.json is stale: regenerate with STIGMER_REGEN_VECTORS=1"
    );
}

#[test]
fn ping_vector_is_the_documented_example() {
    let frame = encode(&req(1, Command::Ping(PingRequest {})));
    assert_eq!(to_hex(&frame), "00000006080110015200");
}

#[test]
fn vectors_cover_every_command_reply_and_event() {
    let vectors = all_vectors();
    let mut commands = std::collections::HashSet::new();
    let mut replies = std::collections::HashSet::new();
    let mut events = std::collections::HashSet::new();
    let mut reasons = std::collections::HashSet::new();
    for v in &vectors {
        match &v.msg {
            Msg::Request(r) => {
                let c = r.command.as_ref().unwrap();
                commands.insert(std::mem::discriminant(c));
            }
            Msg::Response(r) => {
                let res = r.result.as_ref().unwrap();
                replies.insert(std::mem::discriminant(res));
                if let Reply::Event(e) = res {
                    events.insert(e.r#type);
                    if e.r#type == EventType::EventEnd as i32 {
                        reasons.insert(e.reason);
                    }
                }
            }
        }
    }
    assert_eq!(commands.len(), 10, "every Request command");
    assert_eq!(replies.len(), 8, "every Response result");
    assert_eq!(events.len(), 5, "every event type");
    assert_eq!(reasons.len(), 5, "every end reason");
}
