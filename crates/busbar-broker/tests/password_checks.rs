//! Password checks (R16 review leftovers b and e): concurrent guesses of one key are not all
//! checked, and a successful check is remembered (no PBKDF2 per HTTP Basic request) until the
//! user's credentials change.

use busbar_broker::auth::scram::{Credential, Mechanism};
use busbar_broker::auth::{backoff, AuthConfig, AuthError};
use busbar_broker::{Broker, BrokerConfig};
use busbar_log::disk::MemFs;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

const IP: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn open(config: AuthConfig) -> Broker {
    let dir = Arc::new(busbar_broker::datadir::FaultDataDir::new(MemFs::new(), &[]));
    Broker::open(BrokerConfig {
        data: Some(dir),
        auth: AuthConfig {
            enabled: true,
            ..config
        },
        ..Default::default()
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_guesses_of_one_key_are_not_all_checked() {
    let b = Arc::new(open(AuthConfig {
        scram_iterations: 16_384,
        ..AuthConfig::default()
    }));
    b.auth().set_password("alice", "right-pw-1").await.unwrap();
    let start = Arc::new(std::sync::Barrier::new(32));
    let guesses: Vec<_> = (0..32)
        .map(|i| {
            let (b, start) = (b.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                b.auth()
                    .authenticate_password("alice", &format!("guess-{i}"), IP)
            })
        })
        .collect();
    for g in guesses {
        assert!(matches!(g.join().unwrap(), Err(AuthError::Failed { .. })));
    }
    let checked = b.auth().users().password_checks();
    assert!(
        checked <= backoff::IN_FLIGHT_MAX as u64,
        "{checked} of 32 concurrent guesses were checked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successful_check_is_remembered_until_the_credentials_change() {
    let b = open(AuthConfig::default());
    let auth = b.auth();
    auth.set_password("alice", "right-pw-1").await.unwrap();
    for _ in 0..20 {
        auth.authenticate_password("alice", "right-pw-1", IP)
            .unwrap();
    }
    assert_eq!(
        auth.users().password_checks(),
        1,
        "one PBKDF2 for 20 logins"
    );
    assert!(auth
        .authenticate_password("alice", "wrong-pw-1", IP)
        .is_err());
    auth.backoff().succeeded("alice", IP);

    auth.set_password("alice", "right-pw-2").await.unwrap();
    assert!(auth.verified().is_empty(), "dropped with the change");
    assert!(auth
        .authenticate_password("alice", "right-pw-1", IP)
        .is_err());
    auth.backoff().succeeded("alice", IP);
    auth.authenticate_password("alice", "right-pw-2", IP)
        .unwrap();
    auth.authenticate_password("alice", "right-pw-2", IP)
        .unwrap();
    assert_eq!(auth.users().password_checks(), 4);

    let c = Credential::generate(Mechanism::Sha512, "other-pw-1", 4096).unwrap();
    auth.upsert_credential("alice", Mechanism::Sha512, c)
        .await
        .unwrap();
    assert!(
        auth.verified().is_empty(),
        "dropped with an altered credential"
    );
    auth.delete_user("alice").await.unwrap();
    assert!(auth
        .authenticate_password("alice", "right-pw-2", IP)
        .is_err());
}
