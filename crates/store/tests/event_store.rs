//! The event store against a real PostgreSQL: one fresh database per test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{collections::HashSet, sync::Arc, time::Duration};

use chrono::Utc;
use kefu_app::{
    Actor, ActorKind, AppError, CommandMeta, CommandService, EventStore, StoreError,
    store::{AppendRequest, CommandRecord, NewEvent},
};
use kefu_domain::customer::{AssignAccountManager, CustomerCommand, examples};
use kefu_store::{PgEventStore, migrate};
use uuid::Uuid;

async fn store() -> anyhow::Result<PgEventStore> {
    store_with(1).await
}

/// A store whose writer keeps `flights` write statements on their way at once (tests of the
/// write path run with 1, the default, and with 2, where a batch is planned on top of one not
/// yet committed).
async fn store_with(flights: usize) -> anyhow::Result<PgEventStore> {
    let db = kefu_testkit::fresh_database().await?;
    migrate::run(&db.pool).await?;
    Ok(PgEventStore::with_options(db.pool, kefu_store::WriterOptions { flights, ..Default::default() }))
}

fn actor() -> Actor {
    Actor { id: "agent.chen".into(), name: Some("陈静".into()), kind: ActorKind::User, roles: vec!["agent".into()] }
}

fn request(stream: Uuid, expected: i64, n: usize) -> AppendRequest {
    let command_id = Uuid::now_v7();
    AppendRequest {
        stream_id: stream,
        stream_type: "customer".into(),
        customer_id: Some(stream),
        expected_version: expected,
        command: CommandRecord {
            command_id,
            command_type: "customer.Test".into(),
            payload: serde_json::json!({"Test": {"n": n}}).into(),
        },
        events: (0..n)
            .map(|i| NewEvent {
                event_id: Uuid::now_v7(),
                event_type: "ConsentGranted".into(),
                schema_version: 1,
                payload: serde_json::json!({"purpose": "CONSENT_PURPOSE_SURVEYS", "note": format!("{i}")}),
            })
            .collect(),
        occurred_at: "2019-06-01T08:00:00.123456Z".parse().unwrap(),
        actor: actor(),
        correlation_id: Uuid::now_v7(),
        causation_id: command_id,
        also: vec![],
    }
}

#[tokio::test]
async fn appended_events_load_back_with_their_envelope() -> anyhow::Result<()> {
    let store = store().await?;
    let stream = Uuid::now_v7();
    let req = request(stream, 0, 3);
    let outcome = store.append(req.clone()).await?;
    assert_eq!(outcome.stream_version, 3);
    assert_eq!((outcome.first_position, outcome.last_position), (Some(1), Some(3)));
    assert!(!outcome.deduplicated);

    let events = store.load(stream).await?;
    assert_eq!(events.len(), 3);
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.stream_version, i as i64 + 1);
        assert_eq!(e.global_position, i as i64 + 1);
        assert_eq!(e.event_id, req.events[i].event_id);
        assert_eq!(e.payload, req.events[i].payload);
        assert_eq!(e.occurred_at, req.occurred_at);
        assert_eq!(e.recorded_at, outcome.recorded_at);
        assert_eq!(e.actor, actor());
        assert_eq!(e.correlation_id, req.correlation_id);
        assert_eq!(e.causation_id, req.causation_id);
        assert_eq!(e.command_id, req.command.command_id);
        assert_eq!(e.customer_id, Some(stream));
        assert_eq!(e.stream_type, "customer");
    }
    assert!(store.load(Uuid::now_v7()).await?.is_empty());
    assert_eq!(store.read_after(1, 10).await?, events[1..].to_vec());
    Ok(())
}

#[tokio::test]
async fn a_wrong_expected_version_is_refused_with_the_current_version() -> anyhow::Result<()> {
    let store = store().await?;
    let stream = Uuid::now_v7();
    store.append(request(stream, 0, 2)).await?;
    let err = store.append(request(stream, 1, 1)).await.unwrap_err();
    assert_eq!(err, StoreError::WrongExpectedVersion { stream_id: stream, expected: 1, actual: 2 });
    let err = store.append(request(stream, 0, 1)).await.unwrap_err();
    assert!(matches!(err, StoreError::WrongExpectedVersion { actual: 2, .. }));
    assert_eq!(store.load(stream).await?.len(), 2);
    // A refused append leaves no hole in the global log.
    let ok = store.append(request(stream, 2, 1)).await?;
    assert_eq!(ok.first_position, Some(3));
    Ok(())
}

#[tokio::test]
async fn a_retried_command_appends_nothing_and_returns_the_first_result() -> anyhow::Result<()> {
    let store = store().await?;
    let stream = Uuid::now_v7();
    let req = request(stream, 0, 2);
    let first = store.append(req.clone()).await?;
    // The retry may even carry a stale expected version: the journal answers first.
    let mut retry = req.clone();
    retry.events.iter_mut().for_each(|e| e.event_id = Uuid::now_v7());
    let again = store.append(retry).await?;
    assert!(again.deduplicated);
    assert_eq!(again.stream_version, first.stream_version);
    assert_eq!(again.last_position, first.last_position);
    assert_eq!(store.load(stream).await?.len(), 2);
    assert_eq!(store.head().await?, 2);

    let mut other = request(stream, 2, 1);
    other.command.command_id = req.command.command_id;
    let err = store.append(other).await.unwrap_err();
    assert!(matches!(err, StoreError::CommandIdReused { .. }), "{err:?}");
    Ok(())
}

/// Which of many command ids were journalled, each with its stream, in one read: what the
/// automations ask for a batch of events before reacting to it.
#[tokio::test]
async fn journalled_commands_are_found_together_with_their_streams() -> anyhow::Result<()> {
    let store = store().await?;
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    let first = request(a, 0, 1);
    let second = request(b, 0, 2);
    store.append(first.clone()).await?;
    store.append(second.clone()).await?;
    let unknown = Uuid::now_v7();
    let ids = [first.command.command_id, unknown, second.command.command_id];
    let found = store.journalled_streams(&ids).await?;
    assert_eq!(
        found,
        [(first.command.command_id, a), (second.command.command_id, b)].into_iter().collect(),
        "an unknown id is absent, the others map to their streams"
    );
    assert!(store.journalled_streams(&[]).await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn concurrent_appends_to_one_stream_have_exactly_one_winner_per_version() -> anyhow::Result<()> {
    for flights in [1, 2] {
        concurrent_appends_to_one_stream_have_exactly_one_winner_per_version_with(flights).await?;
    }
    Ok(())
}

async fn concurrent_appends_to_one_stream_have_exactly_one_winner_per_version_with(
    flights: usize,
) -> anyhow::Result<()> {
    let store = Arc::new(store_with(flights).await?);
    let stream = Uuid::now_v7();
    let tasks = 16;
    let rounds = 5;
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let mut wins = Vec::new();
            for version in 0..rounds {
                match store.append(request(stream, version, 1)).await {
                    Ok(o) => wins.push(o.stream_version),
                    Err(StoreError::WrongExpectedVersion { .. }) => {}
                    Err(e) => panic!("unexpected error {e}"),
                }
            }
            wins
        }));
    }
    let mut all_wins = Vec::new();
    for h in handles {
        all_wins.extend(h.await?);
    }
    all_wins.sort_unstable();
    // Every version 1..=rounds was won at most once, and the stream has no gaps.
    let unique: HashSet<_> = all_wins.iter().copied().collect();
    assert_eq!(unique.len(), all_wins.len(), "a version was won twice: {all_wins:?}");
    let events = store.load(stream).await?;
    let versions: Vec<i64> = events.iter().map(|e| e.stream_version).collect();
    assert_eq!(versions, (1..=events.len() as i64).collect::<Vec<_>>());
    assert_eq!(all_wins, versions);
    assert!(!events.is_empty());
    Ok(())
}

#[tokio::test]
async fn concurrent_retries_of_one_command_append_once() -> anyhow::Result<()> {
    for flights in [1, 2] {
        concurrent_retries_of_one_command_append_once_with(flights).await?;
    }
    Ok(())
}

async fn concurrent_retries_of_one_command_append_once_with(flights: usize) -> anyhow::Result<()> {
    let store = Arc::new(store_with(flights).await?);
    let stream = Uuid::now_v7();
    let req = request(stream, 0, 2);
    let mut handles = Vec::new();
    for _ in 0..12 {
        let store = store.clone();
        let req = req.clone();
        handles.push(tokio::spawn(async move { store.append(req).await }));
    }
    let mut fresh = 0;
    for h in handles {
        let outcome = h.await??;
        assert_eq!(outcome.stream_version, 2);
        if !outcome.deduplicated {
            fresh += 1;
        }
    }
    assert_eq!(fresh, 1);
    assert_eq!(store.load(stream).await?.len(), 2);
    Ok(())
}

#[tokio::test]
async fn a_reader_never_sees_a_later_position_while_an_earlier_one_is_in_flight() -> anyhow::Result<()> {
    let store = Arc::new(store().await?);
    let a = Uuid::now_v7();
    let b = Uuid::now_v7();
    // Transaction A appends and stays open.
    let mut tx = store.pool().begin().await?;
    let held = store.append_uncommitted(&mut tx, &request(a, 0, 2)).await?;
    assert_eq!(held.first_position, Some(1));
    // B appends concurrently: it must queue behind A rather than commit position 3 first.
    let b_task = {
        let store = store.clone();
        tokio::spawn(async move { store.append(request(b, 0, 1)).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!b_task.is_finished(), "B committed while A's earlier positions were in flight");
    assert!(store.read_after(0, 100).await?.is_empty());
    tx.commit().await?;
    let b_outcome = b_task.await??;
    assert_eq!(b_outcome.first_position, Some(3));
    let positions: Vec<i64> = store.read_after(0, 100).await?.iter().map(|e| e.global_position).collect();
    assert_eq!(positions, vec![1, 2, 3]);
    Ok(())
}

#[tokio::test]
async fn positions_stay_dense_under_concurrent_writers_and_a_polling_reader() -> anyhow::Result<()> {
    for flights in [1, 2] {
        positions_stay_dense_under_concurrent_writers_and_a_polling_reader_with(flights).await?;
    }
    Ok(())
}

async fn positions_stay_dense_under_concurrent_writers_and_a_polling_reader_with(flights: usize) -> anyhow::Result<()> {
    let store = Arc::new(store_with(flights).await?);
    let writers: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let stream = Uuid::now_v7();
                let mut version = 0;
                for i in 0..10 {
                    let n = 1 + i % 3;
                    store.append(request(stream, version, n)).await.unwrap();
                    version += n as i64;
                }
            })
        })
        .collect();
    // The reader follows the log the way the relay does and checks it never skips a number.
    let mut seen = 0i64;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    // each writer appends 1+2+3+1+2+3+1+2+3+1 = 19 events
    while seen < 8 * 19 {
        for e in store.read_after(seen, 7).await? {
            assert_eq!(e.global_position, seen + 1, "the reader skipped a position");
            seen = e.global_position;
        }
        assert!(tokio::time::Instant::now() < deadline, "writers stalled at {seen}");
        tokio::task::yield_now().await;
    }
    for w in writers {
        w.await?;
    }
    assert_eq!(store.head().await?, seen);
    Ok(())
}

#[tokio::test]
async fn history_cannot_be_rewritten() -> anyhow::Result<()> {
    let store = store().await?;
    store.append(request(Uuid::now_v7(), 0, 1)).await?;
    for sql in [
        "UPDATE event_store.events SET payload = '{}'",
        "DELETE FROM event_store.events",
        "TRUNCATE event_store.events CASCADE",
    ] {
        let err = sqlx::query(sql).execute(store.pool()).await.unwrap_err();
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    assert_eq!(store.head().await?, 1);
    Ok(())
}

#[tokio::test]
async fn a_stream_keeps_its_type() -> anyhow::Result<()> {
    let store = store().await?;
    let stream = Uuid::now_v7();
    store.append(request(stream, 0, 1)).await?;
    let mut req = request(stream, 1, 1);
    req.stream_type = "interaction".into();
    let err = store.append(req).await.unwrap_err();
    assert!(matches!(err, StoreError::StreamTypeMismatch { .. }));
    Ok(())
}

#[tokio::test]
async fn an_unreachable_database_is_unavailable_not_a_panic() -> anyhow::Result<()> {
    // Port 9 (discard) on loopback: nothing listens there.
    let pool = kefu_store::connect("postgres://kefu@127.0.0.1:9/kefu", 2, Duration::from_millis(500))?;
    let store = PgEventStore::new(pool);
    let err = store.append(request(Uuid::now_v7(), 0, 1)).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    let service = CommandService::new(Arc::new(store));
    let err = service
        .customer(CustomerCommand::Register(examples::register_person().1), CommandMeta::by(actor()))
        .await
        .unwrap_err();
    assert!(matches!(err, AppError::Unavailable(_)), "{err:?}");
    Ok(())
}

#[tokio::test]
async fn the_command_service_on_postgres_dedupes_and_detects_conflicts() -> anyhow::Result<()> {
    let store = Arc::new(store().await?);
    let service = CommandService::new(store.clone());
    let (id, register) = examples::register_person();
    let mut meta = CommandMeta::by(actor());
    meta.command_id = Some(Uuid::now_v7());
    meta.occurred_at = Some(Utc::now() - chrono::Duration::days(400));
    let first = service.customer(CustomerCommand::Register(register.clone()), meta.clone()).await?;
    let again = service.customer(CustomerCommand::Register(register), meta).await?;
    assert!(again.deduplicated);
    assert_eq!(again.last_position, first.last_position);

    let assign = |who: &str| {
        CustomerCommand::AssignAccountManager(AssignAccountManager {
            customer_id: id,
            manager: examples::staff(who, who),
            reason: None,
        })
    };
    let mut stale = CommandMeta::by(actor());
    stale.expected_version = Some(0);
    let err = service.customer(assign("a"), stale).await.unwrap_err();
    assert!(matches!(err, AppError::Conflict { actual: 1, expected: 0, .. }), "{err:?}");

    // Without an expected version, racing commands are re-decided and all land.
    let mut handles = Vec::new();
    for i in 0..6 {
        let service = service.clone();
        let cmd = assign(&format!("manager-{i}"));
        handles.push(tokio::spawn(async move { service.customer(cmd, CommandMeta::by(actor())).await }));
    }
    for h in handles {
        h.await??;
    }
    assert_eq!(store.load(id).await?.len(), 7);
    Ok(())
}

#[tokio::test]
async fn a_command_that_changes_several_streams_appends_to_all_or_none() -> anyhow::Result<()> {
    let store = store().await?;
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    store.append(request(b, 0, 1)).await?;
    let mut req = request(a, 0, 2);
    req.also = vec![kefu_app::store::StreamAppend {
        stream_id: b,
        stream_type: "customer".into(),
        customer_id: Some(b),
        expected_version: 1,
        events: request(b, 1, 1).events,
    }];
    let outcome = store.append(req.clone()).await?;
    assert_eq!(outcome.event_count, 3);
    assert_eq!((outcome.first_position, outcome.last_position), (Some(2), Some(4)));
    assert_eq!(store.load(a).await?.len(), 2);
    let b_events = store.load(b).await?;
    assert_eq!(b_events.iter().map(|e| e.stream_version).collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(b_events[1].global_position, 4);
    assert_eq!(b_events[1].command_id, req.command.command_id);

    // A stale version on the second stream refuses the whole command.
    let (c, d) = (Uuid::now_v7(), Uuid::now_v7());
    let mut req = request(c, 0, 1);
    req.also = vec![kefu_app::store::StreamAppend {
        stream_id: d,
        stream_type: "customer".into(),
        customer_id: Some(d),
        expected_version: 5,
        events: request(d, 0, 1).events,
    }];
    let err = store.append(req).await.unwrap_err();
    assert!(matches!(err, StoreError::WrongExpectedVersion { stream_id, actual: 0, .. } if stream_id == d));
    assert!(store.load(c).await?.is_empty(), "nothing of the refused command was appended");
    assert_eq!(store.head().await?, 4);
    Ok(())
}

/// Payloads whose stored form differs from the form they were written in: `jsonb` reorders
/// keys, prints whole floats without an exponent and drops the sign of zero.
fn awkward_payload(i: usize) -> serde_json::Value {
    serde_json::json!({
        "zeta": "末尾", "alpha": {"z": 1, "a": [3, 2, 1], "m": {"y": null, "b": true}},
        "whole": 1e16, "big_whole": 1.5e16, "huge": 1e21, "minus_zero": -0.0, "tenth": 0.1,
        "tiny": 1e-7, "far": 1.5e300, "u64": u64::MAX, "i64": i64::MIN, "neg_whole": -1e17,
        "text": format!("引号\"反斜杠\\换行\n制表\t{i} \u{7f} é 😀"),
        "empty": {}, "list": [], "float_int": 100.0,
    })
}

#[tokio::test]
async fn the_hash_written_with_an_append_is_the_one_verification_computes_from_the_stored_row() -> anyhow::Result<()> {
    for flights in [1, 2] {
        the_hash_written_with_an_append_is_the_one_verification_computes_from_the_stored_row_with(flights).await?;
    }
    Ok(())
}

async fn the_hash_written_with_an_append_is_the_one_verification_computes_from_the_stored_row_with(
    flights: usize,
) -> anyhow::Result<()> {
    let store = store_with(flights).await?;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let stream = Uuid::now_v7();
            let mut req = request(stream, 0, 3);
            for e in &mut req.events {
                e.payload = awkward_payload(i);
            }
            // Business time before 2000 (PostgreSQL's epoch) and at microsecond precision.
            req.occurred_at = "1999-12-31T23:59:59.999999Z".parse().unwrap();
            req.actor = Actor {
                id: "agent.李".into(),
                name: Some("李 \"雷\"".into()),
                kind: ActorKind::User,
                roles: vec!["agent".into(), "质检".into()],
            };
            store.append(req).await?;
            let follow = request(stream, 3, 1);
            store.append(follow).await
        }));
    }
    for t in tasks {
        t.await??;
    }
    let verification = kefu_store::integrity::verify_store(store.pool(), |_, _| {}).await?;
    assert_eq!(verification.first_mismatch, None);
    assert_eq!(verification.events, 80);
    // The stored payload really is in another form than the one hashed at append.
    let stored: String =
        sqlx::query_scalar("SELECT payload::text FROM event_store.events WHERE stream_version = 1 LIMIT 1")
            .fetch_one(store.pool())
            .await?;
    assert!(stored.contains("10000000000000000") && !stored.contains("-0.0"), "{stored}");
    Ok(())
}

#[tokio::test]
async fn one_value_the_database_cannot_store_fails_only_its_own_append() -> anyhow::Result<()> {
    for flights in [1, 2] {
        one_value_the_database_cannot_store_fails_only_its_own_append_with(flights).await?;
    }
    Ok(())
}

async fn one_value_the_database_cannot_store_fails_only_its_own_append_with(flights: usize) -> anyhow::Result<()> {
    let store = Arc::new(store_with(flights).await?);
    let mut handles = Vec::new();
    for i in 0..24 {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let mut req = request(Uuid::now_v7(), 0, 1);
            if i == 7 {
                // jsonb cannot hold a NUL character
                req.events[0].payload = serde_json::json!({"note": "a\u{0}b"});
            }
            (i, store.append(req).await)
        }));
    }
    let mut failed = Vec::new();
    for h in handles {
        let (i, result) = h.await?;
        match result {
            Ok(o) => assert_eq!(o.event_count, 1),
            Err(e) => {
                assert!(matches!(e, StoreError::Database(_)), "{e:?}");
                failed.push(i);
            }
        }
    }
    assert_eq!(failed, vec![7]);
    assert_eq!(store.head().await?, 23);
    let positions: Vec<i64> = store.read_after(0, 100).await?.iter().map(|e| e.global_position).collect();
    assert_eq!(positions, (1..=23).collect::<Vec<_>>(), "dense positions around the refused append");
    Ok(())
}

#[tokio::test]
async fn appends_in_one_batch_keep_their_own_outcomes() -> anyhow::Result<()> {
    for flights in [1, 2] {
        appends_in_one_batch_keep_their_own_outcomes_with(flights).await?;
    }
    Ok(())
}

async fn appends_in_one_batch_keep_their_own_outcomes_with(flights: usize) -> anyhow::Result<()> {
    let store = Arc::new(store_with(flights).await?);
    let shared = Uuid::now_v7();
    store.append(request(shared, 0, 1)).await?;
    let retried = request(Uuid::now_v7(), 0, 1);
    store.append(retried.clone()).await?;
    // Many appends at once, so that they share batches: racers for one version of one stream,
    // a retry, a reuse of a command id for another command, and independent appends.
    let mut handles = Vec::new();
    for i in 0..40 {
        let store = store.clone();
        let retried = retried.clone();
        handles.push(tokio::spawn(async move {
            let req = match i % 4 {
                0 => request(shared, 1, 1),
                1 => retried,
                2 => {
                    let mut other = request(Uuid::now_v7(), 0, 1);
                    other.command.command_id = retried.command.command_id;
                    other
                }
                _ => request(Uuid::now_v7(), 0, 2),
            };
            (i % 4, store.append(req).await)
        }));
    }
    let mut winners = 0;
    for h in handles {
        match h.await? {
            (0, Ok(_)) => winners += 1,
            (0, Err(e)) => assert!(matches!(e, StoreError::WrongExpectedVersion { actual: 2, .. }), "{e:?}"),
            (1, r) => assert!(r?.deduplicated),
            (2, r) => assert!(matches!(r, Err(StoreError::CommandIdReused { .. })), "{r:?}"),
            (_, r) => assert_eq!(r?.event_count, 2),
        }
    }
    assert_eq!(winners, 1, "one winner for version 2 of the shared stream");
    assert_eq!(store.load(shared).await?.len(), 2);
    assert_eq!(store.head().await?, 2 + 1 + 10 * 2);
    let stats = store.writer_stats();
    assert!(stats.batches < stats.appends, "appends shared batches: {stats:?}");
    Ok(())
}

#[tokio::test]
async fn two_writers_on_one_database_keep_one_winner_per_version_and_dense_positions() -> anyhow::Result<()> {
    // Two stores on separate pools: two writers, as two `kefu serve` processes would have.
    let db = kefu_testkit::fresh_database().await?;
    migrate::run(&db.pool).await?;
    let other_pool = sqlx::postgres::PgPoolOptions::new().max_connections(4).connect(&db.url).await?;
    let two = kefu_store::WriterOptions { flights: 2, ..Default::default() };
    let stores = [Arc::new(PgEventStore::new(db.pool.clone())), Arc::new(PgEventStore::with_options(other_pool, two))];
    let streams: Vec<Uuid> = (0..4).map(|_| Uuid::now_v7()).collect();
    let mut handles = Vec::new();
    for t in 0..16 {
        let store = stores[t % 2].clone();
        let streams = streams.clone();
        handles.push(tokio::spawn(async move {
            let mut wins = Vec::new();
            for round in 0..12 {
                let stream = streams[(t + round) % streams.len()];
                let version = store.load(stream).await?.len() as i64;
                match store.append(request(stream, version, 1 + round % 2)).await {
                    Ok(o) => wins.push((stream, o.stream_version)),
                    Err(StoreError::WrongExpectedVersion { .. }) => {}
                    Err(e) => return Err(anyhow::anyhow!("unexpected error {e}")),
                }
            }
            anyhow::Ok(wins)
        }));
    }
    let mut wins = Vec::new();
    for h in handles {
        wins.extend(h.await??);
    }
    let unique: HashSet<_> = wins.iter().copied().collect();
    assert_eq!(unique.len(), wins.len(), "a version was won twice");
    for stream in &streams {
        let versions: Vec<i64> = stores[0].load(*stream).await?.iter().map(|e| e.stream_version).collect();
        assert_eq!(versions, (1..=versions.len() as i64).collect::<Vec<_>>());
    }
    let log = stores[0].read_after(0, 10_000).await?;
    let positions: Vec<i64> = log.iter().map(|e| e.global_position).collect();
    assert_eq!(positions, (1..=log.len() as i64).collect::<Vec<_>>(), "positions are dense");
    let times: Vec<_> = log.iter().map(|e| e.recorded_at).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "recorded times grow with position");
    let careful = stores[0].writer_stats().careful + stores[1].writer_stats().careful;
    assert!(careful > 0, "the writers met each other (each found the head moved at least once)");
    let verification = kefu_store::integrity::verify_store(stores[0].pool(), |_, _| {}).await?;
    assert_eq!(verification.first_mismatch, None);
    Ok(())
}
