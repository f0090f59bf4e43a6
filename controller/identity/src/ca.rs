//! The device certificate authority.
//!
//! The controller holds one CA key. Devices make their own key and send a certificate
//! signing request (CSR); the CA signs it into a client certificate whose common name is
//! the device id the enrollment token was made for, whatever the CSR asked for. The broker
//! (the embedded gate, or Mosquitto with `use_identity_as_username`) takes the device id
//! from that common name. Revocation is a list of serial numbers, published as a CRL for
//! external brokers and checked directly by the embedded gate.

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams,
    CertificateSigningRequestParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevokedCertParams, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};

use gavel_protocol::DeviceId;

/// Something about a certificate or key was wrong.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// The CSR could not be parsed or its self-signature is wrong.
    #[error("the certificate signing request is not valid: {0}")]
    BadCsr(rcgen::Error),
    /// The CA certificate or key given could not be read.
    #[error("the CA {what} is not valid: {source}")]
    BadCa {
        what: &'static str,
        source: rcgen::Error,
    },
    /// A certificate could not be parsed.
    #[error("the certificate is not valid X.509: {0}")]
    BadCertificate(String),
    /// The certificate names no subject common name we can use.
    #[error("the certificate has no usable common name")]
    NoCommonName,
    /// A serial number in hex was not hex.
    #[error("serial number {0:?} is not hexadecimal")]
    BadSerial(String),
    /// Signing failed.
    #[error("signing failed: {0}")]
    Sign(rcgen::Error),
}

/// A certificate just issued.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// Its serial number, lowercase hex.
    pub serial: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

/// A key and certificate made for a service (the broker gate, the controller's own client).
#[derive(Debug, Clone)]
pub struct KeyAndCert {
    pub key_pem: String,
    pub issued: Issued,
}

/// A revoked certificate, for the CRL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revoked {
    /// Serial number, lowercase hex.
    pub serial: String,
    pub at: OffsetDateTime,
}

/// The device CA: its certificate and key.
pub struct DeviceCa {
    cert_pem: String,
    key: KeyPair,
}

impl std::fmt::Debug for DeviceCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceCa").finish_non_exhaustive()
    }
}

impl DeviceCa {
    /// Makes a new CA (P-256 key, valid 20 years from `now`), named `name`.
    pub fn generate(name: &str, now: OffsetDateTime) -> Result<Self, CaError> {
        let key = KeyPair::generate().map_err(CaError::Sign)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        dn.push(DnType::OrganizationName, "Gavel device CA");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = now - Duration::minutes(5);
        params.not_after = now + Duration::days(365 * 20);
        params.serial_number = Some(random_serial()?);
        let cert = params.self_signed(&key).map_err(CaError::Sign)?;
        Ok(Self {
            cert_pem: cert.pem(),
            key,
        })
    }

    /// Loads a CA from its certificate and key (PEM).
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, CaError> {
        let key = KeyPair::from_pem(key_pem).map_err(|source| CaError::BadCa {
            what: "key",
            source,
        })?;
        // Check the certificate parses and belongs to the key.
        Issuer::from_ca_cert_pem(cert_pem, &key).map_err(|source| CaError::BadCa {
            what: "certificate",
            source,
        })?;
        Ok(Self {
            cert_pem: cert_pem.to_string(),
            key,
        })
    }

    /// The CA certificate (PEM), the trust anchor of devices and brokers.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA key (PEM). Keep it 0600 on the controller only.
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    fn issuer(&self) -> Result<Issuer<'static, &KeyPair>, CaError> {
        Issuer::from_ca_cert_pem(&self.cert_pem, &self.key).map_err(|source| CaError::BadCa {
            what: "certificate",
            source,
        })
    }

    /// Signs a device's CSR into a client certificate for `device`, valid `validity` from
    /// `now`. The subject is set to the device id whatever the CSR asked for; the key is the
    /// CSR's (made on the device, never seen here).
    pub fn issue_device(
        &self,
        csr_pem: &str,
        device: &DeviceId,
        now: OffsetDateTime,
        validity: Duration,
    ) -> Result<Issued, CaError> {
        let mut csr =
            CertificateSigningRequestParams::from_pem(csr_pem).map_err(CaError::BadCsr)?;
        let params = &mut csr.params;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, device.as_str());
        dn.push(DnType::OrganizationName, "Gavel device");
        params.distinguished_name = dn;
        params.subject_alt_names = vec![SanType::URI(
            format!("urn:gavel:device:{device}")
                .try_into()
                .map_err(CaError::Sign)?,
        )];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.custom_extensions.clear();
        stamp(params, now, validity)?;
        let cert = csr.signed_by(&self.issuer()?).map_err(CaError::Sign)?;
        issued(cert.pem(), &csr.params)
    }

    /// Makes a key and a server certificate for the broker gate (DNS names and IPs).
    pub fn issue_server(
        &self,
        names: &[String],
        now: OffsetDateTime,
        validity: Duration,
    ) -> Result<KeyAndCert, CaError> {
        let mut params = CertificateParams::new(names.to_vec()).map_err(CaError::Sign)?;
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            names.first().map(String::as_str).unwrap_or("gavel"),
        );
        params.distinguished_name = dn;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue_own(params, now, validity)
    }

    /// Makes a key and a client certificate with common name `name` (the controller's own
    /// MQTT identity, [`gavel_protocol::acl::CONTROLLER_IDENTITY`]).
    pub fn issue_client(
        &self,
        name: &str,
        now: OffsetDateTime,
        validity: Duration,
    ) -> Result<KeyAndCert, CaError> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue_own(params, now, validity)
    }

    fn issue_own(
        &self,
        mut params: CertificateParams,
        now: OffsetDateTime,
        validity: Duration,
    ) -> Result<KeyAndCert, CaError> {
        let key = KeyPair::generate().map_err(CaError::Sign)?;
        stamp(&mut params, now, validity)?;
        let cert = params
            .signed_by(&key, &self.issuer()?)
            .map_err(CaError::Sign)?;
        Ok(KeyAndCert {
            key_pem: key.serialize_pem(),
            issued: issued(cert.pem(), &params)?,
        })
    }

    /// A CRL listing `revoked`, numbered `number`, valid for `validity` from `now` (PEM).
    pub fn crl(
        &self,
        revoked: &[Revoked],
        number: u64,
        now: OffsetDateTime,
        validity: Duration,
    ) -> Result<String, CaError> {
        let revoked_certs = revoked
            .iter()
            .map(|r| {
                Ok(RevokedCertParams {
                    serial_number: SerialNumber::from_slice(
                        &hex::decode(&r.serial)
                            .map_err(|_| CaError::BadSerial(r.serial.clone()))?,
                    ),
                    revocation_time: r.at,
                    reason_code: None,
                    invalidity_date: None,
                })
            })
            .collect::<Result<Vec<_>, CaError>>()?;
        let params = CertificateRevocationListParams {
            this_update: now - Duration::minutes(5),
            next_update: now + validity,
            crl_number: SerialNumber::from(number),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&self.issuer()?).map_err(CaError::Sign)?;
        crl.pem().map_err(CaError::Sign)
    }
}

fn stamp(
    params: &mut CertificateParams,
    now: OffsetDateTime,
    validity: Duration,
) -> Result<(), CaError> {
    // Back-dated a little for clocks slightly behind; at most a tenth of the validity, so
    // "two thirds of the life" stays close to two thirds of `validity`.
    let tenth: Duration = validity / 10;
    params.not_before = now - tenth.min(Duration::minutes(5));
    params.not_after = now + validity;
    params.serial_number = Some(random_serial()?);
    params.use_authority_key_identifier_extension = true;
    Ok(())
}

fn issued(cert_pem: String, params: &CertificateParams) -> Result<Issued, CaError> {
    let serial = params
        .serial_number
        .as_ref()
        .map(|s| hex::encode(s.to_bytes()))
        .unwrap_or_default();
    Ok(Issued {
        cert_pem,
        serial,
        not_before: params.not_before,
        not_after: params.not_after,
    })
}

/// 16 random bytes, top bit cleared so the DER integer stays positive and 16 bytes long.
fn random_serial() -> Result<SerialNumber, CaError> {
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes).map_err(|e| CaError::BadSerial(e.to_string()))?;
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

/// Made on the device: a fresh key and a CSR for it (PEM, PEM). The key never leaves the
/// device.
pub fn device_csr(device: &DeviceId) -> Result<(String, String), CaError> {
    let key = KeyPair::generate().map_err(CaError::Sign)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, device.as_str());
    params.distinguished_name = dn;
    let csr = params.serialize_request(&key).map_err(CaError::Sign)?;
    Ok((csr.pem().map_err(CaError::Sign)?, key.serialize_pem()))
}

/// Who a certificate names: what the broker gate and the API read from a peer certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertIdentity {
    /// Subject common name.
    pub common_name: String,
    /// Serial number, lowercase hex.
    pub serial: String,
    pub not_after: OffsetDateTime,
}

/// Reads the identity from a DER certificate.
pub fn cert_identity(der: &[u8]) -> Result<CertIdentity, CaError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| CaError::BadCertificate(e.to_string()))?;
    let common_name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .ok_or(CaError::NoCommonName)?
        .to_string();
    let not_after = cert.validity().not_after.to_datetime();
    Ok(CertIdentity {
        common_name,
        serial: hex::encode(cert.raw_serial()),
        not_after,
    })
}

/// Reads the identity from a PEM certificate.
pub fn cert_identity_pem(pem: &str) -> Result<CertIdentity, CaError> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| CaError::BadCertificate(e.to_string()))?;
    cert_identity(&pem.contents)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("valid time")
    }

    fn dev(id: &str) -> DeviceId {
        DeviceId::new(id).expect("valid id")
    }

    #[test]
    fn a_device_certificate_names_the_enrolled_device_whatever_the_csr_asked() {
        let ca = DeviceCa::generate("test CA", now()).expect("ca");
        // The device asks to be someone else: the token's device id wins.
        let (csr, _key) = device_csr(&dev("cam-b")).expect("csr");
        let issued = ca
            .issue_device(&csr, &dev("cam-a"), now(), Duration::days(30))
            .expect("issued");
        let id = cert_identity_pem(&issued.cert_pem).expect("parse");
        assert_eq!(id.common_name, "cam-a");
        assert_eq!(id.serial, issued.serial);
        assert_eq!(id.not_after, now() + Duration::days(30));
    }

    #[test]
    fn a_ca_survives_a_round_trip_through_pem() {
        let ca = DeviceCa::generate("test CA", now()).expect("ca");
        let again = DeviceCa::from_pem(ca.cert_pem(), &ca.key_pem()).expect("reload");
        let (csr, _) = device_csr(&dev("cam-a")).expect("csr");
        again
            .issue_device(&csr, &dev("cam-a"), now(), Duration::days(1))
            .expect("signs after reload");
    }

    #[test]
    fn a_garbage_csr_is_refused_with_the_reason() {
        let ca = DeviceCa::generate("test CA", now()).expect("ca");
        let err = ca
            .issue_device("not a csr", &dev("cam-a"), now(), Duration::days(1))
            .expect_err("garbage");
        assert!(matches!(err, CaError::BadCsr(_)));
        assert!(err.to_string().contains("signing request"), "{err}");
    }

    #[test]
    fn a_wrong_key_for_the_ca_certificate_is_refused() {
        let ca = DeviceCa::generate("test CA", now()).expect("ca");
        assert!(DeviceCa::from_pem(ca.cert_pem(), "garbage").is_err());
    }

    #[test]
    fn serials_are_distinct_and_the_crl_lists_them() {
        let ca = DeviceCa::generate("test CA", now()).expect("ca");
        let (csr, _) = device_csr(&dev("cam-a")).expect("csr");
        let a = ca
            .issue_device(&csr, &dev("cam-a"), now(), Duration::days(1))
            .expect("a");
        let b = ca
            .issue_device(&csr, &dev("cam-a"), now(), Duration::days(1))
            .expect("b");
        assert_ne!(a.serial, b.serial);
        let crl = ca
            .crl(
                &[Revoked {
                    serial: a.serial.clone(),
                    at: now(),
                }],
                1,
                now(),
                Duration::days(7),
            )
            .expect("crl");
        let (_, pem) = x509_parser::pem::parse_x509_pem(crl.as_bytes()).expect("pem");
        let (_, parsed) = x509_parser::parse_x509_crl(&pem.contents).expect("crl der");
        let listed: Vec<String> = parsed
            .iter_revoked_certificates()
            .map(|r| hex::encode(r.raw_serial()))
            .collect();
        assert_eq!(listed, vec![a.serial]);
    }

    #[test]
    fn service_certificates_carry_their_names() {
        let ca = DeviceCa::generate("test CA", now()).expect("ca");
        let server = ca
            .issue_server(&["localhost".into()], now(), Duration::days(1))
            .expect("server");
        assert_eq!(
            cert_identity_pem(&server.issued.cert_pem)
                .expect("parse")
                .common_name,
            "localhost"
        );
        let client = ca
            .issue_client(
                gavel_protocol::acl::CONTROLLER_IDENTITY,
                now(),
                Duration::days(1),
            )
            .expect("client");
        assert_eq!(
            cert_identity_pem(&client.issued.cert_pem)
                .expect("parse")
                .common_name,
            gavel_protocol::acl::CONTROLLER_IDENTITY
        );
    }
}
