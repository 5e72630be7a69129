//! Starts the real HTTP front end on 127.0.0.1 port 0 over a broker in a temporary directory, on a
//! runtime of its own, and offers JSON helpers over the test kit's blocking client.
#![allow(dead_code)]

use busbar_broker::{Broker, BrokerConfig};
use busbar_bus::Bus;
use busbar_http::{serve, HttpConfig};
use busbar_testkit::http::{request, Response};
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::Arc;

pub struct Server {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    pub fn start() -> Self {
        Self::start_with(HttpConfig::default())
    }

    pub fn start_with(config: HttpConfig) -> Self {
        Self::start_custom(config, |b| b)
    }

    /// [`Server::start_with`], with the broker's config changed by `broker`.
    pub fn start_custom(
        config: HttpConfig,
        broker: impl FnOnce(BrokerConfig) -> BrokerConfig + Send + 'static,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().to_path_buf();
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let broker = Arc::new(
                    Broker::open(broker(BrokerConfig {
                        data_dir: data,
                        group_initial_rebalance_delay: std::time::Duration::from_millis(200),
                        ..Default::default()
                    }))
                    .unwrap(),
                );
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                let bus = Arc::new(Bus::open(broker.clone()).unwrap());
                bus.start().await;
                serve(listener, bus.clone(), config, async move {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
                bus.close().await.unwrap();
                broker.close().unwrap();
            });
        });
        let addr = rx.recv().unwrap();
        Self {
            addr,
            dir,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        request(self.addr, method, path, headers, body).unwrap()
    }

    /// A JSON request; answers (status, parsed body).
    pub fn json(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let hdrs: &[(&str, &str)] = if bytes.is_empty() {
            &[]
        } else {
            &[("content-type", "application/json")]
        };
        let r = self.call(method, path, hdrs, &bytes);
        let v = if r.body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&r.body).unwrap_or_else(|_| panic!("not JSON: {}", r.text()))
        };
        (r.status, v)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Asserts an error answer's status and code, and that the message mentions `needle`.
pub fn assert_error(got: (u16, Value), status: u16, code: &str, needle: &str) {
    assert_eq!(got.0, status, "{}", got.1);
    assert_eq!(got.1["error"]["code"], code, "{}", got.1);
    let msg = got.1["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains(needle), "message {msg:?} lacks {needle:?}");
}
