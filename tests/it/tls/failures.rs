//! Each TLS failure: one line naming the host and the cause, non-zero exit.

use super::*;

/// Each failure: (what, database URL, broker settings or None for the
/// defaults' database-only `migrate`, what stderr must say).
#[tokio::test]
async fn each_tls_failure_is_one_line_naming_the_host_and_the_cause() {
    let names = Names::new();
    let good = amqp_config(&names);
    let pg_cases = [
        (
            "database: certificate not signed by the configured CA",
            pg_url("thumbnails", PG, &names.db, true).replace("/ca.crt", "/other-ca.crt"),
            vec![PG, "not signed by a trusted CA", "other-ca.crt"],
        ),
        (
            "database: host name mismatch under verify-full",
            pg_url("thumbnails", "127.0.0.1:55432", &names.db, true),
            vec!["127.0.0.1:55432", "does not name the host 127.0.0.1"],
        ),
        (
            "database: the server requires TLS, the URL disables it",
            format!("postgres://thumbnails@{PG}/{}?sslmode=disable", names.db),
            vec![PG, "accepts only TLS", "sslmode=verify-full"],
        ),
        (
            "database: the server requires a client certificate",
            pg_url("thumbnails", PG, &names.db, false),
            vec![PG, "requires a client certificate", "sslcert"],
        ),
    ];
    for (what, url, says) in pg_cases {
        let mut c = thumbnails(&["migrate"]);
        c.env("THUMBNAILS_DATABASE__URL", url);
        check_failure(what, c, &says).await;
    }

    let amqp_cases = [
        (
            "broker: certificate not signed by the configured CA",
            AmqpConfig {
                tls: AmqpTlsConfig {
                    ca_file: Some(file("other-ca.crt").into()),
                    ..good.tls.clone()
                },
                ..good.clone()
            },
            vec![AMQPS, "not signed by a trusted CA", "amqp.tls.ca_file"],
        ),
        (
            "broker: host name mismatch",
            AmqpConfig {
                url: "amqps://127.0.0.1:5771/%2f".into(),
                ..good.clone()
            },
            vec!["127.0.0.1:5771", "does not name the host 127.0.0.1"],
        ),
        (
            "broker: a TLS port, a plain amqp:// URL",
            AmqpConfig {
                url: format!("amqp://{AMQPS}/%2f"),
                tls: AmqpTlsConfig::default(),
                ..good.clone()
            },
            vec![AMQPS, "use amqps://"],
        ),
        (
            "broker: a client certificate required, none configured",
            AmqpConfig {
                tls: AmqpTlsConfig {
                    ca_file: good.tls.ca_file.clone(),
                    ..AmqpTlsConfig::default()
                },
                ..good.clone()
            },
            // "requires", or "may require" when the broker's alert was lost
            // to its reset (TLS 1.3 checks the client after the handshake).
            vec![AMQPS, "client certificate", "amqp.tls.cert_file"],
        ),
    ];
    for (what, amqp, says) in amqp_cases {
        // Only the broker: dead-letters migrate opens no database.
        let mut c = thumbnails(&["dead-letters", "migrate", "--dry-run"]);
        with_amqp(&mut c, &amqp);
        check_failure(what, c, &says).await;
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = thumbnails(&["migrate"]);
    // A directory: unreadable as a file, even for root.
    c.env("THUMBNAILS_DATABASE__PASSWORD_FILE", dir.path());
    let shown = dir.path().display().to_string();
    check_failure(
        "an unreadable secret file",
        c,
        &["database.password_file", &shown],
    )
    .await;
    names.clean_up().await;
}
