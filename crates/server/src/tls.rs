//! TLS material and the identities certificates carry.
//!
//! Every certificate of a cluster is issued by one CA (`tls.ca_file`). A node's
//! certificate carries the SPIFFE ID
//! `spiffe://<trust domain>/veritrail/<origin>/node/<id>`: that is what makes it
//! a member's certificate, of this cluster and no other one the CA serves, and
//! what the `RaftPeer` service demands of its callers. Every other SPIFFE ID under
//! `/veritrail/` is reserved: a node certificate of another cluster, or one issued
//! before identities named the origin, is refused outright rather than taken for
//! a client. A client's certificate carries any other SPIFFE ID, or only a subject
//! common name; that string is the client's principal.
//!
//! rustls verifies the chain and the validity period during the handshake; this
//! module only reads the identity out of a certificate rustls already accepted.

use std::path::Path;
use std::sync::Arc;

use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::config::TlsConfig;

/// The path every node identity starts with, after the trust domain.
const NODE_PATH_PREFIX: &str = "/veritrail/";

/// What a certificate says about its holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertIdentity {
    /// The first `spiffe://` URI SAN, if any.
    pub spiffe_id: Option<String>,
    /// The subject's common name, if any.
    pub common_name: Option<String>,
}

impl CertIdentity {
    /// Reads a DER certificate. Only called on certificates rustls verified.
    pub fn from_der(der: &[u8]) -> Result<CertIdentity, String> {
        let (_, cert) = X509Certificate::from_der(der)
            .map_err(|e| format!("the certificate does not parse: {e}"))?;
        let spiffe_id = cert
            .subject_alternative_name()
            .ok()
            .flatten()
            .and_then(|san| {
                san.value.general_names.iter().find_map(|name| match name {
                    GeneralName::URI(uri) if uri.starts_with("spiffe://") => {
                        Some((*uri).to_owned())
                    }
                    _ => None,
                })
            });
        let common_name = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_owned);
        Ok(CertIdentity {
            spiffe_id,
            common_name,
        })
    }

    /// The principal a request made with this certificate is recorded under:
    /// the SPIFFE ID, or else the common name.
    pub fn principal(&self) -> Option<&str> {
        self.spiffe_id.as_deref().or(self.common_name.as_deref())
    }

    /// Whether the certificate claims to be a Veritrail node's, of any
    /// cluster: its SPIFFE ID's path is under `/veritrail/`.
    pub fn claims_a_node(&self) -> bool {
        self.spiffe_id
            .as_deref()
            .and_then(split_spiffe)
            .is_some_and(|(_, path)| path.starts_with(NODE_PATH_PREFIX))
    }
}

/// The cluster a node certificate must name: the CA's trust domain and the
/// log's origin. Two clusters that share a CA have different origins, so a
/// node of one is nobody to the other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterName {
    pub trust_domain: String,
    pub origin: String,
}

impl ClusterName {
    /// The SPIFFE ID of node `id` of this cluster.
    pub fn node_spiffe_id(&self, id: u64) -> String {
        self.node_spiffe_id_of(&id.to_string())
    }

    /// What every node's SPIFFE ID of this cluster looks like, for messages.
    pub fn node_spiffe_id_pattern(&self) -> String {
        self.node_spiffe_id_of("<id>")
    }

    fn node_spiffe_id_of(&self, id: &str) -> String {
        format!(
            "spiffe://{}{NODE_PATH_PREFIX}{}/node/{id}",
            self.trust_domain, self.origin
        )
    }

    /// The node id, when `identity` is a node certificate of this cluster.
    pub fn node_id(&self, identity: &CertIdentity) -> Option<u64> {
        let (domain, path) = split_spiffe(identity.spiffe_id.as_deref()?)?;
        if domain != self.trust_domain {
            return None;
        }
        let id = path
            .strip_prefix(NODE_PATH_PREFIX)?
            .strip_prefix(self.origin.as_str())?
            .strip_prefix("/node/")?;
        // Canonical decimal only: "07" or "+7" would name node 7 twice.
        if id.starts_with('0') || !id.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        id.parse().ok()
    }
}

/// Whether `origin` can be written into a SPIFFE ID's path, as node identities
/// must: `/`-separated segments of letters, digits, `.`, `-` and `_`, none of
/// them empty, `.` or `..` (the SPIFFE ID standard's path rules).
pub fn validate_origin_for_identity(origin: &str) -> Result<(), String> {
    let bad = origin.split('/').find(|segment| {
        segment.is_empty()
            || *segment == "."
            || *segment == ".."
            || !segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
    });
    match bad {
        None => Ok(()),
        Some(segment) => Err(format!(
            "origin {origin:?} cannot name a cluster in node certificates (segment {segment:?}): \
             with TLS the origin must be `/`-separated segments of letters, digits, '.', '-' and '_', \
             as in \"audit.example.com/log\""
        )),
    }
}

/// `spiffe://domain/path` as `(domain, /path)`.
pub fn split_spiffe(id: &str) -> Option<(&str, &str)> {
    let rest = id.strip_prefix("spiffe://")?;
    let slash = rest.find('/')?;
    Some((&rest[..slash], &rest[slash..]))
}

/// A node's TLS files, loaded and checked.
#[derive(Debug, Clone)]
pub struct TlsMaterial {
    ca_pem: Vec<u8>,
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    /// The revocation lists, PEM (`tls.crl_file`), when configured.
    crl_pem: Option<Vec<u8>>,
    /// The trust domain of this node's own SPIFFE ID and the log's origin;
    /// peers' certificates must name both.
    pub cluster: ClusterName,
    /// This node's SPIFFE ID: its principal when it writes to the log itself.
    pub spiffe_id: String,
}

fn read(setting: &str, path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{setting} {}: {e}", path.display()))
}

impl TlsMaterial {
    /// Loads the files `config` names, or `None` for a development node without
    /// TLS. The certificate must be node `node_id`'s of the cluster of `origin`:
    /// a node started with another member's files would speak in that member's
    /// name.
    pub fn load(
        config: &TlsConfig,
        node_id: u64,
        origin: &str,
    ) -> Result<Option<TlsMaterial>, String> {
        let (Some(ca), Some(cert), Some(key)) =
            (&config.ca_file, &config.cert_file, &config.key_file)
        else {
            return Ok(None);
        };
        let ca_pem = read("tls.ca_file", ca)?;
        let cert_pem = read("tls.cert_file", cert)?;
        let key_pem = read("tls.key_file", key)?;
        let crl_pem = config
            .crl_file
            .as_ref()
            .map(|path| read("tls.crl_file", path))
            .transpose()?;
        let first = first_certificate(&cert_pem)
            .map_err(|e| format!("tls.cert_file {}: {e}", cert.display()))?;
        let own = CertIdentity::from_der(&first)
            .map_err(|e| format!("tls.cert_file {}: {e}", cert.display()))?;
        validate_origin_for_identity(origin)?;
        let spiffe_id = own.spiffe_id.clone().ok_or_else(|| {
            format!(
                "tls.cert_file {}: a node certificate needs the SPIFFE ID spiffe://<trust domain>/veritrail/{origin}/node/{node_id} (`veritraild certs node` makes one)",
                cert.display()
            )
        })?;
        let trust_domain = split_spiffe(&spiffe_id)
            .map(|(d, _)| d.to_owned())
            .ok_or_else(|| format!("tls.cert_file: {spiffe_id:?} is not a SPIFFE ID"))?;
        let cluster = ClusterName {
            trust_domain,
            origin: origin.to_owned(),
        };
        if cluster.node_id(&own) != Some(node_id) {
            return Err(format!(
                "tls.cert_file {}: the certificate is {spiffe_id}, not node {node_id}'s of this \
                 cluster ({}); node certificates name the cluster's origin: issue one with \
                 `veritraild certs node --origin {origin}`",
                cert.display(),
                cluster.node_spiffe_id(node_id)
            ));
        }
        first_certificate(&ca_pem).map_err(|e| format!("tls.ca_file {}: {e}", ca.display()))?;
        if !String::from_utf8_lossy(&key_pem).contains("PRIVATE KEY-----") {
            return Err(format!(
                "tls.key_file {}: no PEM private key in it",
                key.display()
            ));
        }
        let material = TlsMaterial {
            ca_pem,
            cert_pem,
            key_pem,
            crl_pem,
            cluster,
            spiffe_id,
        };
        // Built once here so that a file rustls cannot use stops the start.
        material.acceptor()?;
        Ok(Some(material))
    }

    /// The listener's side (`listener.rs`). Client certificates are asked for
    /// and verified against the CA, but optional at the TLS layer: bearer-token
    /// clients have none. Each service then demands what it needs (`auth.rs`).
    /// HTTP/2 only, as gRPC is.
    pub fn acceptor(&self) -> Result<tokio_rustls::TlsAcceptor, String> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        // A certificate of the CA that a revocation list names fails the
        // handshake, a client's and a peer's alike. Only the certificate
        // presented is checked: the CA itself is the trust anchor.
        let clients = rustls::server::WebPkiClientVerifier::builder_with_provider(
            self.roots()?,
            provider.clone(),
        )
        .with_crls(self.crls()?)
        .only_check_end_entity_revocation()
        .allow_unauthenticated()
        .build()
        .map_err(|e| format!("tls.ca_file and tls.crl_file: {e}"))?;
        let chain = CertificateDer::pem_slice_iter(&self.cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("tls.cert_file: {e}"))?;
        // This node's own certificate must pass what its peers' must: a
        // revocation list that is not the CA's would otherwise refuse every
        // peer, and a node whose own certificate is revoked has no place here.
        if let Some((own, intermediates)) = chain.split_first() {
            clients
                .verify_client_cert(own, intermediates, rustls::pki_types::UnixTime::now())
                .map_err(|e| {
                    format!(
                        "this node's own certificate does not pass tls.ca_file and \
                         tls.crl_file ({e}); a revocation list must be the CA's"
                    )
                })?;
        }
        let key = PrivateKeyDer::from_pem_slice(&self.key_pem)
            .map_err(|e| format!("tls.key_file: {e}"))?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_client_cert_verifier(clients)
            .with_single_cert(chain, key)
            .map_err(|e| format!("tls.cert_file and tls.key_file: {e}"))?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
    }

    fn roots(&self) -> Result<Arc<rustls::RootCertStore>, String> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;

        let mut roots = rustls::RootCertStore::empty();
        for ca in CertificateDer::pem_slice_iter(&self.ca_pem) {
            let ca = ca.map_err(|e| format!("tls.ca_file: {e}"))?;
            roots
                .add(ca)
                .map_err(|e| format!("tls.ca_file: not a CA certificate rustls takes: {e}"))?;
        }
        Ok(Arc::new(roots))
    }

    fn crls(
        &self,
    ) -> Result<Vec<rustls::pki_types::CertificateRevocationListDer<'static>>, String> {
        use rustls::pki_types::CertificateRevocationListDer;
        use rustls::pki_types::pem::PemObject;

        let Some(pem) = &self.crl_pem else {
            return Ok(Vec::new());
        };
        let crls = CertificateRevocationListDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("tls.crl_file: {e}"))?;
        if crls.is_empty() {
            return Err("tls.crl_file: no PEM X509 CRL in it".into());
        }
        Ok(crls)
    }

    /// This node calling its peers. The peer must present a certificate of
    /// the CA that no revocation list names, valid for the address called,
    /// and carrying a node identity of this cluster; this node's own
    /// certificate proves its membership in return. (tonic's own TLS client
    /// would check the CA and the name only.)
    pub fn peer_connector(&self) -> Result<PeerConnector, String> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let servers = rustls::client::WebPkiServerVerifier::builder_with_provider(
            self.roots()?,
            provider.clone(),
        )
        .with_crls(self.crls()?)
        .only_check_end_entity_revocation()
        .build()
        .map_err(|e| format!("tls.ca_file and tls.crl_file: {e}"))?;
        let verifier = Arc::new(ClusterPeerVerifier {
            webpki: servers,
            cluster: self.cluster.clone(),
        });
        let chain = CertificateDer::pem_slice_iter(&self.cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("tls.cert_file: {e}"))?;
        let key = PrivateKeyDer::from_pem_slice(&self.key_pem)
            .map_err(|e| format!("tls.key_file: {e}"))?;
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(chain, key)
            .map_err(|e| format!("tls.cert_file and tls.key_file: {e}"))?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(PeerConnector {
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
        })
    }
}

/// The CA's verdict on a peer's certificate (chain, validity, name, revocation),
/// and then this module's: the certificate must be a node's of this cluster.
/// A certificate of the CA that is not (a client's, another cluster's node's)
/// could otherwise answer at a member's address.
#[derive(Debug)]
struct ClusterPeerVerifier {
    webpki: Arc<rustls::client::WebPkiServerVerifier>,
    cluster: ClusterName,
}

impl rustls::client::danger::ServerCertVerifier for ClusterPeerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        intermediates: &[rustls::pki_types::CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let verified = self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        let identity = CertIdentity::from_der(end_entity).map_err(rustls::Error::General)?;
        if self.cluster.node_id(&identity).is_none() {
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Other(rustls::OtherError(Arc::new(NotANode(format!(
                    "the peer at {server_name:?} presented {}, not a node of this cluster ({})",
                    identity
                        .principal()
                        .unwrap_or("a certificate without an identity"),
                    self.cluster.node_spiffe_id_pattern()
                ))))),
            ));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

#[derive(Debug)]
struct NotANode(String);

impl std::fmt::Display for NotANode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotANode {}

/// Opens TLS connections to peers, verified as [`TlsMaterial::peer_connector`]
/// says. Cheap to clone.
#[derive(Clone)]
pub struct PeerConnector {
    tls: tokio_rustls::TlsConnector,
}

impl std::fmt::Debug for PeerConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerConnector").finish_non_exhaustive()
    }
}

impl PeerConnector {
    /// Connects to `host:port`, verifying the peer's certificate for `host`.
    pub async fn connect(
        &self,
        host: &str,
        port: u16,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        let name = rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("peer host {host:?}: {e}"),
            )
        })?;
        let tcp = tokio::net::TcpStream::connect((host, port)).await?;
        tcp.set_nodelay(true)?;
        self.tls.connect(name, tcp).await
    }
}

/// The DER of the first certificate in a PEM file.
pub fn first_certificate(pem: &[u8]) -> Result<Vec<u8>, String> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem)
        .map_err(|e| format!("no PEM certificate in it: {e}"))?;
    if block.label != "CERTIFICATE" {
        return Err(format!("expected a CERTIFICATE, found {}", block.label));
    }
    X509Certificate::from_der(&block.contents)
        .map_err(|e| format!("the certificate does not parse: {e}"))?;
    Ok(block.contents)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(spiffe: Option<&str>, cn: Option<&str>) -> CertIdentity {
        CertIdentity {
            spiffe_id: spiffe.map(str::to_owned),
            common_name: cn.map(str::to_owned),
        }
    }

    #[test]
    fn node_ids_are_canonical_and_of_this_cluster() {
        let cluster = ClusterName {
            trust_domain: "td.example".into(),
            origin: "audit.example/log".into(),
        };
        let node = identity(
            Some("spiffe://td.example/veritrail/audit.example/log/node/7"),
            None,
        );
        assert_eq!(cluster.node_id(&node), Some(7));
        assert_eq!(
            cluster.node_spiffe_id(7),
            "spiffe://td.example/veritrail/audit.example/log/node/7"
        );
        assert!(node.claims_a_node());
        for bad in [
            "spiffe://other.example/veritrail/audit.example/log/node/7",
            "spiffe://td.example/veritrail/audit.example/log/node/07",
            "spiffe://td.example/veritrail/audit.example/log/node/+7",
            "spiffe://td.example/veritrail/audit.example/log/node/",
            "spiffe://td.example/veritrail/audit.example/log/node/7/x",
            "spiffe://td.example/veritrail/audit.example/other/node/7",
            "spiffe://td.example/veritrail/audit.example/logs/node/7",
            "spiffe://td.example/veritrail/node/7",
            "spiffe://td.example/service/node/7",
        ] {
            let id = identity(Some(bad), None);
            assert_eq!(cluster.node_id(&id), None, "{bad}");
        }
        assert!(identity(Some("spiffe://td.example/veritrail/node/7"), None).claims_a_node());
        assert!(!identity(Some("spiffe://td.example/service/billing"), None).claims_a_node());
        assert!(!identity(None, Some("/veritrail/node/7")).claims_a_node());
    }

    #[test]
    fn origins_must_fit_a_spiffe_path() {
        for good in ["audit.example.com/log", "veritrail.local/audit", "a_b-c"] {
            validate_origin_for_identity(good).expect(good);
        }
        for bad in ["a//b", "/a", "a/", "a/../b", "a/./b", "a:b", "a~b", "a%2fb"] {
            validate_origin_for_identity(bad).expect_err(bad);
        }
    }

    #[test]
    fn the_principal_prefers_the_spiffe_id() {
        let both = identity(Some("spiffe://td/service/billing"), Some("billing"));
        assert_eq!(both.principal(), Some("spiffe://td/service/billing"));
        assert_eq!(identity(None, Some("billing")).principal(), Some("billing"));
        assert_eq!(identity(None, None).principal(), None);
    }
}
