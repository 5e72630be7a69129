//! The user store (`auth`): SCRAM credentials only, durable across a restart, and a write the
//! disk refuses answers an error and changes nothing (in memory or after a restart).

use busbar_broker::auth::scram::{Credential, Mechanism};
use busbar_broker::auth::{AuthConfig, AuthError};
use busbar_broker::datadir::FaultDataDir;
use busbar_broker::{Broker, BrokerConfig};
use busbar_log::disk::{MemFs, Storage};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

const IP: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn open(fs: &MemFs) -> (Broker, Arc<FaultDataDir>) {
    let dir = Arc::new(FaultDataDir::new(fs.clone(), &["internal/users"]));
    let b = Broker::open(BrokerConfig {
        data: Some(dir.clone()),
        auth: AuthConfig {
            enabled: true,
            ..AuthConfig::default()
        },
        ..Default::default()
    })
    .unwrap();
    (b, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_survive_a_restart_and_keep_no_password() {
    let fs = MemFs::new();
    let (b, _) = open(&fs);
    let auth = b.auth();
    assert!(auth.users().is_empty());
    assert!(
        auth.set_password("alice", "pencil-1").await.unwrap(),
        "created"
    );
    assert!(
        !auth.set_password("alice", "pencil-2").await.unwrap(),
        "changed"
    );
    assert!(auth.set_password("bob", "bob-pw").await.unwrap());
    auth.delete_user("bob").await.unwrap();
    assert!(matches!(
        auth.delete_user("bob").await,
        Err(AuthError::UnknownUser(_))
    ));
    let salted = vec![7u8; 64];
    let c = Credential::from_salted(Mechanism::Sha512, b"salt", 8192, &salted).unwrap();
    auth.upsert_credential("carol", Mechanism::Sha512, c)
        .await
        .unwrap();
    b.close().unwrap();
    for dir in fs.dir_names() {
        let storage = fs.dir(&dir);
        for file in storage.list().unwrap() {
            let f = storage.open(&file).unwrap();
            let mut bytes = vec![0; f.len() as usize];
            f.read_at(0, &mut bytes).unwrap();
            let text = String::from_utf8_lossy(&bytes);
            assert!(
                !text.contains("pencil"),
                "a password was stored in {dir}/{file}"
            );
        }
    }
    let (b, _) = open(&fs);
    let auth = b.auth();
    let names: Vec<_> = auth.list_users().into_iter().map(|u| u.name).collect();
    assert_eq!(names, ["alice", "carol"]);
    auth.authenticate_password("alice", "pencil-2", IP).unwrap();
    assert!(auth.authenticate_password("alice", "pencil-1", IP).is_err());
    let carol = &auth.list_users()[1];
    assert_eq!(carol.mechanisms, [(Mechanism::Sha512, 8192)]);
    auth.delete_credential("carol", Mechanism::Sha512)
        .await
        .unwrap();
    assert!(
        !auth.users().exists("carol"),
        "the last credential takes the user"
    );
    b.close().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_write_answers_an_error_and_changes_nothing() {
    let fs = MemFs::new();
    let (b, dir) = open(&fs);
    b.auth().set_password("alice", "first-pw").await.unwrap();
    let plan = dir.plan("internal/users").expect("faulted");
    plan.set_disk_full(true);
    let changed = b.auth().set_password("alice", "second-pw").await;
    assert!(matches!(changed, Err(AuthError::Storage(_))), "{changed:?}");
    let created = b.auth().set_password("bob", "bob-pw").await;
    assert!(matches!(created, Err(AuthError::Storage(_))));
    assert!(matches!(
        b.auth().delete_user("alice").await,
        Err(AuthError::Storage(_))
    ));
    plan.set_disk_full(false);
    let names: Vec<_> = b.auth().list_users().into_iter().map(|u| u.name).collect();
    assert_eq!(names, ["alice"]);
    b.auth()
        .authenticate_password("alice", "first-pw", IP)
        .unwrap();
    b.auth().set_password("bob", "bob-pw").await.unwrap();
    b.close().unwrap();
    let (b, _) = open(&fs);
    let names: Vec<_> = b.auth().list_users().into_iter().map(|u| u.name).collect();
    assert_eq!(names, ["alice", "bob"]);
    b.auth()
        .authenticate_password("alice", "first-pw", IP)
        .unwrap();
    b.close().unwrap();
}

#[tokio::test]
async fn bad_names_and_passwords_are_refused() {
    let fs = MemFs::new();
    let (b, _) = open(&fs);
    for name in ["", "a:b", "tab\there", &"x".repeat(256)] {
        assert!(matches!(
            b.auth().set_password(name, "pw").await,
            Err(AuthError::InvalidName(_))
        ));
    }
    assert!(matches!(
        b.auth().set_password("alice", "").await,
        Err(AuthError::InvalidPassword(_))
    ));
    assert!(b.auth().users().is_empty());
    b.close().unwrap();
}
