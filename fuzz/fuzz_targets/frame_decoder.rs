//! The frame decoder: arbitrary bytes from a peer through the daemon's
//! codec (4-byte big-endian length, bounded) and `decode_request`, fed in
//! arbitrary slices as a socket would deliver them.
//!
//! Invariants: no panic; a frame is never longer than the limit; an announced
//! length over the limit is an error flagged `is_frame_too_long`; every frame
//! decodes to a request, a request error carrying a non-zero id, or a
//! connection error; a decoded request re-encodes and decodes to itself.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use prost::Message;
use stigmer::internals::{decode_request, DecodeError};
use stigmer_proto::daemon::Request;
use tokio_util::codec::Decoder;

/// Small, so that both sides of the limit are reachable.
const LIMIT: usize = 4096;

fuzz_target!(|data: &[u8]| {
    // The first byte chooses how the stream is sliced into reads.
    let (step, data) = match data.split_first() {
        Some((s, rest)) => ((*s as usize % 17) + 1, rest),
        None => return,
    };
    let mut codec = stigmer_proto::frame::codec(LIMIT);
    let mut buf = BytesMut::new();
    for chunk in data.chunks(step) {
        buf.extend_from_slice(chunk);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => {
                    assert!(frame.len() <= LIMIT, "frame of {} bytes", frame.len());
                    check_body(&frame);
                }
                Ok(None) => break,
                Err(err) => {
                    // The daemon answers and closes the connection here.
                    assert!(stigmer_proto::frame::is_frame_too_long(&err), "{err}");
                    return;
                }
            }
        }
    }
    // EOF: whatever is left is a cut-off frame, which just ends the connection.
    let _ = codec.decode_eof(&mut buf);
});

fn check_body(body: &[u8]) {
    match decode_request(body) {
        Ok(req) => {
            let again = Request::decode(req.encode_to_vec().as_slice()).expect("re-decodes");
            assert_eq!(again, req);
        }
        Err(DecodeError::Request { id, .. }) => assert_ne!(id, 0),
        Err(DecodeError::Connection(_)) => {}
    }
}
