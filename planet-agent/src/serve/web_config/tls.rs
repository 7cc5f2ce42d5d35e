//! `tls_server_config` as a rustls server configuration, and a listener
//! that hands axum only connections whose TLS handshake succeeded.

use std::{net::SocketAddr, path::Path, sync::Arc, time::Duration};

use rustls::{
    RootCertStore, ServerConfig, SupportedProtocolVersion,
    crypto::CryptoProvider,
    server::{WebPkiClientVerifier, danger::ClientCertVerifier},
    version::{TLS12, TLS13},
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{Semaphore, mpsc},
    task::JoinHandle,
};
use tokio_rustls::{TlsAcceptor, server::TlsStream};

use super::{TlsFile, WebConfigError, read};

/// The server configuration, or `None` when the section names no
/// certificate, key, client CA or client auth type at all (the toolkit
/// then serves plain HTTP too).
pub(super) fn server_config(
    file: TlsFile,
    base: &Path,
) -> Result<Option<ServerConfig>, WebConfigError> {
    for (set, name) in [
        (
            !file.cipher_suites.is_empty(),
            "tls_server_config.cipher_suites",
        ),
        (
            !file.curve_preferences.is_empty(),
            "tls_server_config.curve_preferences",
        ),
        (
            !file.client_allowed_sans.is_empty(),
            "tls_server_config.client_allowed_sans",
        ),
    ] {
        if set {
            return Err(WebConfigError::Unsupported(name));
        }
    }
    let given = |inline: &Option<String>, file: &Option<std::path::PathBuf>| {
        inline.as_deref().is_some_and(|s| !s.is_empty())
            || file.as_deref().is_some_and(|p| !p.as_os_str().is_empty())
    };
    let (has_cert, has_key) = (
        given(&file.cert, &file.cert_file),
        given(&file.key, &file.key_file),
    );
    if !has_cert
        && !has_key
        && !given(&file.client_ca, &file.client_ca_file)
        && file.client_auth_type.is_none()
    {
        return Ok(None);
    }
    if !has_cert {
        return Err(WebConfigError::Missing("cert_file"));
    }
    if !has_key {
        return Err(WebConfigError::Missing("key_file"));
    }
    let cert = pem("cert", file.cert, file.cert_file.as_deref(), base)?
        .ok_or(WebConfigError::Missing("cert_file"))?;
    let key = pem("key", file.key, file.key_file.as_deref(), base)?
        .ok_or(WebConfigError::Missing("key_file"))?;
    let client_ca = pem(
        "client_ca",
        file.client_ca,
        file.client_ca_file.as_deref(),
        base,
    )?;

    let chain = certificates(&cert)?;
    let key = PrivateKeyDer::from_pem_slice(&key.bytes).map_err(|source| match source {
        rustls_pki_types::pem::Error::NoItemsFound => WebConfigError::NoPem {
            what: key.what.clone(),
            expected: "private key",
        },
        source => WebConfigError::Pem {
            what: key.what.clone(),
            source,
        },
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions = versions(file.min_version.as_deref(), file.max_version.as_deref())?;
    let verifier = client_verifier(
        file.client_auth_type.as_deref().unwrap_or("NoClientCert"),
        client_ca.as_ref(),
        &provider,
    )?;
    let builder =
        ServerConfig::builder_with_provider(provider).with_protocol_versions(&versions)?;
    let builder = match verifier {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(config))
}

/// PEM text, inline or read from a file, and where it came from.
struct Pem {
    what: String,
    bytes: Vec<u8>,
}

fn pem(
    name: &'static str,
    inline: Option<String>,
    file: Option<&Path>,
    base: &Path,
) -> Result<Option<Pem>, WebConfigError> {
    let inline = inline.filter(|s| !s.is_empty());
    let file = file.filter(|p| !p.as_os_str().is_empty());
    match (inline, file) {
        (Some(_), Some(_)) => Err(WebConfigError::Both(name)),
        (Some(text), None) => Ok(Some(Pem {
            what: format!("inline {name}"),
            bytes: text.into_bytes(),
        })),
        (None, Some(path)) => {
            let path = base.join(path);
            Ok(Some(Pem {
                bytes: read(&path)?,
                what: path.display().to_string(),
            }))
        }
        (None, None) => Ok(None),
    }
}

fn certificates(pem: &Pem) -> Result<Vec<CertificateDer<'static>>, WebConfigError> {
    let certs = CertificateDer::pem_slice_iter(&pem.bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| WebConfigError::Pem {
            what: pem.what.clone(),
            source,
        })?;
    if certs.is_empty() {
        return Err(WebConfigError::NoPem {
            what: pem.what.clone(),
            expected: "certificate",
        });
    }
    Ok(certs)
}

/// TLS versions from `min`..=`max` that rustls offers (1.2 and 1.3).
fn versions(
    min: Option<&str>,
    max: Option<&str>,
) -> Result<Vec<&'static SupportedProtocolVersion>, WebConfigError> {
    fn number(name: &str) -> Result<u8, WebConfigError> {
        match name {
            "TLS10" => Ok(10),
            "TLS11" => Ok(11),
            "TLS12" => Ok(12),
            "TLS13" => Ok(13),
            other => Err(WebConfigError::TlsVersion(other.to_owned())),
        }
    }
    let (min_name, max_name) = (min.unwrap_or("TLS12"), max.unwrap_or("TLS13"));
    let range = number(min_name)?..=number(max_name)?;
    let versions: Vec<_> = [(12, &TLS12), (13, &TLS13)]
        .into_iter()
        .filter(|(n, _)| range.contains(n))
        .map(|(_, v)| v)
        .collect();
    if versions.is_empty() {
        return Err(WebConfigError::NoTlsVersion {
            min: min_name.to_owned(),
            max: max_name.to_owned(),
        });
    }
    Ok(versions)
}

/// The client certificate policy; `None` for `NoClientCert`.
fn client_verifier(
    auth_type: &str,
    client_ca: Option<&Pem>,
    provider: &Arc<CryptoProvider>,
) -> Result<Option<Arc<dyn ClientCertVerifier>>, WebConfigError> {
    let optional = match auth_type {
        "NoClientCert" => {
            return match client_ca {
                Some(_) => Err(WebConfigError::CaWithoutClientAuth),
                None => Ok(None),
            };
        }
        "VerifyClientCertIfGiven" => true,
        "RequireAndVerifyClientCert" => false,
        other => return Err(WebConfigError::ClientAuthType(other.to_owned())),
    };
    let ca = client_ca.ok_or_else(|| WebConfigError::ClientAuthWithoutCa(auth_type.to_owned()))?;
    let mut roots = RootCertStore::empty();
    for cert in certificates(ca)? {
        roots
            .add(cert)
            .map_err(|err| WebConfigError::ClientCa(format!("{}: {err}", ca.what)))?;
    }
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
    let builder = if optional {
        builder.allow_unauthenticated()
    } else {
        builder
    };
    builder
        .build()
        .map(Some)
        .map_err(|err| WebConfigError::ClientCa(err.to_string()))
}

/// A TLS handshake gets this long; a client that stalls it is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; further connections wait in the
/// kernel's accept queue.
const MAX_HANDSHAKES: usize = 64;

/// Accepts TCP connections and completes their TLS handshakes in the
/// background, so a slow or non-TLS client never holds up the next one;
/// only established TLS streams reach the HTTP server. Connections that
/// fail the handshake (plain HTTP among them) are closed.
pub struct TlsListener {
    established: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local_addr: SocketAddr,
    acceptor: JoinHandle<()>,
}

impl TlsListener {
    pub fn new(listener: TcpListener, config: Arc<ServerConfig>) -> std::io::Result<Self> {
        let local_addr = listener.local_addr()?;
        let (sender, established) = mpsc::channel(MAX_HANDSHAKES);
        let acceptor = tokio::spawn(accept_loop(listener, TlsAcceptor::from(config), sender));
        Ok(Self {
            established,
            local_addr,
            acceptor,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    established: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let Ok(permit) = handshakes.clone().acquire_owned().await else {
            return;
        };
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of file descriptors and the like: back off, as axum does.
                tracing::warn!(error = %err, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (acceptor, established) = (acceptor.clone(), established.clone());
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    let _ = established.send((stream, peer)).await;
                }
                Ok(Err(err)) => tracing::debug!(%peer, error = %err, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.established.recv().await {
            Some(connection) => connection,
            // The accept loop never ends while the listener lives.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}
