//! `veritraild certs`: a development certificate authority and the node and
//! client certificates it issues (rcgen). Production clusters should use their
//! own PKI (SPIRE, cert-manager, a corporate CA) with the same identities:
//!
//! - the CA carries the URI SAN `spiffe://<trust domain>`;
//! - a node's certificate carries `spiffe://<trust domain>/veritrail/<origin>/node/<id>`
//!   (the cluster's origin: one CA may serve several clusters, and a node of one
//!   is nobody to another) and a DNS or IP SAN for every name it is reached by;
//! - a client's certificate carries `spiffe://<trust domain>/service/<name>`,
//!   which becomes the principal stamped into the entries it appends.
//!
//! Keys are ECDSA P-256, written with mode 0600. Nothing is ever overwritten,
//! except the revocation list `crl.pem`, which `revoke` replaces atomically by
//! a longer one.

use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason,
    RevokedCertParams, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};

use crate::tls::{CertIdentity, ClusterName, first_certificate, split_spiffe};

/// The CA's files inside a certificate directory.
pub const CA_CERT: &str = "ca.pem";
pub const CA_KEY: &str = "ca.key";
/// The CA's certificate revocation list inside a certificate directory.
pub const CRL: &str = "crl.pem";

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

/// Issues node `id`'s certificate for the cluster of `origin`, valid for
/// `hosts` (DNS names or IPs) plus `localhost` and `127.0.0.1`, so a health
/// check inside the node's own container or host can verify it. Serves both
/// ways: as the server's certificate, and as the client certificate it
/// presents to its peers.
pub fn make_node(
    dir: &Path,
    id: u64,
    origin: &str,
    hosts: &[String],
    days: u32,
) -> Result<PathBuf, String> {
    if id == 0 {
        return Err("node ids start at 1".into());
    }
    veritrail_core::checkpoint::validate_origin(origin).map_err(|e| e.to_string())?;
    crate::tls::validate_origin_for_identity(origin)?;
    let (issuer, trust_domain) = load_ca(dir)?;
    let cluster = ClusterName {
        trust_domain,
        origin: origin.to_owned(),
    };
    let mut params = leaf(
        &cluster.node_spiffe_id(id),
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

/// What `revoke` wrote.
#[derive(Debug)]
pub struct Revoked {
    pub path: PathBuf,
    /// Certificates the list names now, those before included.
    pub total: usize,
    /// Those this call added.
    pub added: usize,
    pub next_update: OffsetDateTime,
}

/// Adds `certs` (PEM files of certificates this CA issued) to the CA's
/// revocation list `DIR/crl.pem`, creating it (empty when `certs` is), and
/// signs it anew, valid for `days`. The list before is replaced atomically;
/// the certificates it named stay in it. Nodes read it from `tls.crl_file`.
pub fn revoke(dir: &Path, certs: &[PathBuf], days: u32) -> Result<Revoked, String> {
    let (issuer, domain) = load_ca(dir)?;
    let path = dir.join(CRL);
    let now = OffsetDateTime::now_utc();
    let mut revoked: Vec<RevokedCertParams> = Vec::new();
    if let Ok(pem) = std::fs::read(&path) {
        let (_, block) = x509_parser::pem::parse_x509_pem(&pem)
            .map_err(|e| format!("{}: not a PEM revocation list: {e}", path.display()))?;
        let (_, crl) = x509_parser::parse_x509_crl(&block.contents)
            .map_err(|e| format!("{}: not a revocation list: {e}", path.display()))?;
        for entry in crl.iter_revoked_certificates() {
            revoked.push(RevokedCertParams {
                serial_number: SerialNumber::from_slice(entry.raw_serial()),
                revocation_time: entry.revocation_date.to_datetime(),
                reason_code: None,
                invalidity_date: None,
            });
        }
    }
    let mut added = 0;
    for cert in certs {
        let pem = std::fs::read(cert).map_err(|e| format!("{}: {e}", cert.display()))?;
        let der = first_certificate(&pem).map_err(|e| format!("{}: {e}", cert.display()))?;
        let identity = CertIdentity::from_der(&der)?;
        let id = identity.spiffe_id.as_deref().unwrap_or("");
        if split_spiffe(id).map(|(d, _)| d) != Some(domain.as_str()) {
            return Err(format!(
                "{}: {id:?} is not an identity of trust domain {domain}; this CA did not issue it",
                cert.display()
            ));
        }
        let (_, parsed) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| format!("{}: {e}", cert.display()))?;
        let serial = SerialNumber::from_slice(parsed.raw_serial());
        if revoked.iter().any(|r| r.serial_number == serial) {
            continue;
        }
        revoked.push(RevokedCertParams {
            serial_number: serial,
            revocation_time: now,
            reason_code: Some(RevocationReason::Unspecified),
            invalidity_date: None,
        });
        added += 1;
    }
    let next_update = now + Duration::days(i64::from(days.max(1)));
    let params = CertificateRevocationListParams {
        this_update: now,
        next_update,
        // Increasing from one list to the next, as RFC 5280 asks: the time.
        crl_number: SerialNumber::from(now.unix_timestamp().max(1) as u64),
        issuing_distribution_point: None,
        revoked_certs: revoked,
        key_identifier_method: KeyIdMethod::Sha256,
    };
    let total = params.revoked_certs.len();
    let crl = params.signed_by(&issuer).map_err(err)?;
    let pem = crl.pem().map_err(err)?;
    let tmp = dir.join(format!("{CRL}.tmp"));
    let _ = std::fs::remove_file(&tmp);
    write_new(&tmp, &pem, 0o644)?;
    std::fs::rename(&tmp, &path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Revoked {
        path,
        total,
        added,
        next_update,
    })
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
        let node =
            make_node(d, 3, "td.example/log", &["node3.td.example".into()], 30).expect("node");
        let cluster = ClusterName {
            trust_domain: "td.example".into(),
            origin: "td.example/log".into(),
        };
        let other = ClusterName {
            origin: "td.example/other".into(),
            ..cluster.clone()
        };
        assert_eq!(cluster.node_id(&identity(&node)), Some(3));
        assert_eq!(other.node_id(&identity(&node)), None);
        let client = make_client(d, "billing", 30).expect("client");
        let id = identity(&client);
        assert_eq!(id.principal(), Some("spiffe://td.example/service/billing"));
        assert_eq!(cluster.node_id(&id), None);
        assert!(!id.claims_a_node());
        let unfit = make_node(d, 4, "td.example/a b", &[], 30).expect_err("origin");
        assert!(unfit.contains("origin"), "{unfit}");
        let again = make_node(d, 3, "td.example/log", &[], 30).expect_err("exists");
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

    #[test]
    fn revocation_lists_grow_and_keep_what_they_named() {
        let dir = tempfile::TempDir::new().expect("dir");
        let d = dir.path();
        make_ca(d, "td.example", 30).expect("ca");
        let empty = revoke(d, &[], 7).expect("an empty list");
        assert_eq!((empty.total, empty.added), (0, 0));
        let a = make_client(d, "a", 30).expect("a");
        let b = make_client(d, "b", 30).expect("b");
        assert_eq!(revoke(d, std::slice::from_ref(&a), 7).expect("a").total, 1);
        let both = revoke(d, &[a.clone(), b], 7).expect("a and b");
        assert_eq!((both.total, both.added), (2, 1));
        let pem = std::fs::read(d.join(CRL)).expect("crl");
        let (_, block) = x509_parser::pem::parse_x509_pem(&pem).expect("pem");
        let (_, crl) = x509_parser::parse_x509_crl(&block.contents).expect("crl");
        assert_eq!(crl.iter_revoked_certificates().count(), 2);
        // A certificate of another CA is not this CA's to revoke.
        let other = tempfile::TempDir::new().expect("dir");
        make_ca(other.path(), "other.example", 30).expect("ca");
        let stranger = make_client(other.path(), "s", 30).expect("s");
        assert!(revoke(d, &[stranger], 7).is_err());
    }
}
