//! Request decoding: a frame body to a `Request`, recovering the id of a
//! malformed one so that only that request is refused, not the connection.

use prost::Message;
use stigmer_proto::daemon::Request;

use super::ApiError;

/// Why a frame could not be decoded as a `Request`.
#[derive(Debug)]
pub enum DecodeError {
    /// The envelope decoded far enough to read a non-zero `id`: answer this
    /// request only, the connection stays usable.
    Request { id: u64, error: ApiError },
    /// Not even the envelope's `id` could be read: a connection error.
    Connection(ApiError),
}

/// Just the envelope fields, for a frame whose command does not decode:
/// unknown and malformed fields of the command are skipped as opaque bytes, so
/// this recovers the id whenever the framing of the envelope itself is sound.
#[derive(Clone, PartialEq, prost::Message)]
struct RequestHeader {
    #[prost(uint32, tag = "1")]
    protocol_version: u32,
    #[prost(uint64, tag = "2")]
    id: u64,
}

/// Decodes one frame body as a `Request`.
pub fn decode_request(body: &[u8]) -> Result<Request, DecodeError> {
    match Request::decode(body) {
        Ok(req) => Ok(req),
        Err(err) => match RequestHeader::decode(body) {
            Ok(header) if header.id != 0 => Err(DecodeError::Request {
                id: header.id,
                error: ApiError::invalid_argument(format!("request does not decode: {err}")),
            }),
            _ => Err(DecodeError::Connection(ApiError::invalid_argument(
                format!("frame is not a stigmer Request: {err}"),
            ))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undecodable_command_keeps_the_id() {
        // version 1, id 9, then create { spec { message: "\xff" } }: invalid UTF-8.
        let body = [
            0x08, 0x01, 0x10, 0x09, 0x5a, 0x05, 0x22, 0x03, 0x1a, 0x01, 0xff,
        ];
        match decode_request(&body) {
            Err(DecodeError::Request { id, .. }) => assert_eq!(id, 9),
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(
            decode_request(&[0xff, 0xff]),
            Err(DecodeError::Connection(_))
        ));
    }
}
