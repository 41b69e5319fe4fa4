//! What Kafka connections run over: a byte stream, a way to open one ([`Connector`]) and a way to accept
//! them ([`Listener`]).
//!
//! Production uses the operating system's TCP ([`Connector::tcp`], `tokio::net::TcpListener`). The
//! simulation of a whole cluster (`tests/tests/replication.rs`) hands in turmoil's simulated TCP instead, so the same
//! client, server and replica fetcher code runs on simulated hosts whose links can be cut. Nothing here
//! knows Kafka: it only moves bytes.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};

/// A connected byte stream.
pub trait Io: AsyncRead + AsyncWrite + fmt::Debug + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + fmt::Debug + Send + Unpin + 'static> Io for T {}

/// A connection of any transport.
pub type BoxIo = Box<dyn Io>;

type ConnectFn = dyn Fn(String) -> BoxFuture<'static, io::Result<(BoxIo, SocketAddr)>> + Send + Sync;

/// Opens connections to `host:port` addresses, answering the stream and the address it reached.
#[derive(Clone)]
pub struct Connector(Arc<ConnectFn>);

impl Connector {
    /// The operating system's TCP, trying each address the name resolves to, with Nagle off (requests
    /// are written whole; Nagle would only delay the small ones).
    pub fn tcp() -> Self {
        Self::new(|addr| Box::pin(async move { open_tcp(&addr).await }))
    }

    /// Connections made by `connect`.
    pub fn new(
        connect: impl Fn(String) -> BoxFuture<'static, io::Result<(BoxIo, SocketAddr)>> + Send + Sync + 'static,
    ) -> Self {
        Self(Arc::new(connect))
    }

    pub async fn connect(&self, addr: &str) -> io::Result<(BoxIo, SocketAddr)> {
        (self.0)(addr.to_owned()).await
    }
}

impl Default for Connector {
    fn default() -> Self {
        Self::tcp()
    }
}

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Connector")
    }
}

async fn open_tcp(addr: &str) -> io::Result<(BoxIo, SocketAddr)> {
    let mut last_error = None;
    for socket_addr in tokio::net::lookup_host(addr).await? {
        match TcpStream::connect(socket_addr).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return Ok((Box::new(stream), socket_addr));
            }
            Err(e) => last_error = Some(io::Error::new(e.kind(), format!("{socket_addr}: {e}"))),
        }
    }
    Err(last_error.unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, "the name resolves to no address")))
}

/// Accepts connections.
pub trait Listener: Send + 'static {
    /// The next connection and its peer's address.
    fn accept(&mut self) -> BoxFuture<'_, io::Result<(BoxIo, SocketAddr)>>;
    /// Where connections are accepted.
    fn local_addr(&self) -> io::Result<SocketAddr>;
}

impl Listener for TcpListener {
    fn accept(&mut self) -> BoxFuture<'_, io::Result<(BoxIo, SocketAddr)>> {
        Box::pin(async move {
            let (stream, peer) = TcpListener::accept(self).await?;
            let _ = stream.set_nodelay(true);
            Ok((Box::new(stream) as BoxIo, peer))
        })
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        TcpListener::local_addr(self)
    }
}

impl<L: Listener + ?Sized> Listener for Box<L> {
    fn accept(&mut self) -> BoxFuture<'_, io::Result<(BoxIo, SocketAddr)>> {
        (**self).accept()
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        (**self).local_addr()
    }
}
