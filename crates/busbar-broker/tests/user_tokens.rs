//! A user's tokens never outlive it: deleting a user is two durable writes (the user, then its
//! tokens); when the second fails (as after a crash between them) the tokens left never
//! authenticate, not after a restart, and not for a new user of the same name.

use busbar_broker::auth::{AuthConfig, AuthError};
use busbar_broker::datadir::FaultDataDir;
use busbar_broker::{Broker, BrokerConfig};
use busbar_log::disk::MemFs;
use std::sync::Arc;
use std::time::Duration;

fn open(fs: &MemFs) -> (Broker, Arc<FaultDataDir>) {
    let dir = Arc::new(FaultDataDir::new(fs.clone(), &["internal/tokens"]));
    let config = BrokerConfig {
        data: Some(dir.clone()),
        auth: AuthConfig {
            enabled: true,
            ..AuthConfig::default()
        },
        ..Default::default()
    };
    (Broker::open(config).unwrap(), dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_left_by_a_half_done_user_deletion_never_work_again() {
    let fs = MemFs::new();
    let (b, dir) = open(&fs);
    let auth = b.auth();
    auth.set_password("bob", "bob-pw-1").await.unwrap();
    let ttl = Duration::from_secs(3600);
    let made = auth.create_token("bob", "ci", ttl).await.unwrap();
    assert_eq!(
        auth.authenticate_token(&made.secret).as_deref(),
        Some("bob")
    );
    let plan = dir.plan("internal/tokens").expect("faulted");
    plan.set_disk_full(true);
    let deleted = auth.delete_user("bob").await;
    assert!(matches!(deleted, Err(AuthError::Storage(_))), "{deleted:?}");
    assert!(!auth.users().exists("bob"), "the user went first");
    assert_eq!(auth.authenticate_token(&made.secret), None);
    plan.set_disk_full(false);
    b.close().unwrap();
    let (b, _) = open(&fs);
    let auth = b.auth();
    assert_eq!(
        auth.authenticate_token(&made.secret),
        None,
        "after a restart"
    );
    auth.set_password("bob", "new-pw-1").await.unwrap();
    assert_eq!(auth.authenticate_token(&made.secret), None, "a new bob");
    assert!(auth.tokens().list("bob").is_empty());
    b.close().unwrap();
}
