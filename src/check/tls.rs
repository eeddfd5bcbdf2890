//! SSL_GET's TLS client (check/check_ssl.c), over the probe's own non-blocking socket.
//!
//! keepalived's SSL_GET does not verify the server: `build_ssl_ctx` loads the `SSL`
//! block's certificate, key and CA file but never calls `SSL_CTX_set_verify`, so
//! OpenSSL's default `SSL_VERIFY_NONE` applies, whatever the certificate (self-signed,
//! expired, another name). uvs does the same: any certificate is accepted, but the
//! handshake's signature is still checked against the certificate's key (as OpenSSL does
//! in any verify mode), so a peer that does not hold the key fails. SNI is sent only with
//! `enable_sni` (check_ssl.c `ssl_connect`: the url's, the checker's or the virtual
//! server's virtualhost). rustls (ring provider) rather than OpenSSL bindings: no C
//! library to link, and its `ClientConnection` is sans-I/O, so the handshake runs in the
//! one poll(2) loop like every other probe.

use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme};

/// Accepts any certificate (keepalived's SSL_VERIFY_NONE); checks handshake signatures.
#[derive(Debug)]
struct NoVerify(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

fn config() -> Arc<ClientConfig> {
    static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            // ring's provider is "deprecated" only for lacking post-quantum key
            // exchange, which a health check of a real server does not need; aws-lc-rs
            // would add a cmake/C build to every uvs build.
            #[allow(deprecated)]
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let algs = provider.signature_verification_algorithms;
            let cfg = ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("ring supports TLS 1.2 and 1.3")
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerify(algs)))
                .with_no_client_auth();
            Arc::new(cfg)
        })
        .clone()
}

/// A client connection to `ip`; `sni`: the name sent as SNI (none when not a DNS name).
pub fn connect(ip: std::net::IpAddr, sni: Option<&str>) -> Result<ClientConnection, String> {
    let name = match sni.and_then(|s| ServerName::try_from(s.to_string()).ok()) {
        Some(n @ ServerName::DnsName(_)) => n,
        // An IP address as the server name: rustls sends no SNI.
        _ => ServerName::IpAddress(ip.into()),
    };
    ClientConnection::new(config(), name).map_err(|e| format!("SSL error: {e}"))
}
