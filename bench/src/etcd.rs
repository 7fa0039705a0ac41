//! The etcd side (issue 21): a minimal gRPC client of etcd's v3 API, just
//! `KV/Put` and `Watch/Watch`, on the `h2` crate over one loopback TCP
//! connection each, with the few messages it needs declared here with
//! prost's derive (field numbers from etcd's `rpc.proto` and `kv.proto`).
//!
//! Why not `etcd-client`: it is built on tonic, whose channel puts a tower
//! buffer (a task fed by an mpsc channel) and hyper's dispatcher in front of
//! every call, hops the stigmer and Redis clients do not have; and its build
//! runs protoc. Here a call is one HTTP/2 stream: the request's HEADERS and
//! one DATA frame of pre-built bytes, as a gRPC client writes them. HTTP/2
//! itself needs a connection driver: h2's `Connection` future runs as a task
//! on the bench's one-thread runtime, so a call costs a task switch on the
//! same thread, not a thread wake-up (docs/PERFORMANCE.md, fairness).

use std::io;
use std::net::SocketAddr;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use h2::client::SendRequest;
use h2::RecvStream;
use prost::Message;

use crate::wire::{self, invalid};

/// etcdserverpb.ResponseHeader.
#[derive(Clone, PartialEq, Message)]
pub struct ResponseHeader {
    #[prost(uint64, tag = "1")]
    pub cluster_id: u64,
    #[prost(uint64, tag = "2")]
    pub member_id: u64,
    #[prost(int64, tag = "3")]
    pub revision: i64,
    #[prost(uint64, tag = "4")]
    pub raft_term: u64,
}

/// etcdserverpb.PutRequest (key, value; no lease, no prev_kv).
#[derive(Clone, PartialEq, Message)]
pub struct PutRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// etcdserverpb.PutResponse.
#[derive(Clone, PartialEq, Message)]
pub struct PutResponse {
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
}

/// etcdserverpb.WatchCreateRequest (one key from now on: no range end, no
/// start revision, no filters, no prev_kv).
#[derive(Clone, PartialEq, Message)]
pub struct WatchCreateRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
}

/// etcdserverpb.WatchRequest: its `create_request` arm of the oneof (field
/// 1), which encodes as this optional field does.
#[derive(Clone, PartialEq, Message)]
pub struct WatchRequest {
    #[prost(message, optional, tag = "1")]
    pub create_request: Option<WatchCreateRequest>,
}

/// mvccpb.KeyValue.
#[derive(Clone, PartialEq, Message)]
pub struct KeyValue {
    #[prost(bytes = "bytes", tag = "1")]
    pub key: Bytes,
    #[prost(int64, tag = "2")]
    pub create_revision: i64,
    #[prost(int64, tag = "3")]
    pub mod_revision: i64,
    #[prost(int64, tag = "4")]
    pub version: i64,
    #[prost(bytes = "bytes", tag = "5")]
    pub value: Bytes,
}

/// mvccpb.Event (type 0 = PUT, 1 = DELETE).
#[derive(Clone, PartialEq, Message)]
pub struct Event {
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    #[prost(message, optional, tag = "2")]
    pub kv: Option<KeyValue>,
}

/// etcdserverpb.WatchResponse.
#[derive(Clone, PartialEq, Message)]
pub struct WatchResponse {
    #[prost(message, optional, tag = "1")]
    pub header: Option<ResponseHeader>,
    #[prost(int64, tag = "2")]
    pub watch_id: i64,
    #[prost(bool, tag = "3")]
    pub created: bool,
    #[prost(bool, tag = "4")]
    pub canceled: bool,
    #[prost(int64, tag = "5")]
    pub compact_revision: i64,
    #[prost(string, tag = "6")]
    pub cancel_reason: String,
    #[prost(message, repeated, tag = "11")]
    pub events: Vec<Event>,
}

/// Largest gRPC message the bench accepts (etcd's default request limit is
/// 1.5 MiB; a watch response carries a few 1 KiB events).
const MAX_MESSAGE: usize = 4 * 1024 * 1024;

/// A gRPC length-prefixed message: flag 0 (uncompressed), u32 length, body.
pub fn grpc_frame(message: &impl Message) -> Bytes {
    let len = message.encoded_len();
    let mut out = BytesMut::with_capacity(5 + len);
    out.put_u8(0);
    out.put_u32(len as u32);
    message
        .encode(&mut out)
        .expect("a BytesMut with the room reserved");
    out.freeze()
}

/// Takes one whole gRPC message off the front of `buf`.
fn take_message(buf: &mut BytesMut) -> io::Result<Option<Bytes>> {
    if buf.len() < 5 {
        return Ok(None);
    }
    if buf[0] != 0 {
        return Err(invalid("compressed gRPC message"));
    }
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    if len > MAX_MESSAGE {
        return Err(invalid(format!("gRPC message of {len} bytes")));
    }
    if buf.len() < 5 + len {
        return Ok(None);
    }
    buf.advance(5);
    Ok(Some(buf.split_to(len).freeze()))
}

fn h2_err(e: h2::Error) -> io::Error {
    io::Error::other(format!("HTTP/2: {e}"))
}

/// One HTTP/2 connection to etcd.
pub struct Conn {
    send: SendRequest<Bytes>,
    authority: String,
}

/// Connects and starts the connection's driver on the current runtime (it
/// ends when the connection closes or `Conn` and its streams are dropped).
pub async fn connect(addr: SocketAddr) -> io::Result<Conn> {
    let tcp = wire::tcp(addr).await?;
    let (send, connection) = h2::client::handshake(tcp).await.map_err(h2_err)?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(Conn {
        send,
        authority: addr.to_string(),
    })
}

impl Conn {
    /// Opens a gRPC call: the request headers and its first message.
    async fn call(
        &mut self,
        method: &str,
        first: Bytes,
        end: bool,
    ) -> io::Result<(h2::client::ResponseFuture, h2::SendStream<Bytes>)> {
        let request = http::Request::builder()
            .method("POST")
            .uri(format!("http://{}{method}", self.authority))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .map_err(|e| invalid(e.to_string()))?;
        // Waits only when the server's stream limit is reached.
        let mut send = self.send.clone().ready().await.map_err(h2_err)?;
        let (response, mut stream) = send.send_request(request, false).map_err(h2_err)?;
        stream.send_data(first, end).map_err(h2_err)?;
        Ok((response, stream))
    }

    /// `KV/Put` of a pre-built request (`grpc_frame(&PutRequest{..})`);
    /// the revision etcd committed it at.
    pub async fn put(&mut self, request: Bytes) -> io::Result<i64> {
        let (response, _stream) = self.call("/etcdserverpb.KV/Put", request, true).await?;
        let mut body = Body::of(response.await.map_err(h2_err)?)?;
        let message = body
            .next()
            .await?
            .ok_or_else(|| invalid("etcd Put: no reply message"))?;
        body.check_trailers().await?;
        let reply =
            PutResponse::decode(message).map_err(|e| invalid(format!("etcd Put reply: {e}")))?;
        Ok(reply.header.map(|h| h.revision).unwrap_or(0))
    }

    /// `Watch/Watch` of one key from now on; returns once etcd has
    /// confirmed the watch (its `created` response).
    pub async fn watch(&mut self, key: &[u8]) -> io::Result<Watch> {
        let create = grpc_frame(&WatchRequest {
            create_request: Some(WatchCreateRequest { key: key.to_vec() }),
        });
        let (response, stream) = self
            .call("/etcdserverpb.Watch/Watch", create, false)
            .await?;
        let body = Body::of(response.await.map_err(h2_err)?)?;
        let mut watch = Watch {
            body,
            _requests: stream,
        };
        let first = watch.next().await?;
        if !first.created {
            return Err(invalid("etcd watch: expected the created response"));
        }
        Ok(watch)
    }
}

/// A gRPC response body: its messages, then its trailers.
struct Body {
    recv: RecvStream,
    buf: BytesMut,
}

impl Body {
    fn of(response: http::Response<RecvStream>) -> io::Result<Body> {
        if response.status() != http::StatusCode::OK {
            return Err(invalid(format!("etcd: HTTP {}", response.status())));
        }
        // A call that fails at once answers with headers only
        // ("trailers-only"), its grpc-status among them.
        if let Some(status) = response.headers().get("grpc-status") {
            if status != "0" {
                let message = response
                    .headers()
                    .get("grpc-message")
                    .and_then(|m| m.to_str().ok())
                    .unwrap_or("");
                return Err(invalid(format!("etcd: gRPC status {status:?} {message}")));
            }
        }
        Ok(Body {
            recv: response.into_body(),
            buf: BytesMut::new(),
        })
    }

    /// The next whole message, or `None` at the end of the body.
    async fn next(&mut self) -> io::Result<Option<Bytes>> {
        loop {
            if let Some(message) = take_message(&mut self.buf)? {
                return Ok(Some(message));
            }
            match self.recv.data().await {
                Some(chunk) => {
                    let chunk = chunk.map_err(h2_err)?;
                    // Handed straight back: the bench consumes as it reads.
                    let _ = self.recv.flow_control().release_capacity(chunk.len());
                    self.buf.extend_from_slice(&chunk);
                }
                None if self.buf.is_empty() => return Ok(None),
                None => return Err(invalid("etcd: a truncated gRPC message")),
            }
        }
    }

    async fn check_trailers(&mut self) -> io::Result<()> {
        let trailers = self.recv.trailers().await.map_err(h2_err)?;
        match trailers.as_ref().and_then(|t| t.get("grpc-status")) {
            Some(status) if status == "0" => Ok(()),
            Some(status) => Err(invalid(format!("etcd: gRPC status {status:?}"))),
            None => Err(invalid("etcd: no gRPC status")),
        }
    }
}

/// An open watch: its responses in order.
pub struct Watch {
    body: Body,
    /// The request side of the stream, kept open (closing it ends the
    /// watch).
    _requests: h2::SendStream<Bytes>,
}

impl Watch {
    pub async fn next(&mut self) -> io::Result<WatchResponse> {
        let message = self
            .body
            .next()
            .await?
            .ok_or_else(|| invalid("etcd closed the watch"))?;
        let response = WatchResponse::decode(message)
            .map_err(|e| invalid(format!("etcd watch response: {e}")))?;
        if response.canceled {
            return Err(invalid(format!(
                "etcd cancelled the watch: {}",
                response.cancel_reason
            )));
        }
        Ok(response)
    }
}

/// A pre-built `KV/Put` request (key and value encoded once, as the Redis
/// side builds its XADD once).
pub fn put_request(key: &[u8], value: &[u8]) -> Bytes {
    grpc_frame(&PutRequest {
        key: key.to_vec(),
        value: value.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_frames_round_trip_in_pieces() {
        let reply = WatchResponse {
            created: true,
            events: vec![Event {
                r#type: 0,
                kv: Some(KeyValue {
                    key: Bytes::from_static(b"k"),
                    mod_revision: 9,
                    value: Bytes::from(vec![7u8; 1024]),
                    ..Default::default()
                }),
            }],
            ..Default::default()
        };
        let whole = grpc_frame(&reply);
        for cut in 0..whole.len() {
            let mut buf = BytesMut::from(&whole[..cut]);
            assert!(take_message(&mut buf).unwrap().is_none());
        }
        let mut buf = BytesMut::from(&whole[..]);
        let message = take_message(&mut buf).unwrap().unwrap();
        assert_eq!(WatchResponse::decode(message).unwrap(), reply);
        assert!(buf.is_empty());
    }

    /// The oneof arm encodes as etcd expects: field 1, a nested message.
    #[test]
    fn watch_request_is_field_one() {
        let bytes = WatchRequest {
            create_request: Some(WatchCreateRequest { key: b"k".to_vec() }),
        }
        .encode_to_vec();
        assert_eq!(bytes, [0x0a, 0x03, 0x0a, 0x01, b'k']);
    }
}
