//! Binding the listen address and serving until the daemon shuts down.

use std::future::{Future, IntoFuture};
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;

/// How long [`Server::run`] waits, after shutdown was asked for, for open connections to finish
/// their requests before it returns anyway.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the HTTP server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "{addr} is already in use: another lifeboat daemon? set daemon.listen to a free address, or stop \
         the process that holds it (`ss -ltnp 'sport = :{port}'` names it)",
        port = addr.port()
    )]
    AddressInUse { addr: SocketAddr },
    #[error(
        "cannot listen on {addr}: permission denied; ports below 1024 need privileges: set daemon.listen \
         to a higher port such as 127.0.0.1:9187"
    )]
    PermissionDenied { addr: SocketAddr },
    #[error(
        "cannot listen on {addr}: no network interface of this machine has that address; set daemon.listen \
         to one of its addresses, e.g. 127.0.0.1:9187"
    )]
    AddressNotAvailable { addr: SocketAddr },
    #[error("cannot listen on {addr}: {source}; check daemon.listen")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error("the HTTP server on {addr} failed: {source}; restart the daemon")]
    Serve { addr: SocketAddr, source: io::Error },
}

/// A bound listener, not yet serving: binding first lets the daemon fail fast on a taken address
/// and learn the real port when it asked for port 0.
pub struct Server {
    listener: TcpListener,
    addr: SocketAddr,
    drain_timeout: Duration,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.addr)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Binds `listen`; the error names the address and what to do.
    pub async fn bind(listen: SocketAddr) -> Result<Server, ServeError> {
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| bind_error(listen, source))?;
        let addr = listener
            .local_addr()
            .map_err(|source| ServeError::Bind { addr: listen, source })?;
        Ok(Server {
            listener,
            addr,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            tls: None,
        })
    }

    /// The address actually bound (with the real port when port 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serve HTTPS with this acceptor (see [`super::tls::acceptor`]) instead of plain HTTP.
    pub fn tls(mut self, acceptor: tokio_rustls::TlsAcceptor) -> Self {
        self.tls = Some(acceptor);
        self
    }

    /// `https` or `http`, for messages.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// How long to wait for open requests after shutdown; [`DEFAULT_DRAIN_TIMEOUT`] unless set.
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// Serves `router` until `shutdown` completes, then stops accepting connections, lets open
    /// requests finish for at most the drain timeout, and returns.
    pub async fn run(
        self,
        router: Router,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let Server {
            listener,
            addr,
            drain_timeout,
            tls,
        } = self;
        match tls {
            None => serve_on(listener, addr, drain_timeout, router, shutdown).await,
            Some(acceptor) => {
                let listener = super::tls::TlsListener::new(listener, acceptor)
                    .map_err(|source| ServeError::Serve { addr, source })?;
                serve_on(listener, addr, drain_timeout, router, shutdown).await
            }
        }
    }
}

async fn serve_on<L>(
    listener: L,
    addr: SocketAddr,
    drain_timeout: Duration,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError>
where
    L: axum::serve::Listener<Addr = SocketAddr>,
{
    let (stopping_tx, mut stopping_rx) = tokio::sync::watch::channel(false);
    let signal = async move {
        shutdown.await;
        let _ = stopping_tx.send(true);
    };
    tracing::info!(%addr, "serving HTTP");
    let server = axum::serve(listener, router)
        .with_graceful_shutdown(signal)
        .into_future();
    tokio::pin!(server);

    let drained = async {
        // Resolves only once shutdown was asked for; an error means the signal was dropped,
        // which the serve future notices on its own.
        if stopping_rx.wait_for(|stopping| *stopping).await.is_err() {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(drain_timeout).await;
    };
    tokio::select! {
        result = &mut server => result.map_err(|source| ServeError::Serve { addr, source }),
        () = drained => {
            tracing::warn!(%addr, ?drain_timeout, "HTTP connections still open after the drain timeout; no longer waiting for them");
            Ok(())
        }
    }
}

/// [`Server::bind`] then [`Server::run`] with the default drain timeout.
pub async fn serve(
    listen: SocketAddr,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    Server::bind(listen).await?.run(router, shutdown).await
}

fn bind_error(addr: SocketAddr, source: io::Error) -> ServeError {
    match source.kind() {
        io::ErrorKind::AddrInUse => ServeError::AddressInUse { addr },
        io::ErrorKind::PermissionDenied => ServeError::PermissionDenied { addr },
        io::ErrorKind::AddrNotAvailable => ServeError::AddressNotAvailable { addr },
        _ => ServeError::Bind { addr, source },
    }
}
