//! How a node of `amqp.url` is reached: for `amqps://` nodes the TLS files
//! of `amqp.tls` (read at each connection, so renewed certificates are
//! picked up on the next reconnect), the password of `amqp.password_file`
//! (it wins over one in the URL) and, with `amqp.tls.external`, the SASL
//! EXTERNAL mechanism (the broker takes the user from the certificate).

use std::path::Path;

use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use lapin::uri::{AMQPScheme, AMQPUri, SASLMechanism};

use crate::config::{AmqpConfig, AmqpTlsConfig, Secret};

#[derive(Clone, Default)]
pub(super) struct Access {
    tls: AmqpTlsConfig,
    password: Option<Secret>,
}

impl Access {
    pub(super) fn from_config(amqp: &AmqpConfig) -> Self {
        Self {
            tls: amqp.tls.clone(),
            password: amqp.password.clone(),
        }
    }

    /// `url` parsed, with the password file's password and the mechanism.
    pub(super) fn uri(&self, url: &str) -> Result<AMQPUri, String> {
        let mut uri: AMQPUri = url.parse().map_err(|e| format!("not an AMQP URL: {e}"))?;
        if let Some(password) = &self.password {
            uri.authority.userinfo.password = password.expose().to_string();
        }
        if self.tls.external && uri.scheme == AMQPScheme::AMQPS {
            uri.query.auth_mechanism = Some(SASLMechanism::External);
        }
        Ok(uri)
    }

    /// The CA and client certificate for an `amqps://` node, read now.
    pub(super) fn tls_config(&self, uri: &AMQPUri) -> Result<OwnedTLSConfig, String> {
        if uri.scheme != AMQPScheme::AMQPS {
            return Ok(OwnedTLSConfig::default());
        }
        let read = |key: &str, path: &Path| {
            std::fs::read(path).map_err(|e| format!("{key}: cannot read {}: {e}", path.display()))
        };
        let cert_chain =
            match nonempty(&self.tls.ca_file) {
                Some(path) => {
                    let pem = read("amqp.tls.ca_file", path)?;
                    Some(String::from_utf8(pem).map_err(|_| {
                        format!("amqp.tls.ca_file: {} is not PEM text", path.display())
                    })?)
                }
                None => None,
            };
        let identity = match (nonempty(&self.tls.cert_file), nonempty(&self.tls.key_file)) {
            (Some(cert), Some(key)) => Some(OwnedIdentity::PKCS8 {
                pem: read("amqp.tls.cert_file", cert)?,
                key: read("amqp.tls.key_file", key)?,
            }),
            _ => None,
        };
        Ok(OwnedTLSConfig {
            identity,
            cert_chain,
        })
    }

    /// Why connecting to `uri` failed, in words.
    pub(super) fn describe(&self, uri: &AMQPUri, e: &lapin::Error) -> String {
        if let Some(tls) = crate::tls::find_rustls(e) {
            let trust = match nonempty(&self.tls.ca_file) {
                Some(path) => format!("the system's roots and amqp.tls.ca_file {}", path.display()),
                None => "the system's roots; set amqp.tls.ca_file".into(),
            };
            return crate::tls::describe(
                tls,
                &crate::tls::Hints {
                    host: &uri.authority.host,
                    trust: &trust,
                    client_cert: "amqp.tls.cert_file and amqp.tls.key_file",
                },
            );
        }
        let text = e.to_string();
        if !ended_before_handshake(e) {
            return text;
        }
        match uri.scheme {
            // A TLS listener answers the plain AMQP header with a TLS alert
            // or by closing.
            AMQPScheme::AMQP => format!("{text}; the port may accept only TLS: use amqps://"),
            // Under TLS 1.3 a broker checks the client certificate after
            // the client finished its handshake: its alert
            // (certificate_required) can be lost to the reset that follows,
            // leaving only the reset.
            AMQPScheme::AMQPS if nonempty(&self.tls.cert_file).is_none() => format!(
                "{text}; the broker may require a client certificate: set amqp.tls.cert_file and amqp.tls.key_file"
            ),
            AMQPScheme::AMQPS => text,
        }
    }
}

fn ended_before_handshake(e: &lapin::Error) -> bool {
    use lapin::ErrorKind as K;
    match e.kind() {
        K::ParsingError(_) | K::InvalidProtocolVersion(_) => true,
        K::IOError(io) => matches!(
            io.kind(),
            std::io::ErrorKind::UnexpectedEof
                | std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::ConnectionAborted
                | std::io::ErrorKind::BrokenPipe
        ),
        _ => false,
    }
}

fn nonempty(path: &Option<std::path::PathBuf>) -> Option<&Path> {
    path.as_deref().filter(|p| !p.as_os_str().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_file_and_external_apply_to_amqps_nodes() {
        let amqp = AmqpConfig {
            password: Some(Secret::new("from-file")),
            tls: AmqpTlsConfig {
                external: true,
                ..AmqpTlsConfig::default()
            },
            ..AmqpConfig::default()
        };
        let access = Access::from_config(&amqp);
        let tls = access.uri("amqps://u:in-url@h:5671/%2f").expect("parses");
        assert_eq!(tls.authority.userinfo.password, "from-file");
        assert_eq!(tls.query.auth_mechanism, Some(SASLMechanism::External));
        let plain = access.uri("amqp://u@h:5672/%2f").expect("parses");
        assert_eq!(plain.authority.userinfo.password, "from-file");
        assert_eq!(plain.query.auth_mechanism, None);
        assert!(access
            .tls_config(&plain)
            .expect("no files")
            .identity
            .is_none());
    }

    #[test]
    fn an_unreadable_file_names_its_key() {
        let amqp = AmqpConfig {
            tls: AmqpTlsConfig {
                ca_file: Some("/nonexistent/ca.crt".into()),
                ..AmqpTlsConfig::default()
            },
            ..AmqpConfig::default()
        };
        let access = Access::from_config(&amqp);
        let uri = access.uri("amqps://h/%2f").expect("parses");
        let e = access.tls_config(&uri).expect_err("unreadable");
        assert!(e.contains("amqp.tls.ca_file"), "{e}");
        assert!(e.contains("/nonexistent/ca.crt"), "{e}");
    }
}
