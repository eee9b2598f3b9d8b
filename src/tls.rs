//! TLS failures in words. Both drivers (sqlx for PostgreSQL, lapin for
//! RabbitMQ) use rustls; this finds the rustls error under a driver's error
//! and says what it means for an operator, naming the setting to change.

use std::error::Error;

use rustls::{AlertDescription, CertificateError};

/// The settings a message points to, per driver.
pub struct Hints<'a> {
    /// The host name the client checked the certificate against.
    pub host: &'a str,
    /// Where the trusted CA comes from (`sslrootcert /path`, `amqp.tls.ca_file /path`).
    pub trust: &'a str,
    /// The keys that give a client certificate.
    pub client_cert: &'a str,
}

/// The rustls error somewhere under `e`: in its `source()` chain, or
/// wrapped in an `io::Error` (whose `source()` skips the wrapped error).
pub fn find_rustls<'a>(e: &'a (dyn Error + 'static)) -> Option<&'a rustls::Error> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(found) = err.downcast_ref::<rustls::Error>() {
            return Some(found);
        }
        if let Some(inner) = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            if let Some(found) = find_rustls(inner) {
                return Some(found);
            }
        }
        cur = err.source();
    }
    None
}

/// One clause saying why the handshake failed.
pub fn describe(e: &rustls::Error, hints: &Hints<'_>) -> String {
    use rustls::Error as E;
    match e {
        E::InvalidCertificate(cert) => match cert {
            CertificateError::UnknownIssuer => format!(
                "the server's certificate is not signed by a trusted CA; trusted: {}",
                hints.trust
            ),
            CertificateError::NotValidForName
            | CertificateError::NotValidForNameContext { .. } => format!(
                "the server's certificate does not name the host {}; connect by a name it holds",
                hints.host
            ),
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "the server's certificate has expired".into()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "the server's certificate is not valid yet (check the clocks)".into()
            }
            CertificateError::Revoked => "the server's certificate is revoked".into(),
            other => format!("the server's certificate is refused: {other:?}"),
        },
        E::AlertReceived(alert) => match alert {
            AlertDescription::CertificateRequired => format!(
                "the server requires a client certificate; set {}",
                hints.client_cert
            ),
            AlertDescription::UnknownCA
            | AlertDescription::BadCertificate
            | AlertDescription::CertificateUnknown
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::AccessDenied => format!(
                "the server refused the client certificate ({alert:?}); is it signed by a CA the server trusts? ({})",
                hints.client_cert
            ),
            AlertDescription::HandshakeFailure => format!(
                "the server refused the TLS handshake (handshake_failure); it may require a client certificate: set {}",
                hints.client_cert
            ),
            other => format!("the server ended the TLS handshake ({other:?})"),
        },
        other => format!("TLS: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hints() -> Hints<'static> {
        Hints {
            host: "db.example",
            trust: "sslrootcert /etc/ca.crt",
            client_cert: "sslcert and sslkey in database.url",
        }
    }

    #[test]
    fn finds_rustls_errors_inside_io_errors() {
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
        );
        let found = find_rustls(&io).expect("found");
        let text = describe(found, &hints());
        assert!(text.contains("not signed by a trusted CA"), "{text}");
        assert!(text.contains("/etc/ca.crt"), "{text}");
        let plain = std::io::Error::other("refused");
        assert!(find_rustls(&plain).is_none());
    }

    #[test]
    fn names_the_host_and_the_keys() {
        let name = rustls::Error::InvalidCertificate(CertificateError::NotValidForName);
        assert!(describe(&name, &hints()).contains("db.example"));
        let required = rustls::Error::AlertReceived(AlertDescription::CertificateRequired);
        assert!(describe(&required, &hints()).contains("sslcert and sslkey"));
    }
}
