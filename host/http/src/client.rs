//! The client: admission (concurrency), connect (resolve, TCP, TLS) and the timeout
//! around the whole exchange.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{self, RootCertStore};
use tokio_rustls::TlsConnector;
use tracing::{debug, Instrument};

use crate::allowlist::Allowlist;
use crate::url::{Host, Url};
use crate::{wire, HttpError, HttpRequest, HttpResponse};

/// Limits of a [`Client`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// Bound on the whole request: resolution, connect, TLS handshake, write and read.
    /// Default 10 s.
    pub timeout: Duration,
    /// Largest response body accepted (after de-chunking). Default 64 KiB.
    pub max_response_bytes: usize,
    /// Requests in flight at once; one more fails with [`HttpError::Busy`]. 0 refuses
    /// every request. Default 64.
    pub max_concurrent: usize,
}

/// A bounded HTTP/1.1 client. Cheap to share: wrap it in an `Arc`, or clone it (clones
/// share the concurrency limit).
#[derive(Clone)]
pub struct Client {
    config: ClientConfig,
    permits: Arc<Semaphore>,
    /// `Err` only if rustls refuses the ring provider's defaults, which it does not;
    /// kept as a value so that such a failure costs https requests, not the process.
    tls: Result<TlsConnector, String>,
}

// === ClientConfig ===

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            max_response_bytes: 64 * 1024,
            max_concurrent: 64,
        }
    }
}

// === Client ===

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("config", &self.config)
            .field("available", &self.permits.available_permits())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client with `config`'s limits, trusting the Mozilla root certificates.
    pub fn new(config: ClientConfig) -> Self {
        let permits = Arc::new(Semaphore::new(
            config.max_concurrent.min(Semaphore::MAX_PERMITS),
        ));
        Self {
            config,
            permits,
            tls: tls_connector(),
        }
    }

    /// The limits this client was built with.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Performs `req`. The request is validated first (URL, method, headers), then
    /// admitted (or [`HttpError::Busy`]), then the whole exchange runs under the timeout.
    /// Any status, 4xx and 5xx included, is an `Ok` response; redirects are not followed.
    pub async fn send(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        let url = Url::parse(&req.url)?;
        self.send_url(&url, req).await
    }

    /// Like [`Client::send`], after checking the URL against `allowlist`
    /// ([`HttpError::NotAllowed`] if it is outside).
    pub async fn send_allowed(
        &self,
        allowlist: &Allowlist,
        req: HttpRequest,
    ) -> Result<HttpResponse, HttpError> {
        let url = Url::parse(&req.url)?;
        if !allowlist.permits_url(&url) {
            return Err(HttpError::NotAllowed(url.normalised()));
        }
        self.send_url(&url, req).await
    }

    async fn send_url(&self, url: &Url, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        let head = wire::encode_head(&req.method, url, &req.headers, req.body.len())?;
        let _permit = self.permits.try_acquire().map_err(|_| HttpError::Busy)?;
        let span = tracing::debug_span!(
            "http",
            method = %req.method,
            host = %url.authority(),
            https = url.is_https()
        );
        let started = Instant::now();
        let is_head = req.method == "HEAD";
        let result = tokio::time::timeout(
            self.config.timeout,
            self.exchange(url, &head, &req.body, is_head)
                .instrument(span.clone()),
        )
        .await
        .unwrap_or(Err(HttpError::Timeout));
        let _enter = span.enter();
        match &result {
            Ok(resp) => {
                debug!(status = resp.status, bytes = resp.body.len(), elapsed = ?started.elapsed(), "response")
            }
            Err(e) => debug!(error = %e, elapsed = ?started.elapsed(), "request failed"),
        }
        result
    }

    async fn exchange(
        &self,
        url: &Url,
        head: &[u8],
        body: &[u8],
        is_head: bool,
    ) -> Result<HttpResponse, HttpError> {
        let max = self.config.max_response_bytes;
        let tcp = connect(url).await?;
        if !url.is_https() {
            return wire::exchange(tcp, head, body, is_head, max).await;
        }
        let tls = self
            .tls
            .as_ref()
            .map_err(|e| HttpError::Connect(format!("tls unavailable: {e}")))?;
        let name = match &url.host {
            Host::Ip(ip) => ServerName::IpAddress((*ip).into()),
            Host::Name(n) => ServerName::try_from(n.clone())
                .map_err(|e| HttpError::Connect(format!("tls server name {n}: {e}")))?,
        };
        let stream = tls
            .connect(name, tcp)
            .await
            .map_err(|e| HttpError::Connect(format!("tls handshake: {e}")))?;
        wire::exchange(stream, head, body, is_head, max).await
    }
}

/// Resolves the host (IP literals are used as they are) and connects to the addresses in
/// the resolver's order until one answers.
async fn connect(url: &Url) -> Result<TcpStream, HttpError> {
    let addrs: Vec<SocketAddr> = match &url.host {
        Host::Ip(ip) => vec![SocketAddr::new(*ip, url.port)],
        Host::Name(name) => tokio::net::lookup_host((name.as_str(), url.port))
            .await
            .map_err(|e| HttpError::Connect(format!("resolve {name}: {e}")))?
            .collect(),
    };
    let mut last = String::from("no addresses");
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(s) => {
                // Small writes (head, then body) should not wait for Nagle.
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) => {
                debug!(%addr, error = %e, "connect failed");
                last = format!("{addr}: {e}");
            }
        }
    }
    Err(HttpError::Connect(last))
}

fn tls_connector() -> Result<TlsConnector, String> {
    let roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    // The provider is given explicitly: the process default would be ambiguous (and
    // `builder()` would panic) if another crate enabled a second rustls provider.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsConnector::from(Arc::new(config)))
}
