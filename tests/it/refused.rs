//! A broker that refuses for good (issue: faults, case 1): a queue that
//! exists with other arguments stops the worker at start with one line
//! naming the queue, the argument, both values and the way out; the same
//! while running makes that consumer wait (one WARN line per attempt),
//! `/readyz` answer 503 with the cause, and the other consumer go on.

use std::time::Duration;

use lapin::options::{QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::{AMQPValue, FieldTable};
use reqwest::{Method, StatusCode};

use crate::cutouts::{cutouts_json, publish_alert};
use crate::helpers::*;
use crate::sidecar::app::{message, TestApp};

const WAIT: Duration = Duration::from_secs(90);
const ELSEWHERE: &str = "some-other-deployment.dead";

/// Replaces `queue` with a quorum queue whose dead letters go elsewhere, as
/// another deployment would have declared it. A consumer of the old queue
/// may redeclare it between the delete and the declare: then again.
async fn redeclare_elsewhere(bus: &TestBus, queue: &str) {
    let args = FieldTable::from(std::collections::BTreeMap::from([
        (
            "x-queue-type".into(),
            AMQPValue::LongString("quorum".into()),
        ),
        (
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(ELSEWHERE.into()),
        ),
    ]));
    for _ in 0..50 {
        let channel = bus._conn.create_channel().await.expect("channel");
        let deleted = channel
            .queue_delete(queue.into(), QueueDeleteOptions::default())
            .await;
        let _ = deleted;
        let declared = channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                args.clone(),
            )
            .await;
        if declared.is_ok() {
            return;
        }
    }
    panic!("could not redeclare {queue}");
}

/// Publishes an alert for `obj_id` and waits for its three stamps.
async fn alert_is_stored(app: &TestApp, obj_id: &str) {
    publish_alert(
        &app.bus,
        cutouts_json(obj_id).to_string().as_bytes(),
        Some("application/json"),
    )
    .await;
    let sql = format!("SELECT count(*) FROM thumbnails WHERE obj_id = '{obj_id}'");
    eventually(&format!("{obj_id}'s stamps"), WAIT, || async {
        (app.db.scalar_i64(&sql).await == 3).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_queue_with_other_arguments_stops_the_worker_at_start_in_one_line() {
    let (db, bus) = (TestDb::new().await, TestBus::new().await);
    redeclare_elsewhere(&bus, &bus.cutouts.queue).await;
    let run = |rust_log: Option<&str>| {
        let mut cmd = crate::cli::service("worker", &db.url, &bus, free_port());
        match rust_log {
            Some(level) => cmd.env("RUST_LOG", level),
            None => cmd.env_remove("RUST_LOG"),
        };
        async move {
            tokio::time::timeout(WAIT, cmd.output())
                .await
                .expect("stops in time")
                .expect("run")
        }
    };
    // With the default logs: no dump of the broker's Close method.
    let out = run(None).await;
    assert!(!out.status.success());
    let logs = String::from_utf8_lossy(&out.stderr);
    assert!(!logs.contains("reply_code"), "no lapin dump: {logs}");
    let out = run(Some("off")).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    for part in [
        bus.cutouts.queue.as_str(),
        "x-dead-letter-exchange",
        ELSEWHERE,
        &bus.cutouts.dead_exchange(),
        "amqp.cutouts_queue",
        "delete_queue",
    ] {
        assert!(err.contains(part), "names {part}: {err}");
    }
    bus.delete().await;
}

/// Deletes the test's alert cutouts queue, whoever declared it.
async fn delete_cutouts_queue(app: &TestApp) {
    let channel = app.bus._conn.create_channel().await.expect("channel");
    channel
        .queue_delete(
            app.bus.cutouts.queue.as_str().into(),
            QueueDeleteOptions::default(),
        )
        .await
        .expect("delete");
}

#[tokio::test]
async fn a_queue_redeclared_while_running_is_waited_for_and_reported() {
    let app = TestApp::spawn().await;
    let worker = RunningWorker::start(&app.config).await;
    app.add_obj("OBJ1").await;
    app.bus.publish(&event("OBJ1", 10.0, 20.0)).await;
    eventually("OBJ1's rows", WAIT, || async {
        (app.count("thumbnails").await > 0).then_some(())
    })
    .await;

    // The queue deleted under the worker (RabbitMQ 3.10, quorum queue): the
    // consumer is still counted on it and alerts go on being consumed.
    delete_cutouts_queue(&app).await;
    eventually("the queue declared again", WAIT, || async {
        let check = app.bus._conn.create_channel().await.expect("channel");
        thumbnails::bus::passive_declare(&check, &app.bus.cutouts.queue)
            .await
            .ok()
            .filter(|q| q.consumer_count() > 0)
            .map(drop)
    })
    .await;
    alert_is_stored(&app, "ZTF-redeclared").await;

    // Another service redeclares the queue with its own arguments; the
    // worker meets them at its next connection (here the broker closes the
    // current one: a consumer stays on a quorum queue replaced under it).
    redeclare_elsewhere(&app.bus, &app.bus.cutouts.queue).await;
    let name = format!("thumbnails-worker {}", app.bus.cutouts.queue);
    for pid in crate::faults::connection_pids(&name).await {
        let closed = tokio::process::Command::new("rabbitmqctl")
            .args(["-q", "close_connection", &pid, "test: the queue changed"])
            .status()
            .await
            .expect("rabbitmqctl close_connection");
        assert!(closed.success());
    }
    let cause = eventually("/readyz says what is refused", WAIT, || async {
        let (status, body) = app.json(Method::GET, "/readyz", None, None).await;
        (status == StatusCode::SERVICE_UNAVAILABLE).then(|| message(&body))
    })
    .await;
    assert!(cause.contains(&app.bus.cutouts.queue), "{cause}");
    assert!(cause.contains("x-dead-letter-exchange"), "{cause}");

    // The objects consumer goes on meanwhile.
    let before = app.count("thumbnails").await;
    app.add_obj("OBJ2").await;
    app.bus.publish(&event("OBJ2", 11.0, 21.0)).await;
    eventually("OBJ2's rows while alerts wait", WAIT, || async {
        (app.count("thumbnails").await > before).then_some(())
    })
    .await;

    // The operator deletes the stray queue: alerts are consumed again.
    delete_cutouts_queue(&app).await;
    eventually("ready again", WAIT, || async {
        let (status, _) = app.json(Method::GET, "/readyz", None, None).await;
        (status == StatusCode::OK).then_some(())
    })
    .await;
    alert_is_stored(&app, "ZTF-after").await;
    worker.stop().await;
    app.stop().await;
}
