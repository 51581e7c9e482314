//! Lets Qdrant's early answer through. Qdrant answers some requests before reading
//! their body (a body over its size limit gets 400 at once) and then closes the
//! connection. Writing the rest of the body then fails (broken pipe, reset) and hyper
//! would report that write error instead of the answer already on its way. Streams of
//! this connector turn a write that fails because the peer went away into a silent
//! discard, so hyper goes on to read the answer; when there is none, the read fails
//! and the request fails as it did before.
//!
//! They also acknowledge what Qdrant sends at once (`TCP_QUICKACK` after each read, on
//! Linux): Qdrant writes a compressed answer in several small writes with Nagle's
//! algorithm on, so its last write waits for our ACK, which Linux delays by up to
//! 40 ms once a connection looks interactive (BENCHMARKS.md, section c).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_rustls::MaybeHttpsStream;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// The TCP socket under a connection to Qdrant.
pub trait Socket {
    fn socket(&self) -> Option<std::os::fd::RawFd>;
}

impl Socket for MaybeHttpsStream<TokioIo<TcpStream>> {
    fn socket(&self) -> Option<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        match self {
            MaybeHttpsStream::Http(tcp) => Some(tcp.inner().as_raw_fd()),
            MaybeHttpsStream::Https(tls) => {
                Some(tls.inner().get_ref().0.inner().inner().as_raw_fd())
            }
        }
    }
}

/// Acknowledges received data at once (Linux re-arms delayed ACKs by itself, so this
/// follows every read). Best effort: an error leaves the kernel's default.
fn quick_ack(fd: std::os::fd::RawFd) {
    #[cfg(target_os = "linux")]
    {
        let on: libc::c_int = 1;
        // SAFETY: `fd` is the open socket of the stream being read (it lives as long
        // as the stream), and the option value is a valid c_int of the size given.
        unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_QUICKACK,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = fd;
}

/// Wraps a connector; its streams discard writes once the peer has gone away.
#[derive(Clone)]
pub struct EarlyAnswer<C>(pub C);

impl<C> tower_service::Service<Uri> for EarlyAnswer<C>
where
    C: tower_service::Service<Uri>,
    C::Future: Send + 'static,
    C::Response: Socket,
{
    type Response = Stream<C::Response>;
    type Error = C::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, C::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), C::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.0.call(uri);
        Box::pin(async move {
            let inner = connecting.await?;
            Ok(Stream {
                socket: inner.socket(),
                inner,
                peer_gone: false,
            })
        })
    }
}

pub struct Stream<S> {
    inner: S,
    socket: Option<std::os::fd::RawFd>,
    /// A write failed because the peer closed: later writes are discarded.
    peer_gone: bool,
}

fn peer_went_away(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
    )
}

impl<S> Stream<S> {
    /// A write result, with "the peer went away" turned into "written".
    fn lenient(&mut self, r: Poll<io::Result<usize>>, len: usize) -> Poll<io::Result<usize>> {
        match r {
            Poll::Ready(Err(e)) if peer_went_away(&e) => {
                tracing::debug!(error = %e, "upstream closed while the request was written; reading its answer");
                self.peer_gone = true;
                Poll::Ready(Ok(len))
            }
            other => other,
        }
    }
}

impl<S: Read + Unpin> Read for Stream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let (Poll::Ready(Ok(())), Some(fd)) = (&r, self.socket) {
            quick_ack(fd);
        }
        r
    }
}

impl<S: Write + Unpin> Write for Stream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.peer_gone {
            return Poll::Ready(Ok(buf.len()));
        }
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.lenient(r, buf.len())
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let len = bufs.iter().map(|b| b.len()).sum();
        if self.peer_gone {
            return Poll::Ready(Ok(len));
        }
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.lenient(r, len)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.peer_gone {
            return Poll::Ready(Ok(()));
        }
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Ready(Err(e)) if peer_went_away(&e) => {
                self.peer_gone = true;
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.peer_gone {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<S: Connection> Connection for Stream<S> {
    fn connected(&self) -> Connected {
        self.inner.connected()
    }
}
