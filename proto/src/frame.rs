//! Framing: every frame is a 4-byte big-endian length, then that many bytes of
//! one protobuf message (docs/PROTOCOL.md, "Frames").

use tokio_util::codec::LengthDelimitedCodec;

/// The protocol version this crate speaks; carried in every `Request`.
pub const PROTOCOL_VERSION: u32 = 1;

/// Default largest frame body, in bytes. 4 MiB, as ttrpc and gRPC: large
/// enough for a long transcript sent whole by an upstream-style runner, small
/// enough that a hostile length prefix cannot make the daemon allocate much.
pub const DEFAULT_MAX_FRAME_LENGTH: usize = 4 * 1024 * 1024;

/// Bytes in the length prefix.
pub const LENGTH_PREFIX_BYTES: usize = 4;

/// A codec for stigmer frames: u32 big-endian length prefix (not counting
/// itself), bodies of at most `max_frame_length` bytes. A longer announced
/// length is a decode error that names the limit
/// (`LengthDelimitedCodecError`), before any of the body is buffered.
pub fn codec(max_frame_length: usize) -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_length(LENGTH_PREFIX_BYTES)
        .big_endian()
        .max_frame_length(max_frame_length)
        .new_codec()
}

/// True when an I/O error from [`codec`] means "frame longer than the limit".
pub fn is_frame_too_long(err: &std::io::Error) -> bool {
    err.get_ref()
        .map(|inner| inner.is::<tokio_util::codec::LengthDelimitedCodecError>())
        .unwrap_or(false)
}
