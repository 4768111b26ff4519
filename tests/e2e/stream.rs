//! Events on AWS (DESIGN §4.7): the `events` function's delivery fed the records that the
//! emulator's DynamoDB Streams API returns for real flows, never hand-written ones. A connection's
//! life arrives as one verified webhook per change, in order; a receiver failing three times gets
//! the same `webhook-id` until it takes it; one answering 410 is disabled; one never answering
//! holds its record (Lambda retries the batch from it) until the attempts are used up, then the
//! event is in the dead-letter queue and the later changes go on.

use std::time::Duration;

use broker::events::EventType;
use broker::events::stream::{STREAM_WAITS, StreamDelivery, deliver_records};
use broker_tests::stream::{self, Dlq, StreamRun, deadline_in};
use broker_tests::webhook_receiver::{
    Receiver, add_endpoint, assert_one_verified_event_per_change, live_a_connections_life,
    verify_with_python,
};
use broker_tests::{Backend, Broker};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_flows_stream_records_become_one_verified_webhook_per_change() {
    // Given an endpoint for every event type, and a connection authorized, completed, refused a
    // refresh (invalid_grant) and deleted on DynamoDB
    let broker = Broker::start(Backend::Aws).await;
    let receiver = Receiver::start().await;
    let secret = add_endpoint(&broker, &receiver, vec![]).await;
    let id = live_a_connections_life(&broker).await;

    // When the events function is handed the table's stream records
    let run = StreamRun::deliver(&broker).await;
    assert!(
        run.records.len() > 4,
        "every write is a record: {}",
        run.records.len()
    );

    // Then the batch succeeded and the receiver got one verified event per status change, in
    // order, with the embedded outbox's webhook ids (one per version of the connection)
    assert!(
        run.answer.batch_item_failures.is_empty(),
        "{:?}",
        run.answer
    );
    assert_one_verified_event_per_change(&broker, &receiver, &secret, &id).await;
    let dlq = run.dlq;
    assert!(dlq.letters().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_failing_three_times_gets_one_webhook_id_until_it_answers() {
    // Given an endpoint that answers 500 three times, then 200
    let broker = Broker::start(Backend::Aws).await;
    let receiver = Receiver::start().await;
    let secret = add_endpoint(&broker, &receiver, vec![EventType::Authorized]).await;
    receiver.answer(&[500, 500, 500]);
    broker.authorized_personal_connection().await;

    // When the stream's records are delivered with the function's own waits
    let run = StreamRun::deliver(&broker).await;

    // Then it was delivered once, on the fourth attempt, every attempt with the same id
    assert!(
        run.answer.batch_item_failures.is_empty(),
        "{:?}",
        run.answer
    );
    let received = receiver.received();
    assert_eq!(received.len(), 4);
    assert!(received.iter().all(|r| r.id == received[0].id));
    let verdicts = verify_with_python(&secret, &received).await;
    assert!(verdicts.iter().all(|v| v.verified), "{verdicts:?}");
    // and handing the same records again (Lambda retrying after a crash) does not post again
    assert!(run.again().await.batch_item_failures.is_empty());
    assert_eq!(receiver.received().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_answering_410_is_disabled_on_aws() {
    // Given an endpoint that answers 410 Gone, and a connection authorized then completed
    let broker = Broker::start(Backend::Aws).await;
    let receiver = Receiver::start().await;
    add_endpoint(&broker, &receiver, vec![]).await;
    receiver.answer(&[410]);
    let (_, state_token) = broker.authorized_personal_connection().await;
    assert_eq!(broker.complete_personal(&state_token).await.0, 200);

    // When the records are delivered
    let run = StreamRun::deliver(&broker).await;

    // Then it was asked once, the second event was not sent, and the endpoint is disabled
    assert!(
        run.answer.batch_item_failures.is_empty(),
        "{:?}",
        run.answer
    );
    assert_eq!(receiver.received().len(), 1);
    let listed = broker.admin.webhooks_list(&broker.org).await.unwrap();
    assert!(listed.contains("disabled"), "{listed}");
    assert!(run.dlq.letters().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_never_answering_holds_its_record_then_it_is_dead_lettered() {
    // Given an endpoint that never answers its first three requests, and a connection
    // authorized then completed
    let broker = Broker::start(Backend::Aws).await;
    let receiver = Receiver::start().await;
    add_endpoint(&broker, &receiver, vec![]).await;
    receiver.hang(3);
    let (id, state_token) = broker.authorized_personal_connection().await;
    assert_eq!(broker.complete_personal(&state_token).await.0, 200);

    // When the events function is invoked as Lambda would: a 1 s timeout, two short waits, and
    // an invocation deadline that fits one attempt; each failed batch is handed again from the
    // record it names
    let dlq = Dlq::create().await;
    let backend = dlq.backend(&broker.app.config).await;
    let waits = [Duration::from_millis(200); 2];
    let delivery = StreamDelivery {
        waits: &waits,
        timeout: Duration::from_secs(1),
        ..backend.delivery()
    };
    let mut records = stream::records(&broker.app.config.table).await;
    let mut held = Vec::new();
    for _ in 0..10 {
        let answer = deliver_records(&delivery, stream::event(&records), deadline_in(3)).await;
        let Some(failure) = answer.batch_item_failures.first() else {
            break;
        };
        let from = failure.item_identifier.clone().unwrap();
        held.push(from.clone());
        let at = records
            .iter()
            .position(|r| r["dynamodb"]["SequenceNumber"] == from.as_str())
            .expect("the failed record is in the batch");
        records.drain(..at);
    }

    // Then the record was held (retried from) while attempts remained, and no later change
    // overtook it
    assert!(
        !held.is_empty() && held.iter().all(|s| *s == held[0]),
        "{held:?}"
    );
    let received = receiver.received();
    assert_eq!(
        received.len(),
        4,
        "three attempts at the first event, one at the second"
    );
    assert!(received[..3].iter().all(|r| r.id == received[0].id));
    assert_eq!(received[3].json()["type"], "connection.active");
    // and the first event is in the dead-letter queue, with what redelivering it needs
    let letters = dlq.letters().await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["event_id"], received[0].id.as_str());
    assert_eq!(letters[0]["type"], "connection.authorized");
    assert_eq!(letters[0]["connection_id"], id.as_str());
    assert_eq!(letters[0]["attempts"], 3);
    assert_eq!(letters[0]["body"], received[0].json());
    assert_eq!(
        STREAM_WAITS.len() + 1,
        9,
        "the function's attempts per event"
    );
}
