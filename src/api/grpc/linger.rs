//! A TCP stream that closes the way a server that just wrote a large answer must: when the
//! HTTP/2 connection shuts down, send FIN, then read (and discard) until the client closes too,
//! for a bounded time, before the socket is dropped.
//!
//! Why: closing a socket that still has unread bytes in its receive buffer makes the kernel send
//! RST instead of FIN, and an RST makes the client drop whatever it has not read yet. A client
//! downloading a 32 MB answer keeps sending WINDOW_UPDATE frames, so the server always has a
//! few unread bytes when its graceful shutdown ends the connection: without this, a response
//! completed during the drain could still be lost ("connection reset" while reading the body).

use crate::api::grpc::send_watch::{ConnectionInfo, SendWatch};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// How long a closing connection waits for the client's FIN. Clients close as soon as they
/// have read everything; this bounds the wait for one that never does.
const LINGER: Duration = Duration::from_secs(10);

pub struct LingeringStream {
    inner: TcpStream,
    /// Set once FIN is sent: reading until the client's FIN or this deadline.
    draining: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Until the client's first bytes: a connection that never says anything is closed when
    /// this fires instead of holding a file descriptor forever.
    handshake: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The connection's place under `--max_connections`, given back when it closes.
    _permit: Option<tokio::sync::OwnedSemaphorePermit>,
    /// Fails the reads once an answer waited for its client longer than the send timeout.
    send_watch: Option<Arc<SendWatch>>,
}

impl LingeringStream {
    pub fn new(inner: TcpStream) -> LingeringStream {
        LingeringStream {
            inner,
            draining: None,
            handshake: None,
            _permit: None,
            send_watch: None,
        }
    }

    /// Closes the connection when one of its answers waits longer than the watch's timeout.
    pub fn with_send_watch(mut self, watch: Arc<SendWatch>) -> LingeringStream {
        self.send_watch = Some(watch);
        self
    }

    /// Closes the connection if the client sends nothing within `timeout`.
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> LingeringStream {
        self.handshake = Some(Box::pin(tokio::time::sleep(timeout)));
        self
    }

    /// Holds `permit` for as long as the connection is open.
    pub fn with_permit(mut self, permit: tokio::sync::OwnedSemaphorePermit) -> LingeringStream {
        self._permit = Some(permit);
        self
    }
}

impl std::ops::Deref for LingeringStream {
    type Target = TcpStream;

    fn deref(&self) -> &TcpStream {
        &self.inner
    }
}

impl AsyncRead for LingeringStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(watch) = &self.send_watch {
            if watch.poll_aborted(cx) {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client took too little of an answer within --send_timeout_seconds",
                )));
            }
        }
        let before = buf.filled().len();
        let read = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Some(handshake) = self.handshake.as_mut() {
            match &read {
                Poll::Ready(Ok(())) if buf.filled().len() > before => self.handshake = None,
                Poll::Pending if handshake.as_mut().poll(cx).is_ready() => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the client sent nothing within --handshake_timeout_seconds",
                    )));
                }
                _ => {}
            }
        }
        read
    }
}

impl AsyncWrite for LingeringStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.draining.is_none() {
            ready!(Pin::new(&mut self.inner).poll_shutdown(cx))?;
            self.draining = Some(Box::pin(tokio::time::sleep(LINGER)));
        }
        let mut scratch = [0u8; 4096];
        loop {
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut self.inner).poll_read(cx, &mut buf) {
                // The client's FIN (or an error): nothing left that an RST could destroy.
                Poll::Ready(Ok(())) if buf.filled().is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Err(_)) => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => continue,
                Poll::Pending => {
                    let deadline = self.draining.as_mut().expect("set above");
                    return deadline.as_mut().poll(cx).map(Ok);
                }
            }
        }
    }
}

impl tonic::transport::server::Connected for LingeringStream {
    type ConnectInfo = ConnectionInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        ConnectionInfo {
            tcp: self.inner.connect_info(),
            send_watch: self.send_watch.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// The server writes an answer and shuts down while the client's last bytes are unread;
    /// the client still reads the whole answer, then EOF (not a reset).
    #[tokio::test]
    async fn the_client_reads_everything_although_it_sent_bytes_the_server_never_read() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let answer = vec![7u8; 8 << 20];
        let server = {
            let answer = answer.clone();
            tokio::spawn(async move {
                let (stream, _) = listener.accept().await.unwrap();
                let mut stream = LingeringStream::new(stream);
                let mut request = [0u8; 5];
                stream.read_exact(&mut request).await.unwrap();
                stream.write_all(&answer).await.unwrap();
                stream.shutdown().await.unwrap();
            })
        };
        let mut client = TcpStream::connect(addr).await.unwrap();
        client.write_all(b"hello").await.unwrap();
        // Bytes the server never reads, like WINDOW_UPDATE frames sent while downloading.
        client
            .write_all(b"more bytes the server ignores")
            .await
            .unwrap();
        let mut received = Vec::new();
        client.read_to_end(&mut received).await.unwrap();
        assert_eq!(received.len(), answer.len());
        drop(client);
        server.await.unwrap();
    }
}
