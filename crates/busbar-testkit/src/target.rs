//! A real HTTP/1.1 target server for delivery tests: it records every request (path, headers, body,
//! arrival time) and answers as a script says: a status (with headers such as `Retry-After`), a
//! hang past the client's timeout, or a dropped connection. Connections are kept alive, as a real
//! server would. [`refused_addr`] gives an address where nothing listens.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    /// Header names in lower case.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    pub at: Instant,
}

impl Received {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// The body parsed as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// How the target answers one request.
#[derive(Debug, Clone)]
pub enum Reply {
    Status(u16),
    StatusWith(u16, Vec<(String, String)>),
    /// Answer with a status after this long.
    After(Duration, u16),
    /// Answer nothing for this long, then close.
    Hang(Duration),
    /// Close the connection without an answer.
    Close,
}

type Script = dyn Fn(&Received, usize) -> Reply + Send + Sync;

/// A running target server; stops when dropped.
pub struct Target {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    stop: Arc<AtomicBool>,
}

impl Target {
    /// Starts a target answering `script(request, number of requests before it)`.
    pub fn start(script: impl Fn(&Received, usize) -> Reply + Send + Sync + 'static) -> Target {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind target");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let script: Arc<Script> = Arc::new(script);
        let (r, s) = (received.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let (r, script, s) = (r.clone(), script.clone(), s.clone());
                        std::thread::spawn(move || serve(conn, &r, &*script, &s));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Target {
            addr,
            received,
            stop,
        }
    }

    /// A target answering 200 to everything.
    pub fn ok() -> Target {
        Self::start(|_, _| Reply::Status(200))
    }

    /// `http://addr{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Waits until `done(received)` holds (panics after `timeout`, showing what arrived).
    pub fn wait(&self, timeout: Duration, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let end = Instant::now() + timeout;
        loop {
            let got = self.received();
            if done(&got) {
                return got;
            }
            if Instant::now() > end {
                let paths: Vec<&str> = got.iter().map(|r| r.path.as_str()).collect();
                panic!(
                    "target: condition not met in {timeout:?}; {} requests: {paths:?}",
                    got.len()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// An address nothing listens on (bound, then released).
pub fn refused_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Received> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let path = line.split(' ').nth(1)?.to_string();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    Some(Received {
        path,
        headers,
        body,
        at: Instant::now(),
    })
}

fn serve(conn: TcpStream, received: &Mutex<Vec<Received>>, script: &Script, stop: &AtomicBool) {
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let mut writer = match conn.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut reader = BufReader::new(conn);
    while !stop.load(Ordering::SeqCst) {
        let Some(req) = read_request(&mut reader) else {
            return;
        };
        let reply = {
            let mut all = received.lock().unwrap();
            let n = all.len();
            all.push(req.clone());
            script(&req, n)
        };
        let (status, extra) = match reply {
            Reply::Status(s) => (s, Vec::new()),
            Reply::StatusWith(s, h) => (s, h),
            Reply::After(d, s) => {
                std::thread::sleep(d);
                (s, Vec::new())
            }
            Reply::Hang(d) => {
                std::thread::sleep(d);
                return;
            }
            Reply::Close => return,
        };
        let mut head = format!("HTTP/1.1 {status} Scripted\r\ncontent-length: 2\r\n");
        for (k, v) in extra {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\nok");
        if writer.write_all(head.as_bytes()).is_err() {
            return;
        }
    }
}
