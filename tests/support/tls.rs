//! TLS for a test broker. tansu speaks plaintext only, so the TLS tests start it behind a
//! [`super::Proxy`] that speaks TLS to the clients (shopscore's and the tests' own) and hands
//! the decrypted bytes to tansu. The certificates are made here: a CA, a server certificate it signs for `127.0.0.1` (so
//! librdkafka's default hostname check, `ssl.endpoint.identification.algorithm = https`,
//! applies and passes), and a client certificate for brokers that require one (mutual TLS).

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::ssl::{SslAcceptor, SslMethod, SslVerifyMode};
use openssl::x509::extension::{BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName};
use openssl::x509::{X509Name, X509};
use std::path::Path;

/// A certificate authority with a server and a client certificate it signed.
pub struct Pki {
    ca: X509,
    server_cert: X509,
    server_key: PKey<Private>,
    client_cert: X509,
    client_key: PKey<Private>,
}

/// Where [`Pki::write`] put the files a client names in its settings.
pub struct PkiFiles {
    /// The CA certificate (`ssl.ca.location`).
    pub ca: String,
    /// The client certificate and its key (`ssl.certificate.location`, `ssl.key.location`).
    pub client_cert: String,
    pub client_key: String,
}

impl Pki {
    /// A new CA (named `cn`), a server certificate for `127.0.0.1` and `localhost`, and a
    /// client certificate.
    pub fn new(cn: &str) -> Pki {
        let ca_key = ec_key();
        let ca = certificate(cn, &ca_key, None, Role::Ca);
        let server_key = ec_key();
        let server_cert = certificate("127.0.0.1", &server_key, Some((&ca, &ca_key)), Role::Server);
        let client_key = ec_key();
        let client_cert = certificate("shopscore", &client_key, Some((&ca, &ca_key)), Role::Client);
        Pki { ca, server_cert, server_key, client_cert, client_key }
    }

    /// Writes the CA certificate and the client's certificate and key (PEM) into `dir`.
    pub fn write(&self, dir: &Path) -> PkiFiles {
        let write = |name: &str, pem: Vec<u8>| {
            let path = dir.join(name);
            std::fs::write(&path, pem).unwrap();
            path.to_str().unwrap().to_owned()
        };
        PkiFiles {
            ca: write("ca.pem", self.ca.to_pem().unwrap()),
            client_cert: write("client.pem", self.client_cert.to_pem().unwrap()),
            client_key: write("client.key", self.client_key.private_key_to_pem_pkcs8().unwrap()),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Ca,
    Server,
    Client,
}

fn ec_key() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
}

/// A certificate for `cn` with `key`, self-signed when `issuer` is None; a server's is for
/// `127.0.0.1` and `localhost`.
fn certificate(cn: &str, key: &PKey<Private>, issuer: Option<(&X509, &PKey<Private>)>, role: Role) -> X509 {
    let mut name = X509Name::builder().unwrap();
    name.append_entry_by_nid(Nid::COMMONNAME, cn).unwrap();
    let name = name.build();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    let mut serial = BigNum::new().unwrap();
    serial.rand(64, MsbOption::MAYBE_ZERO, false).unwrap();
    b.set_serial_number(&serial.to_asn1_integer().unwrap()).unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(issuer.map_or(&*name, |(c, _)| c.subject_name())).unwrap();
    b.set_pubkey(key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap()).unwrap();
    b.set_not_after(&Asn1Time::days_from_now(2).unwrap()).unwrap();
    if role == Role::Ca {
        b.append_extension(BasicConstraints::new().critical().ca().build().unwrap()).unwrap();
        b.append_extension(KeyUsage::new().critical().key_cert_sign().crl_sign().build().unwrap()).unwrap();
    } else {
        b.append_extension(BasicConstraints::new().build().unwrap()).unwrap();
        b.append_extension(KeyUsage::new().critical().digital_signature().build().unwrap()).unwrap();
    }
    if role == Role::Client {
        b.append_extension(ExtendedKeyUsage::new().client_auth().build().unwrap()).unwrap();
    }
    if role == Role::Server {
        b.append_extension(ExtendedKeyUsage::new().server_auth().build().unwrap()).unwrap();
        let san = {
            let ctx = b.x509v3_context(issuer.map(|(c, _)| &**c), None);
            SubjectAlternativeName::new().ip("127.0.0.1").dns("localhost").build(&ctx).unwrap()
        };
        b.append_extension(san).unwrap();
    }
    b.sign(issuer.map_or(key, |(_, k)| k), MessageDigest::sha256()).unwrap();
    b.build()
}

/// The TLS side of a [`super::Proxy`] in front of a broker: the server certificate of `pki`,
/// and with `client_certificates`, only a client that presents a certificate the CA signed
/// gets through the handshake (mutual TLS).
pub fn acceptor(pki: &Pki, client_certificates: bool) -> SslAcceptor {
    let mut acceptor = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server()).unwrap();
    acceptor.set_private_key(&pki.server_key).unwrap();
    acceptor.set_certificate(&pki.server_cert).unwrap();
    acceptor.check_private_key().unwrap();
    if client_certificates {
        acceptor.cert_store_mut().add_cert(pki.ca.clone()).unwrap();
        acceptor.set_verify(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT);
    }
    acceptor.build()
}
