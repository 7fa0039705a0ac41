//! A connection's socket, split so that only reading is registered with the
//! event loop.
//!
//! Why not tokio's `UnixStream`: it registers every socket for both read and
//! write readiness, and with edge-triggered epoll a Unix socket reports
//! "writable" each time its peer reads. A daemon that writes an event to
//! 1,000 watchers then takes 1,000 more wake-ups of its workers as they read
//! them (profiled: 16% of all CPU in the fan-out benchmark, workers doing
//! nothing but `epoll_wait` and context switches). Here the read half is
//! registered for READABLE only; the write half writes the same descriptor
//! with plain non-blocking `writev` from any thread, and a duplicate of it is
//! registered for WRITABLE only while a slow peer has frames waiting
//! ([`WriteHalf::writable`]), as Redis does.

use std::io::{self, IoSlice, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, Interest, ReadBuf};

/// Splits an accepted connection. Must be called inside the runtime.
pub(crate) fn split(stream: tokio::net::UnixStream) -> io::Result<(ReadHalf, WriteHalf)> {
    // Deregisters it from tokio; the socket stays non-blocking. One
    // descriptor, shared: a connection costs one file descriptor.
    let stream = Arc::new(stream.into_std()?);
    let read = register(stream.clone(), Interest::READABLE)?;
    Ok((ReadHalf { fd: read }, WriteHalf { stream }))
}

/// Registers a socket with the event loop for `interest` only.
fn register<S: AsRawFd>(stream: S, interest: Interest) -> io::Result<AsyncFd<S>> {
    // SAFETY: tokio requires the descriptor to stay open and the same for
    // the AsyncFd's whole life. The AsyncFd owns `stream` (a `UnixStream`,
    // or an `Arc` of one), which keeps its descriptor open at least as long
    // and always returns that same one from `as_raw_fd`; this module never
    // swaps it out through `get_mut`.
    unsafe { AsyncFd::register_with_interest(stream, interest) }.map_err(io::Error::from)
}

/// The most one `read` asks for (a Unix socket rarely holds more).
const READ_CHUNK: usize = 64 * 1024;

/// The reading side, registered for readiness to read only.
pub(crate) struct ReadHalf {
    fd: AsyncFd<Arc<UnixStream>>,
}

impl AsyncRead for ReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.fd.poll_read_ready(cx))?;
            // At most READ_CHUNK per read: the buffer's spare room arrives
            // uninitialized on every call and must be zeroed before a safe
            // `read`, so zeroing all of a buffer grown by a 4 MiB frame on
            // each call would cost megabytes per syscall.
            let unfilled = buf.initialize_unfilled_to(buf.remaining().min(READ_CHUNK));
            // Never blocks: the socket is non-blocking. A WouldBlock clears
            // the readiness, and the loop waits for the next edge.
            let wanted = unfilled.len();
            let read = guard.try_io(|fd| fd.get_ref().as_ref().read(unfilled));
            match read {
                Ok(Ok(n)) => {
                    if n > 0 && n < wanted {
                        // A short read drained the socket: the next read
                        // would only return WouldBlock, so wait for the
                        // next edge instead (as tokio's own streams do).
                        // The guard clears only the readiness it was given:
                        // an event that arrived since is kept, so none is
                        // lost.
                        guard.clear_ready();
                    }
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(err)) => return Poll::Ready(Err(err)),
                Err(_would_block) => continue,
            }
        }
    }
}

/// The writing side: non-blocking writes from any thread.
pub struct WriteHalf {
    stream: Arc<UnixStream>,
}

impl WriteHalf {
    /// Writes what the socket takes now; WouldBlock when it takes nothing.
    pub(crate) fn try_write_vectored(&self, slices: &[IoSlice<'_>]) -> io::Result<usize> {
        self.stream.as_ref().write_vectored(slices)
    }

    /// Waits until the socket may take more bytes. Registers a duplicate
    /// descriptor for write readiness for the wait only (epoll accepts one
    /// registration per descriptor, and reports a socket that is already
    /// writable at once, so no wake-up is lost between the failed write and
    /// the registration). Only a peer reading slower than we write gets
    /// here; without a spare descriptor the wait fails and the connection
    /// is closed like a dead peer.
    pub(crate) async fn writable(&self) -> io::Result<()> {
        let fd = register(self.stream.try_clone()?, Interest::WRITABLE)?;
        // Waits for the peer to read; the guard is dropped at once, the
        // caller's next write finds out how much room there is.
        let _ = fd.writable().await?;
        Ok(())
    }

    /// Shuts the write side: the peer reads EOF after the last frame.
    pub(crate) fn shutdown(&self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
    }

    /// A write half on a plain socket (tests and benchmarks): it must be
    /// non-blocking.
    pub fn from_std(stream: UnixStream) -> Self {
        WriteHalf {
            stream: Arc::new(stream),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A short read clears the readiness; data sent afterwards must still
    /// wake the reader (no lost edge), again and again.
    #[tokio::test]
    async fn reads_after_a_draining_short_read_still_wake() {
        let (ours, mut peer) = tokio::net::UnixStream::pair().unwrap();
        let (mut read, _write) = split(ours).unwrap();
        let mut buf = [0u8; 64];
        for round in 0..100u8 {
            peer.write_all(&[round; 3]).await.unwrap();
            let n = tokio::time::timeout(Duration::from_secs(10), read.read(&mut buf))
                .await
                .expect("woken for the new bytes")
                .unwrap();
            assert_eq!(&buf[..n], &[round; 3][..n]);
            // Whatever a read left comes with the next one.
            if n < 3 {
                let mut rest = vec![0u8; 3 - n];
                read.read_exact(&mut rest).await.unwrap();
            }
        }
        // A full buffer is not a short read: the rest follows without a
        // new edge.
        peer.write_all(&[7u8; 100]).await.unwrap();
        let mut all = [0u8; 100];
        tokio::time::timeout(Duration::from_secs(10), read.read_exact(&mut all))
            .await
            .expect("the rest of the bytes")
            .unwrap();
        assert_eq!(all, [7u8; 100]);
        // EOF is reported, not waited for.
        drop(peer);
        assert_eq!(read.read(&mut buf).await.unwrap(), 0);
    }
}
