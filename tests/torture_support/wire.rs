//! The workload's raw protocol client, which reports a broken connection
//! (`Closed`) instead of panicking: under SIGKILL connections break as a
//! matter of course, and each task reconnects after the restart.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use prost::Message;
use stigmer_proto::daemon::{
    request::Command as Cmd, CancelSubscriptionRequest, Request, Response,
};
use tokio::net::UnixStream;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

/// A stream that sends nothing for this long while the workload is over is
/// stuck (a failure guard, not a timing assertion: every stream of a
/// finished workload must end within milliseconds).
pub const STUCK: Duration = Duration::from_secs(90);

pub struct Wire {
    framed: Framed<UnixStream, LengthDelimitedCodec>,
    next_id: u64,
    /// Which daemon it is connected to (its index in `Shared::sockets`).
    pub daemon: usize,
}

#[derive(Debug)]
pub struct Closed;

impl Wire {
    pub async fn connect(path: &Path) -> Result<Wire, Closed> {
        Wire::connect_to(path, 0).await
    }
    /// Connects to daemon number `daemon`, listening at `path`.
    pub async fn connect_to(path: &Path, daemon: usize) -> Result<Wire, Closed> {
        let stream = UnixStream::connect(path).await.map_err(|_| Closed)?;
        Ok(Wire {
            framed: Framed::new(stream, stigmer_proto::frame::codec(64 * 1024 * 1024)),
            next_id: 1,
            daemon,
        })
    }
    pub fn id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }
    pub async fn send(&mut self, id: u64, command: Cmd) -> Result<(), Closed> {
        let req = Request {
            protocol_version: 1,
            id,
            minimal_reply: false,
            command: Some(command),
        };
        self.framed
            .send(Bytes::from(req.encode_to_vec()))
            .await
            .map_err(|_| Closed)
    }
    pub async fn recv(&mut self) -> Result<Response, Closed> {
        match self.framed.next().await {
            Some(Ok(body)) => Ok(Response::decode(body).expect("a Response decodes")),
            _ => Err(Closed),
        }
    }
    /// Sends the cancel of stream `sub`; the cancel's own id.
    pub async fn cancel(&mut self, sub: u64) -> Result<u64, Closed> {
        let id = self.id();
        let cancel = Cmd::Cancel(CancelSubscriptionRequest {
            subscription_id: sub,
        });
        self.send(id, cancel).await.map(|()| id)
    }
    /// One request, one reply (only for connections without streams).
    pub async fn call(&mut self, command: Cmd) -> Result<Response, Closed> {
        let id = self.id();
        self.send(id, command).await?;
        let resp = self.recv().await?;
        assert_eq!(resp.id, id, "unexpected frame while waiting for {id}");
        Ok(resp)
    }
}
