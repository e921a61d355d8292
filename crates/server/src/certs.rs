//! `veritraild certs`: a development certificate authority and the node and
//! client certificates it issues (rcgen). Production clusters should use their
//! own PKI (SPIRE, cert-manager, a corporate CA) with the same identities:
//!
//! - the CA carries the URI SAN `spiffe://<trust domain>`;
//! - a node's certificate carries `spiffe://<trust domain>/veritrail/node/<id>`
//!   and a DNS or IP SAN for every name it is reached by;
//! - a client's certificate carries `spiffe://<trust domain>/service/<name>`,
//!   which becomes the principal stamped into the entries it appends.
//!
//! Keys are ECDSA P-256, written with mode 0600. Nothing is ever overwritten.

use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

use crate::tls::{CertIdentity, first_certificate, node_spiffe_id, split_spiffe};

/// The CA's files inside a certificate directory.
pub const CA_CERT: &str = "ca.pem";
pub const CA_KEY: &str = "ca.key";

/// A trust domain is a DNS-like name: lowercase letters, digits, `-`, `.`, `_`.
fn validate_trust_domain(domain: &str) -> Result<(), String> {
    let ok = !domain.is_empty()
        && domain.len() <= 255
        && domain
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "trust domain {domain:?}: use lowercase letters, digits, '-', '.' and '_'"
        ))
    }
}

/// A service name (the last segment of a client's SPIFFE ID).
fn validate_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "name {name:?}: use letters, digits, '-', '.' and '_' (at most 128)"
        ))
    }
}

fn validity(params: &mut CertificateParams, days: u32) {
    let now = OffsetDateTime::now_utc();
    // An hour of slack for clocks a little behind the issuer's.
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(i64::from(days));
}

fn write_new(path: &Path, contents: &str, mode: u32) -> Result<(), String> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => {
                format!("{} exists already; nothing was overwritten", path.display())
            }
            _ => format!("{}: {e}", path.display()),
        })?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Writes a certificate and its key, refusing to replace either.
fn write_pair(dir: &Path, stem: &str, cert: &str, key: &KeyPair) -> Result<PathBuf, String> {
    let cert_path = dir.join(format!("{stem}.pem"));
    let key_path = dir.join(format!("{stem}.key"));
    for path in [&cert_path, &key_path] {
        if path.exists() {
            return Err(format!(
                "{} exists already; nothing was overwritten",
                path.display()
            ));
        }
    }
    write_new(&key_path, &key.serialize_pem(), 0o600)?;
    write_new(&cert_path, cert, 0o644)?;
    Ok(cert_path)
}

fn err(e: rcgen::Error) -> String {
    format!("certificate generation: {e}")
}

/// Creates `dir` and a new CA in it. Returns the CA certificate's path.
pub fn make_ca(dir: &Path, trust_domain: &str, days: u32) -> Result<PathBuf, String> {
    validate_trust_domain(trust_domain)?;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let key = KeyPair::generate().map_err(err)?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params
        .distinguished_name
        .push(DnType::CommonName, format!("Veritrail CA {trust_domain}"));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.subject_alt_names = vec![SanType::URI(
        format!("spiffe://{trust_domain}").try_into().map_err(err)?,
    )];
    validity(&mut params, days);
    let cert = params.self_signed(&key).map_err(err)?;
    write_pair(dir, "ca", &cert.pem(), &key)
}

/// The CA of `dir`, and its trust domain.
fn load_ca(dir: &Path) -> Result<(Issuer<'static, KeyPair>, String), String> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path).map_err(|e| {
            format!(
                "{}: {e} (make a CA first: veritraild certs ca --dir {})",
                path.display(),
                dir.display()
            )
        })
    };
    let (cert_pem, key_pem) = (read(CA_CERT)?, read(CA_KEY)?);
    let key = KeyPair::from_pem(&key_pem).map_err(|e| format!("{CA_KEY}: {e}"))?;
    let der = first_certificate(cert_pem.as_bytes()).map_err(|e| format!("{CA_CERT}: {e}"))?;
    let domain = CertIdentity::from_der(&der)?
        .spiffe_id
        .as_deref()
        .and_then(|id| id.strip_prefix("spiffe://"))
        .map(str::to_owned)
        .ok_or_else(|| format!("{CA_CERT}: no spiffe://<trust domain> URI in it"))?;
    let issuer = Issuer::from_ca_cert_pem(&cert_pem, key).map_err(err)?;
    Ok((issuer, domain))
}

fn leaf(spiffe_id: &str, common_name: &str, days: u32) -> Result<CertificateParams, String> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.subject_alt_names = vec![SanType::URI(spiffe_id.try_into().map_err(err)?)];
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, days);
    Ok(params)
}

/// Issues node `id`'s certificate, valid for `hosts` (DNS names or IPs) plus
/// `localhost` and `127.0.0.1`, so a health check inside the node's own
/// container or host can verify it. Serves both ways: as the server's
/// certificate, and as the client certificate it presents to its peers.
pub fn make_node(dir: &Path, id: u64, hosts: &[String], days: u32) -> Result<PathBuf, String> {
    if id == 0 {
        return Err("node ids start at 1".into());
    }
    let (issuer, domain) = load_ca(dir)?;
    let mut params = leaf(
        &node_spiffe_id(&domain, id),
        &format!("veritrail node {id}"),
        days,
    )?;
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let mut names: Vec<String> = hosts.to_vec();
    names.extend(["localhost".to_owned(), "127.0.0.1".to_owned()]);
    names.dedup();
    for host in names.iter().filter(|h| !h.is_empty()) {
        let host = host.trim();
        let san = match host.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(host.try_into().map_err(err)?),
        };
        if !params.subject_alt_names.contains(&san) {
            params.subject_alt_names.push(san);
        }
    }
    let key = KeyPair::generate().map_err(err)?;
    let cert = params.signed_by(&key, &issuer).map_err(err)?;
    write_pair(dir, &format!("node-{id}"), &cert.pem(), &key)
}

/// Issues a client certificate for service `name`: its principal is
/// `spiffe://<trust domain>/service/<name>`.
pub fn make_client(dir: &Path, name: &str, days: u32) -> Result<PathBuf, String> {
    validate_name(name)?;
    let (issuer, domain) = load_ca(dir)?;
    let spiffe_id = format!("spiffe://{domain}/service/{name}");
    debug_assert!(split_spiffe(&spiffe_id).is_some());
    let mut params = leaf(&spiffe_id, name, days)?;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate().map_err(err)?;
    let cert = params.signed_by(&key, &issuer).map_err(err)?;
    write_pair(dir, &format!("client-{name}"), &cert.pem(), &key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(path: &Path) -> CertIdentity {
        let pem = std::fs::read(path).expect("read");
        CertIdentity::from_der(&first_certificate(&pem).expect("pem")).expect("parse")
    }

    #[test]
    fn issues_node_and_client_identities_and_never_overwrites() {
        let dir = tempfile::TempDir::new().expect("dir");
        let d = dir.path();
        make_ca(d, "td.example", 30).expect("ca");
        let node = make_node(d, 3, &["node3.td.example".into()], 30).expect("node");
        assert_eq!(identity(&node).node_id("td.example"), Some(3));
        let client = make_client(d, "billing", 30).expect("client");
        let id = identity(&client);
        assert_eq!(id.principal(), Some("spiffe://td.example/service/billing"));
        assert_eq!(id.node_id("td.example"), None);
        let again = make_node(d, 3, &[], 30).expect_err("exists");
        assert!(again.contains("nothing was overwritten"), "{again}");
        assert!(make_ca(d, "td.example", 30).is_err());
        let mode = std::fs::metadata(d.join("node-3.key"))
            .expect("key")
            .permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        assert!(make_client(d, "a/b", 30).is_err());
        assert!(make_ca(&d.join("x"), "Bad Domain", 30).is_err());
    }
}
