//! No SASL password appears in any log line (at every level, librdkafka's debug output
//! included), error or `Debug` output, with a login that works and one that is refused
//! (feature `kafka`). This binary holds one test: it installs the global log subscriber.
#![cfg(feature = "kafka")]

use std::time::Duration;

use tidings::bridge::{Endpoint, Envelope, Outgoing, Transport};
use tidings_bridges::kafka::{KafkaTransport, Sasl};
use tidings_tests::kafka::Tansu;
use tidings_tests::{assert_hidden, capture_all_logs};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_passwords_never_reach_logs_or_errors() {
    let logs = capture_all_logs();

    // Characters that URL-encoding, escaping and configuration syntax treat specially.
    let password = format!("pw/{:016x}?#@:%zz=,", fastrand_u64());
    let tansu = Tansu::start();
    tansu.require_user("alice", &password).await;
    let transport = |password: &str| {
        KafkaTransport::builder(&tansu.brokers())
            .sasl(Sasl::scram_sha_256("alice", password))
            .publish_timeout(Duration::from_secs(5))
            // Everything librdkafka can say, the security and protocol chatter included.
            .set("debug", "all")
            .build()
            .expect("config")
    };

    // The right password: topics are created and a message goes through.
    let good = transport(&password);
    good.declare(&Endpoint::new("secret"))
        .await
        .expect("declare");
    let out = Outgoing {
        destination: "secret".into(),
        envelope: Envelope::new("e", b"{}".to_vec()),
    };
    assert!(matches!(
        good.publish(std::slice::from_ref(&out)).await.as_slice(),
        [Ok(())]
    ));
    let debug = format!("{good:?}");

    // A wrong password (which contains the right one): refused, and neither appears.
    let wrong = format!("{password}-wrong");
    let bad = transport(&wrong);
    let refused = bad.publish(std::slice::from_ref(&out)).await;
    assert!(matches!(refused.as_slice(), [Err(_)]), "{refused:?}");
    let error = format!("{:?} {}", refused[0], refused[0].as_ref().unwrap_err());
    let bad_debug = format!("{bad:?}");
    drop((good, bad));
    tokio::time::sleep(Duration::from_millis(500)).await;

    let text = logs.text();
    assert!(text.contains("SASL"), "librdkafka's logs were captured");
    assert_hidden(
        &password,
        &[
            ("logs", &text),
            ("error", &error),
            ("Debug", &debug),
            ("Debug", &bad_debug),
        ],
    );
}

/// Random enough for a password no log line contains by chance.
fn fastrand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::process::id().into());
    h.finish()
}
