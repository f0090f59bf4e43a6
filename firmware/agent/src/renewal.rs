//! Certificate rotation before expiry. When two thirds of the device certificate's life
//! have passed, the agent makes a new key (kept as `device.key.next`, 0600), sends a
//! `cert_renewal` event with a signing request for it over its authenticated link, and
//! installs the `install_certificate` answer: the certificate must name this device and
//! carry the new key; then the new key replaces the old one and the agent reconnects.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use time::OffsetDateTime;

use crate::config::TlsFiles;

/// Is renewal due? (Two thirds of the validity have passed.)
pub fn due(not_before: OffsetDateTime, not_after: OffsetDateTime, now: OffsetDateTime) -> bool {
    let life: time::Duration = not_after - not_before;
    now >= not_before + life * 2 / 3
}

/// How often to look: a tenth of the validity, between 1 s and an hour.
pub fn check_every(not_before: OffsetDateTime, not_after: OffsetDateTime) -> std::time::Duration {
    let life: time::Duration = not_after - not_before;
    let tenth = (life.whole_milliseconds() / 10).max(0) as u64;
    std::time::Duration::from_millis(tenth.clamp(1000, 3_600_000))
}

/// The validity of the certificate file.
pub fn validity(cert: &Path) -> anyhow::Result<(OffsetDateTime, OffsetDateTime)> {
    let text = std::fs::read(cert).with_context(|| format!("reading {}", cert.display()))?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(&text)
        .map_err(|e| anyhow::anyhow!("{}: not a PEM certificate: {e}", cert.display()))?;
    let (_, c) = x509_parser::parse_x509_certificate(&pem.contents)
        .map_err(|e| anyhow::anyhow!("{}: not X.509: {e}", cert.display()))?;
    Ok((
        c.validity().not_before.to_datetime(),
        c.validity().not_after.to_datetime(),
    ))
}

fn next_key(files: &TlsFiles) -> PathBuf {
    files.key.with_extension("key.next")
}

/// A signing request for the next key (made now, or the one already waiting).
pub fn request(files: &TlsFiles) -> anyhow::Result<String> {
    let path = next_key(files);
    let key = match std::fs::read_to_string(&path) {
        Ok(pem) => rcgen::KeyPair::from_pem(&pem)
            .with_context(|| format!("{} is not a key", path.display()))?,
        Err(_) => {
            let key = rcgen::KeyPair::generate().context("making the next device key")?;
            crate::enroll::write_secret(&path, &key.serialize_pem())?;
            key
        }
    };
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "gavel-device-renewal");
    params
        .serialize_request(&key)
        .and_then(|c| c.pem())
        .context("making the renewal signing request")
}

/// Installs a renewed certificate: it must name `device` and carry the next key. Returns
/// its serial (hex) and expiry.
pub fn install(
    files: &TlsFiles,
    device: &str,
    cert_pem: &str,
) -> anyhow::Result<(String, OffsetDateTime)> {
    let path = next_key(files);
    let key_pem = std::fs::read_to_string(&path)
        .with_context(|| format!("no renewal is waiting ({} missing)", path.display()))?;
    let key = rcgen::KeyPair::from_pem(&key_pem).context("the next key")?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
        .map_err(|e| anyhow::anyhow!("not a PEM certificate: {e}"))?;
    let (_, cert) = x509_parser::parse_x509_certificate(&pem.contents)
        .map_err(|e| anyhow::anyhow!("not X.509: {e}"))?;
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|c| c.as_str().ok())
        .unwrap_or_default();
    if cn != device {
        bail!("the certificate names {cn:?}, not this device ({device})");
    }
    use rcgen::PublicKeyData;
    if cert.public_key().raw != key.subject_public_key_info().as_slice() {
        bail!("the certificate is not for the key this device asked about");
    }
    let serial = hex::encode(cert.raw_serial());
    let not_after = cert.validity().not_after.to_datetime();
    let tmp = files.cert.with_extension("pem.tmp");
    std::fs::write(&tmp, cert_pem).with_context(|| format!("writing {}", tmp.display()))?;
    // Design: the key moves first; a crash between the two renames leaves the new key with
    // the old certificate, and `request` then has no waiting key, so the next renewal makes
    // one; the old certificate still works until it expires.
    std::fs::rename(&path, &files.key)
        .with_context(|| format!("replacing {}", files.key.display()))?;
    std::fs::rename(&tmp, &files.cert)
        .with_context(|| format!("replacing {}", files.cert.display()))?;
    Ok((serial, not_after))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000 + s).expect("time")
    }

    #[test]
    fn renewal_is_due_after_two_thirds_of_the_validity() {
        assert!(!due(t(0), t(90), t(59)));
        assert!(due(t(0), t(90), t(60)));
        assert_eq!(check_every(t(0), t(90)), std::time::Duration::from_secs(9));
        assert_eq!(
            check_every(t(0), t(90 * 24 * 3600)),
            std::time::Duration::from_secs(3600)
        );
    }

    #[test]
    fn only_a_certificate_for_this_device_and_the_next_key_is_installed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = TlsFiles {
            ca: dir.path().join("ca.pem"),
            cert: dir.path().join("device.pem"),
            key: dir.path().join("device.key"),
        };
        std::fs::write(&files.cert, "old").expect("old cert");
        std::fs::write(&files.key, "old").expect("old key");
        let csr = request(&files).expect("csr");
        assert_eq!(
            request(&files).ok().map(|_| ()),
            Some(()),
            "the waiting key is reused"
        );
        // A CA signs it (as the controller would).
        let ca_key = rcgen::KeyPair::generate().expect("ca key");
        let mut ca_params = rcgen::CertificateParams::default();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_cert = ca_params.self_signed(&ca_key).expect("ca");
        let issuer = rcgen::Issuer::from_ca_cert_pem(&ca_cert.pem(), &ca_key).expect("issuer");
        let sign = |cn: &str, csr: &str| {
            let mut req = rcgen::CertificateSigningRequestParams::from_pem(csr).expect("csr");
            req.params.distinguished_name = rcgen::DistinguishedName::new();
            req.params
                .distinguished_name
                .push(rcgen::DnType::CommonName, cn);
            req.signed_by(&issuer).expect("sign").pem()
        };
        let other = sign("cam-b", &csr);
        let err = install(&files, "cam-a", &other).expect_err("another device's");
        assert!(err.to_string().contains("cam-b"), "{err}");
        let foreign_key = rcgen::KeyPair::generate().expect("key");
        let foreign_csr = rcgen::CertificateParams::default()
            .serialize_request(&foreign_key)
            .and_then(|c| c.pem())
            .expect("csr");
        let err = install(&files, "cam-a", &sign("cam-a", &foreign_csr)).expect_err("wrong key");
        assert!(err.to_string().contains("key"), "{err}");
        assert_eq!(std::fs::read_to_string(&files.cert).expect("cert"), "old");
        let good = sign("cam-a", &csr);
        install(&files, "cam-a", &good).expect("installed");
        assert_eq!(std::fs::read_to_string(&files.cert).expect("cert"), good);
        assert_ne!(std::fs::read_to_string(&files.key).expect("key"), "old");
        assert!(!files.key.with_extension("key.next").exists());
    }
}
