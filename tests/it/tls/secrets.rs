//! Passwords from files, for the database and the broker.

use thumbnails::bus;

use super::*;

#[tokio::test]
async fn passwords_from_files_log_in_where_the_urls_have_none() {
    let names = Names::new();
    let pg_password = std::fs::read_to_string(servers().join("secrets/pg_password"))
        .expect("the cluster's password");
    let url = pg_url("thumbnails_pw", PG, &names.db, false);
    assert!(!url.contains("thumbnails_pw:"), "no password in {url}");

    // Without the file: refused.
    let mut c = thumbnails(&["migrate"]);
    c.env("THUMBNAILS_DATABASE__URL", &url);
    check_failure("no password", c, &[PG, "password authentication failed"]).await;

    // With it (and a wrong one in the URL, which the file overrides): in,
    // and the log says where the password came from, never what it is.
    let mut c = thumbnails(&["migrate"]);
    c.env(
        "THUMBNAILS_DATABASE__URL",
        url.replace("thumbnails_pw@", "thumbnails_pw:wrong-in-url@"),
    )
    .env(
        "THUMBNAILS_DATABASE__PASSWORD_FILE",
        file("secrets/pg_password"),
    )
    .env("RUST_LOG", "info");
    let out = c.output().await.expect("migrate");
    let logs = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{logs}");
    assert!(logs.contains("database.password_file"), "{logs}");
    assert!(
        !logs.contains(pg_password.trim()),
        "the password is never logged"
    );
    assert!(!logs.contains("wrong-in-url"), "nor the URL's");

    // The broker: user and password file, the client certificate (the
    // node requires one) without EXTERNAL; the first node of the list is
    // down, so the second (TLS too) is used.
    let amqp = AmqpConfig {
        url: format!("amqps://localhost:1/%2f,amqps://thumbnails_pw@{AMQPS}/%2f"),
        tls: AmqpTlsConfig {
            external: false,
            ..amqp_config(&names).tls
        },
        ..amqp_config(&names)
    };
    let mut c = thumbnails(&["dead-letters", "migrate", "--dry-run"]);
    with_amqp(&mut c, &amqp);
    let (ok, err) = outcome(c).await;
    assert!(!ok, "guest's password is not thumbnails_pw's: {err}");
    assert!(err.contains("ACCESS_REFUSED"), "{err}");
    let mut c = thumbnails(&["dead-letters", "migrate", "--dry-run"]);
    with_amqp(&mut c, &amqp);
    c.env(
        "THUMBNAILS_AMQP__PASSWORD_FILE",
        file("secrets/amqp_password"),
    );
    let (ok, err) = outcome(c).await;
    assert!(ok, "{err}");

    // And the service's own connections take the same settings.
    let mut amqp = amqp;
    amqp.password_file = Some(file("secrets/amqp_password").into());
    amqp.password = Some(thumbnails::config::Secret::new(
        std::fs::read_to_string(servers().join("secrets/amqp_password"))
            .expect("password")
            .trim(),
    ));
    let conn = bus::connect_config(&amqp, "it-tls password")
        .await
        .expect("logs in with the file's password");
    let _ = conn.close(200, "done".into()).await;
    names.clean_up().await;
}
