//! TLS on the secure client port, from ZooKeeper's `ssl.*` settings (PEM key and trust stores).
//!
//! Certificates are read the way Java reads them: X.509 v1 certificates (which test CAs and
//! kazoo's harness make) are accepted, so the chain check is done here with x509-parser and
//! ring rather than webpki, which takes v3 only. A client certificate must be signed by a
//! certificate of the trust store and be within its validity period; its subject becomes the
//! connection's `x509` identity, as ZooKeeper's X509AuthenticationProvider makes it.

use std::path::Path;
use std::sync::Arc;

use tokio_rustls::rustls::client::danger::HandshakeSignatureValid;
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use tokio_rustls::rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use tokio_rustls::rustls::sign::{CertifiedKey, SingleCertAndKey};
use tokio_rustls::rustls::{self, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use tokio_rustls::TlsAcceptor;
use x509_parser::prelude::*;

use crate::config::{ClientAuth, TlsSettings};

fn check_pem(kind: &str, path: &Path, declared: &Option<String>) -> Result<(), String> {
    let declared = declared.as_deref().map(str::to_ascii_uppercase);
    let by_name = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_uppercase);
    match declared.or(by_name).as_deref() {
        None | Some("PEM") | Some("CRT") | Some("KEY") => Ok(()),
        Some(other) => Err(format!(
            "{kind} {} is of type {other}; ferrozk reads PEM stores only (convert with openssl or keytool)",
            path.display()
        )),
    }
}

fn read_certs(kind: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(path).and_then(|it| it.collect()).map_err(|e| format!("{kind} {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{kind} {}: no certificate found", path.display()));
    }
    for c in &certs {
        X509Certificate::from_der(c).map_err(|e| format!("{kind} {}: unreadable certificate: {e}", path.display()))?;
    }
    Ok(certs)
}

/// Builds the acceptor for the secure port.
pub fn acceptor(s: &TlsSettings) -> Result<TlsAcceptor, String> {
    let key_path = s.key_store.as_ref().ok_or("secureClientPort needs ssl.keyStore.location")?;
    check_pem("ssl.keyStore", key_path, &s.key_store_type)?;
    let certs = read_certs("ssl.keyStore", key_path)?;
    let key = PrivateKeyDer::from_pem_file(key_path)
        .map_err(|e| format!("ssl.keyStore {}: no usable private key: {e}", key_path.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let signing_key =
        provider.key_provider.load_private_key(key).map_err(|e| format!("ssl.keyStore {}: {e}", key_path.display()))?;
    let certified = SingleCertAndKey::from(CertifiedKey::new(certs, signing_key));
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match (s.client_auth, &s.trust_store) {
        (ClientAuth::None, _) => builder.with_no_client_auth(),
        (_, None) => return Err("ssl.clientAuth needs ssl.trustStore.location".into()),
        (auth, Some(trust)) => {
            check_pem("ssl.trustStore", trust, &s.trust_store_type)?;
            let roots = read_certs("ssl.trustStore", trust)?;
            let subjects = roots
                .iter()
                .map(|c| {
                    let (_, x) = X509Certificate::from_der(c).expect("checked");
                    DistinguishedName::from(x.subject().as_raw().to_vec())
                })
                .collect();
            builder.with_client_cert_verifier(Arc::new(TrustStoreVerifier {
                roots,
                subjects,
                mandatory: auth == ClientAuth::Need,
                provider,
            }))
        }
    };
    let config = builder.with_cert_resolver(Arc::new(certified));
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The subject of a client certificate in RFC 2253 form (most specific part first), as
/// Java's `X500Principal.getName()` gives it: the id of the `x509` scheme.
pub fn subject_of(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, x) = X509Certificate::from_der(cert).ok()?;
    let mut parts = Vec::new();
    for rdn in x.subject().iter() {
        let attrs: Vec<String> = rdn
            .iter()
            .map(|a| {
                let key = match a.attr_type().to_id_string().as_str() {
                    "2.5.4.3" => "CN".to_string(),
                    "2.5.4.6" => "C".to_string(),
                    "2.5.4.7" => "L".to_string(),
                    "2.5.4.8" => "ST".to_string(),
                    "2.5.4.10" => "O".to_string(),
                    "2.5.4.11" => "OU".to_string(),
                    "2.5.4.9" => "STREET".to_string(),
                    "0.9.2342.19200300.100.1.25" => "DC".to_string(),
                    "0.9.2342.19200300.100.1.1" => "UID".to_string(),
                    other => other.to_string(),
                };
                format!("{key}={}", a.as_str().unwrap_or("").replace(',', "\\,"))
            })
            .collect();
        parts.push(attrs.join("+"));
    }
    parts.reverse();
    Some(parts.join(","))
}

#[derive(Debug)]
struct TrustStoreVerifier {
    roots: Vec<CertificateDer<'static>>,
    subjects: Vec<DistinguishedName>,
    mandatory: bool,
    provider: Arc<CryptoProvider>,
}

fn bad_cert(e: impl std::fmt::Display) -> rustls::Error {
    rustls::Error::General(format!("client certificate rejected: {e}"))
}

impl ClientCertVerifier for TrustStoreVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.subjects
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let (_, leaf) = X509Certificate::from_der(end_entity).map_err(bad_cert)?;
        let now = now.as_secs() as i64;
        let valid = leaf.validity();
        if now < valid.not_before.timestamp() || now > valid.not_after.timestamp() {
            return Err(bad_cert("outside its validity period"));
        }
        // Walk up through the intermediates the client sent until a trusted certificate
        // signed the last link.
        let mut current = leaf;
        let mut chain: Vec<X509Certificate<'_>> = Vec::new();
        for c in intermediates {
            chain.push(X509Certificate::from_der(c).map_err(bad_cert)?.1);
        }
        for _ in 0..=chain.len() {
            for root in &self.roots {
                let (_, r) = X509Certificate::from_der(root).map_err(bad_cert)?;
                if r.subject().as_raw() == current.issuer().as_raw() && current.verify_signature(Some(r.public_key())).is_ok() {
                    return Ok(ClientCertVerified::assertion());
                }
            }
            let Some(pos) = chain.iter().position(|c| {
                c.subject().as_raw() == current.issuer().as_raw() && current.verify_signature(Some(c.public_key())).is_ok()
            }) else {
                break;
            };
            current = chain.remove(pos);
        }
        Err(bad_cert("not signed by a certificate of ssl.trustStore"))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_handshake_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_handshake_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// Checks the client's handshake signature with the key of its (possibly v1) certificate.
fn verify_handshake_signature(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    use ring::signature as sig;
    let (_, x) = X509Certificate::from_der(cert).map_err(bad_cert)?;
    let key = x.public_key().subject_public_key.data.as_ref();
    let alg: &dyn sig::VerificationAlgorithm = match dss.scheme {
        SignatureScheme::RSA_PKCS1_SHA256 => &sig::RSA_PKCS1_2048_8192_SHA256,
        SignatureScheme::RSA_PKCS1_SHA384 => &sig::RSA_PKCS1_2048_8192_SHA384,
        SignatureScheme::RSA_PKCS1_SHA512 => &sig::RSA_PKCS1_2048_8192_SHA512,
        SignatureScheme::RSA_PSS_SHA256 => &sig::RSA_PSS_2048_8192_SHA256,
        SignatureScheme::RSA_PSS_SHA384 => &sig::RSA_PSS_2048_8192_SHA384,
        SignatureScheme::RSA_PSS_SHA512 => &sig::RSA_PSS_2048_8192_SHA512,
        SignatureScheme::ECDSA_NISTP256_SHA256 => &sig::ECDSA_P256_SHA256_ASN1,
        SignatureScheme::ECDSA_NISTP384_SHA384 => &sig::ECDSA_P384_SHA384_ASN1,
        SignatureScheme::ED25519 => &sig::ED25519,
        other => return Err(bad_cert(format!("unsupported signature scheme {other:?}"))),
    };
    sig::UnparsedPublicKey::new(alg, key).verify(message, dss.signature()).map_err(|_| bad_cert("bad handshake signature"))?;
    Ok(HandshakeSignatureValid::assertion())
}
