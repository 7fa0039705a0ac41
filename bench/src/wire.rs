//! Minimal buffered connections over Unix sockets (stigmer, Redis) or
//! loopback TCP (NATS, which has no Unix socket listener), shared by every
//! hand-rolled client so that all systems are driven by the same client code:
//! one read buffer, one parser per protocol, one `write_all` per request.
//!
//! The clients are hand-rolled on purpose: the benchmark measures the
//! servers, so the client side is kept as cheap as possible and identical in
//! shape for both (no client library's own tasks or channels in the path).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream as StdTcp};
use std::os::unix::net::UnixStream as StdStream;
use std::path::Path;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

/// A protocol's incremental parser: takes one whole message off the front of
/// `buf`, or returns `None` when more bytes are needed.
pub trait Parse {
    type Out;
    fn parse(buf: &mut BytesMut) -> io::Result<Option<Self::Out>>;
}

/// Bytes read per `read` call at most (and the buffer's growth step).
const READ_CHUNK: usize = 64 * 1024;

/// A blocking connection (the latency scenarios run one thread, so the
/// client adds no scheduler hop of its own).
pub struct SyncConn<S = StdStream> {
    stream: S,
    buf: BytesMut,
    scratch: Box<[u8]>,
}

impl SyncConn {
    pub fn connect(path: &Path) -> io::Result<Self> {
        Ok(Self::over(StdStream::connect(path)?))
    }
}

impl SyncConn<StdTcp> {
    /// A loopback TCP connection, Nagle off (each request is one write and
    /// must leave at once, as on a Unix socket).
    pub fn connect_tcp(addr: SocketAddr) -> io::Result<Self> {
        let stream = StdTcp::connect(addr)?;
        stream.set_nodelay(true)?;
        Ok(Self::over(stream))
    }
}

impl<S: Read + Write> SyncConn<S> {
    fn over(stream: S) -> Self {
        Self {
            stream,
            buf: BytesMut::with_capacity(READ_CHUNK),
            scratch: vec![0u8; READ_CHUNK].into_boxed_slice(),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    pub fn recv<P: Parse>(&mut self) -> io::Result<P::Out> {
        loop {
            if let Some(out) = P::parse(&mut self.buf)? {
                return Ok(out);
            }
            let n = self.stream.read(&mut self.scratch)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "server closed the connection",
                ));
            }
            self.buf.extend_from_slice(&self.scratch[..n]);
        }
    }
}

/// An async connection (throughput, fan-out and idle scenarios run many
/// connections on one current-thread runtime).
pub struct AsyncConn<S = UnixStream> {
    stream: S,
    buf: BytesMut,
    /// Bytes read off the socket so far.
    read: u64,
}

impl AsyncConn {
    pub async fn connect(path: &Path) -> io::Result<Self> {
        Ok(Self::over(UnixStream::connect(path).await?))
    }
}

impl AsyncConn<TcpStream> {
    /// A loopback TCP connection: Nagle off, and closed with a reset (linger
    /// 0) so that the 10,000 connections of the idle scenario leave no
    /// TIME_WAIT entries behind to exhaust the ephemeral ports of later
    /// rounds.
    pub async fn connect_tcp(addr: SocketAddr) -> io::Result<Self> {
        let stream = tcp(addr).await?;
        Ok(Self::over(stream))
    }
}

/// A tuned loopback TCP stream (see `AsyncConn::connect_tcp`), also for the
/// etcd client, which runs HTTP/2 over it.
pub async fn tcp(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    linger_zero(&stream)?;
    Ok(stream)
}

fn linger_zero(stream: &TcpStream) -> io::Result<()> {
    #[allow(deprecated)] // set_linger is deprecated only for blocking on close
    stream.set_linger(Some(std::time::Duration::ZERO))
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncConn<S> {
    fn over(stream: S) -> Self {
        Self {
            stream,
            // Small: 10,000 of these are open at once in the idle scenario.
            buf: BytesMut::new(),
            read: 0,
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes).await
    }

    pub async fn recv<P: Parse>(&mut self) -> io::Result<P::Out> {
        loop {
            if let Some(out) = P::parse(&mut self.buf)? {
                return Ok(out);
            }
            if self.buf.capacity() - self.buf.len() < 4096 {
                self.buf.reserve(READ_CHUNK);
            }
            let n = self.stream.read_buf(&mut self.buf).await?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "server closed the connection",
                ));
            }
            self.read += n as u64;
        }
    }

    /// The bytes of the messages taken off this connection so far: what it
    /// read from its socket, less what waits in its buffer.
    pub fn consumed(&self) -> u64 {
        self.read - self.buf.len() as u64
    }
}

pub fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}
