//! RabbitMQ request/reply (RpcClient, RpcServer) against the real broker on 127.0.0.1:5672 (feature
//! `amqp`).
#![cfg(feature = "amqp")]

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tidings::bridge::TransportError;
use tidings_bridges::amqp::{self as amqp, RpcClient, RpcServer};
use tidings_tests::rabbit::{WAIT, close_connections, connect, unique};

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Add {
    a: i64,
    b: i64,
}

#[tokio::test]
async fn request_reply_round_trips_errors_and_timeouts() {
    let t = connect(&unique("conn")).await;
    let queue = unique("rpc");
    let server = RpcServer::serve(&t, &queue, |add: Add| async move {
        if add.a < 0 {
            Err(format!("{} is negative", add.a))
        } else {
            Ok(add.a + add.b)
        }
    })
    .await
    .expect("serve");
    let client = RpcClient::new(&t).timeout(Duration::from_secs(5));
    let sum: i64 = client
        .call("", &queue, &Add { a: 2, b: 3 })
        .await
        .expect("reply");
    assert_eq!(sum, 5);
    // Many calls at once each get their own reply.
    let requests: Vec<Add> = (0..50).map(|i| Add { a: i, b: i }).collect();
    let calls = requests
        .iter()
        .map(|r| client.call::<_, i64>("", &queue, r));
    let sums = futures_util::future::join_all(calls).await;
    for (i, sum) in sums.into_iter().enumerate() {
        assert_eq!(sum.expect("reply"), 2 * i as i64);
    }
    let failed = client
        .call::<_, i64>("", &queue, &Add { a: -1, b: 0 })
        .await;
    assert!(
        matches!(&failed, Err(amqp::Error::Remote(m)) if m == "-1 is negative"),
        "{failed:?}"
    );
    let bad = client.call::<_, i64>("", &queue, &"not an Add").await;
    assert!(
        matches!(&bad, Err(amqp::Error::Remote(m)) if m.starts_with("bad request")),
        "{bad:?}"
    );
    let nobody = client
        .call::<_, i64>("", &unique("no-server"), &Add { a: 1, b: 1 })
        .await;
    assert!(
        matches!(
            nobody,
            Err(amqp::Error::Transport(TransportError::Unroutable(_)))
        ),
        "{nobody:?}"
    );
    assert!(server.shutdown(WAIT).await.is_clean());
    // A queue with no server: the request waits there, the call times out.
    let slow = RpcClient::new(&t).timeout(Duration::from_millis(300));
    let timed_out = slow.call::<_, i64>("", &queue, &Add { a: 1, b: 1 }).await;
    assert!(
        matches!(timed_out, Err(amqp::Error::Timeout(_))),
        "{timed_out:?}"
    );
    t.delete_queue(&queue).await.expect("delete");
}

#[tokio::test]
async fn a_call_cut_off_by_a_lost_connection_fails_and_the_next_one_works() {
    let server_side = connect(&unique("conn")).await;
    let queue = unique("rpc-cut");
    let server = RpcServer::serve(&server_side, &queue, |add: Add| async move {
        if add.a == 0 {
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        Ok::<_, String>(add.a + add.b)
    })
    .await
    .expect("serve");
    let name = unique("conn");
    let client_side = connect(&name).await;
    let client = RpcClient::new(&client_side).timeout(Duration::from_secs(10));
    let slow = client.call::<_, i64>("", &queue, &Add { a: 0, b: 1 });
    let cut = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(close_connections(&name).await, 1);
    };
    let (cut_off, ()) = tokio::join!(slow, cut);
    assert!(
        matches!(
            cut_off,
            Err(amqp::Error::Transport(TransportError::Disconnected(_)))
        ),
        "{cut_off:?}"
    );
    let sum: i64 = client
        .call("", &queue, &Add { a: 2, b: 2 })
        .await
        .expect("a new channel after the reconnect");
    assert_eq!(sum, 4);
    assert!(server.shutdown(WAIT).await.is_clean());
    server_side.delete_queue(&queue).await.expect("delete");
}
