//! TLS material and the identities certificates carry.
//!
//! Every certificate of a cluster is issued by one CA (`tls.ca_file`). A node's
//! certificate carries the SPIFFE ID `spiffe://<trust domain>/veritrail/node/<id>`:
//! that is what makes it a member's certificate, and what the `RaftPeer` service
//! demands of its callers. A client's certificate carries any other SPIFFE ID,
//! or only a subject common name; that string is the client's principal.
//!
//! rustls verifies the chain and the validity period during the handshake; this
//! module only reads the identity out of a certificate rustls already accepted.

use std::path::Path;
use std::sync::Arc;

use tonic::transport::{Certificate, ClientTlsConfig, Identity};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::config::TlsConfig;

/// The path of a node's SPIFFE ID, after the trust domain.
const NODE_PATH_PREFIX: &str = "/veritrail/node/";

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

    /// The node id, when this is a node certificate of `trust_domain`.
    pub fn node_id(&self, trust_domain: &str) -> Option<u64> {
        let (domain, path) = split_spiffe(self.spiffe_id.as_deref()?)?;
        if domain != trust_domain {
            return None;
        }
        let id = path.strip_prefix(NODE_PATH_PREFIX)?;
        // Canonical decimal only: "07" or "+7" would name node 7 twice.
        if id.starts_with('0') || !id.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        id.parse().ok()
    }
}

/// `spiffe://domain/path` as `(domain, /path)`.
pub fn split_spiffe(id: &str) -> Option<(&str, &str)> {
    let rest = id.strip_prefix("spiffe://")?;
    let slash = rest.find('/')?;
    Some((&rest[..slash], &rest[slash..]))
}

/// The SPIFFE ID of node `id` in `trust_domain`.
pub fn node_spiffe_id(trust_domain: &str, id: u64) -> String {
    format!("spiffe://{trust_domain}{NODE_PATH_PREFIX}{id}")
}

/// A node's TLS files, loaded and checked.
#[derive(Debug, Clone)]
pub struct TlsMaterial {
    ca: Certificate,
    identity: Identity,
    ca_pem: Vec<u8>,
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    /// The revocation lists, PEM (`tls.crl_file`), when configured.
    crl_pem: Option<Vec<u8>>,
    /// The trust domain of this node's own SPIFFE ID; peers must share it.
    pub trust_domain: String,
    /// This node's SPIFFE ID: its principal when it writes to the log itself.
    pub spiffe_id: String,
}

fn read(setting: &str, path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{setting} {}: {e}", path.display()))
}

impl TlsMaterial {
    /// Loads the files `config` names, or `None` for a development node without
    /// TLS. The certificate must be node `node_id`'s: a node started with
    /// another member's files would speak in that member's name.
    pub fn load(config: &TlsConfig, node_id: u64) -> Result<Option<TlsMaterial>, String> {
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
        let spiffe_id = own.spiffe_id.clone().ok_or_else(|| {
            format!(
                "tls.cert_file {}: a node certificate needs the SPIFFE ID spiffe://<trust domain>/veritrail/node/{node_id} (`veritraild certs node` makes one)",
                cert.display()
            )
        })?;
        let trust_domain = split_spiffe(&spiffe_id)
            .map(|(d, _)| d.to_owned())
            .ok_or_else(|| format!("tls.cert_file: {spiffe_id:?} is not a SPIFFE ID"))?;
        if own.node_id(&trust_domain) != Some(node_id) {
            return Err(format!(
                "tls.cert_file {}: the certificate is {spiffe_id}, not node {node_id}'s ({})",
                cert.display(),
                node_spiffe_id(&trust_domain, node_id)
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
            ca: Certificate::from_pem(&ca_pem),
            identity: Identity::from_pem(&cert_pem, &key_pem),
            ca_pem,
            cert_pem,
            key_pem,
            crl_pem,
            trust_domain,
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
        use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for ca in CertificateDer::pem_slice_iter(&self.ca_pem) {
            let ca = ca.map_err(|e| format!("tls.ca_file: {e}"))?;
            roots
                .add(ca)
                .map_err(|e| format!("tls.ca_file: not a CA certificate rustls takes: {e}"))?;
        }
        let mut crls = Vec::new();
        if let Some(pem) = &self.crl_pem {
            for crl in CertificateRevocationListDer::pem_slice_iter(pem) {
                crls.push(crl.map_err(|e| format!("tls.crl_file: {e}"))?);
            }
            if crls.is_empty() {
                return Err("tls.crl_file: no PEM X509 CRL in it".into());
            }
        }
        // A certificate of the CA that a revocation list names fails the
        // handshake, a client's and a peer's alike. Only the certificate
        // presented is checked: the CA itself is the trust anchor.
        let clients = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .with_crls(crls)
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

    /// This node calling its peers: the CA verifies them, and the node's own
    /// certificate proves membership to them.
    pub fn client(&self) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(self.ca.clone())
            .identity(self.identity.clone())
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
    fn node_ids_are_canonical_and_in_the_trust_domain() {
        let node = identity(Some("spiffe://td.example/veritrail/node/7"), None);
        assert_eq!(node.node_id("td.example"), Some(7));
        assert_eq!(node.node_id("other.example"), None);
        for bad in [
            "spiffe://td.example/veritrail/node/07",
            "spiffe://td.example/veritrail/node/+7",
            "spiffe://td.example/veritrail/node/",
            "spiffe://td.example/veritrail/node/7/x",
            "spiffe://td.example/service/node/7",
        ] {
            assert_eq!(
                identity(Some(bad), None).node_id("td.example"),
                None,
                "{bad}"
            );
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
