//! A real PostgreSQL server for cluster-mode tests (issue 20): Debian's `initdb` and `pg_ctl`
//! (package `postgresql`; `scripts/clients.sh` installs it) make a database cluster in a temporary
//! directory and start it on a free port of 127.0.0.1, with its Unix socket in that directory.
//!
//! PostgreSQL refuses to run as root, so when the tests run as root (CI does) the directory is
//! handed to `nobody` and both commands run through `runuser -u nobody`. `Drop` stops the server
//! (`pg_ctl stop -m immediate`) and removes the directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A running PostgreSQL server, stopped when dropped.
pub struct TestPostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    as_nobody: bool,
    /// TLS only ([`TestPostgres::start_tls`]): URLs ask for `sslmode=require`.
    tls: bool,
}

/// Where Debian puts the server binaries (the highest version installed), or the `PATH`.
fn bin_dir() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("pg_ctl").exists())
        .collect();
    found.sort();
    found.pop().unwrap_or_default()
}

/// A free TCP port of 127.0.0.1 (free now: a test server binds it next).
/// A free port of 127.0.0.1 for a server these tests stop and start again on the same port
/// (PostgreSQL restarted, SeaweedFS down for 30 s): chosen below the kernel's ephemeral range
/// (32768-60999 by default), so that no other test's `:0` listener and no connection's source
/// port can take it while the server is down; never the same twice in one process.
pub(crate) fn free_port() -> u16 {
    use std::sync::Mutex;
    static GIVEN: Mutex<Option<(u64, std::collections::HashSet<u16>)>> = Mutex::new(None);
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let (state, taken) = given.get_or_insert_with(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        (
            (u64::from(std::process::id()) << 32) ^ t | 1,
            Default::default(),
        )
    });
    for _ in 0..10_000 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        let port = 20_000 + (*state % 12_000) as u16;
        if !taken.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            taken.insert(port);
            return port;
        }
    }
    panic!("no free port in 20000..32000")
}

impl TestPostgres {
    /// Makes and starts a server; panics with the commands' output when it cannot.
    pub fn start() -> TestPostgres {
        let pg = TestPostgres::init();
        pg.launch();
        pg
    }

    /// A server that takes TLS connections only (TCP without TLS is rejected by `pg_hba.conf`),
    /// with this certificate and key (PEM).
    pub fn start_tls(cert_pem: &str, key_pem: &str) -> TestPostgres {
        TestPostgres::start_tls_with(cert_pem, key_pem, None)
    }

    /// [`TestPostgres::start_tls`], where connections to database `db` must also present a
    /// client certificate signed by `ca_pem` whose common name is the user (`pg_hba.conf`'s
    /// `cert` method); the other databases take TLS connections without one.
    pub fn start_tls_client_cert(
        cert_pem: &str,
        key_pem: &str,
        (ca_pem, db): (&str, &str),
    ) -> TestPostgres {
        TestPostgres::start_tls_with(cert_pem, key_pem, Some((ca_pem, db)))
    }

    fn start_tls_with(cert_pem: &str, key_pem: &str, client: Option<(&str, &str)>) -> TestPostgres {
        let mut pg = TestPostgres::init();
        let data = pg.data_dir();
        std::fs::write(data.join("server.crt"), cert_pem).expect("write server.crt");
        std::fs::write(data.join("server.key"), key_pem).expect("write server.key");
        let mut conf =
            "\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n".to_string();
        let mut hba = "local all all trust\n".to_string();
        if let Some((ca, db)) = client {
            std::fs::write(data.join("root.crt"), ca).expect("write root.crt");
            conf.push_str("ssl_ca_file = 'root.crt'\n");
            hba.push_str(&format!("hostssl {db} all 127.0.0.1/32 cert\n"));
        }
        let mut c = std::fs::read_to_string(data.join("postgresql.conf")).expect("conf");
        c.push_str(&conf);
        std::fs::write(data.join("postgresql.conf"), c).expect("write postgresql.conf");
        hba.push_str("hostssl all all 127.0.0.1/32 trust\nhostnossl all all 127.0.0.1/32 reject\n");
        std::fs::write(data.join("pg_hba.conf"), hba).expect("write pg_hba.conf");
        run(Command::new("chmod")
            .arg("600")
            .arg(data.join("server.key")));
        if pg.as_nobody {
            run(Command::new("chown").args(["-R", "nobody"]).arg(&data));
        }
        pg.tls = true;
        pg.launch();
        pg
    }

    fn init() -> TestPostgres {
        let dir = tempfile::tempdir().expect("tempdir");
        let as_nobody = is_root();
        if as_nobody {
            run(Command::new("chown").args(["-R", "nobody"]).arg(dir.path()));
        }
        let pg = TestPostgres {
            bin: bin_dir(),
            port: free_port(),
            as_nobody,
            dir,
            tls: false,
        };
        let data = pg.data_dir();
        pg.run_pg(|c| {
            c.arg("initdb")
                .args([
                    "-A",
                    "trust",
                    "-U",
                    "busbar",
                    "--no-sync",
                    "-E",
                    "UTF8",
                    "-D",
                ])
                .arg(&data);
        });
        pg
    }

    fn launch(&self) {
        let pg = self;
        let data = pg.data_dir();
        let opts = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=on -c max_connections=200",
            pg.port,
            pg.dir.path().display()
        );
        pg.run_pg(|c| {
            c.arg("pg_ctl")
                .args(["-w", "-t", "60", "-D"])
                .arg(&data)
                .args(["-o", &opts, "-l"])
                .arg(pg.dir.path().join("log"))
                .arg("start");
        });
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Runs one of the server's programs (`what` adds the program name first), as `nobody` when
    /// we are root.
    fn run_pg(&self, what: impl FnOnce(&mut Command)) {
        let mut inner = Command::new("x");
        what(&mut inner);
        let args: Vec<_> = inner.get_args().map(|a| a.to_owned()).collect();
        let program = self.bin.join(&args[0]);
        let mut c = if self.as_nobody {
            let mut c = Command::new("runuser");
            c.args(["-u", "nobody", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        };
        c.args(&args[1..]).current_dir(self.dir.path());
        run(&mut c);
    }

    /// The port the server listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A connection URL for database `db` (made by [`TestPostgres::create_db`]; `postgres`
    /// exists from the start).
    pub fn url(&self, db: &str) -> String {
        let tls = if self.tls { "?sslmode=require" } else { "" };
        format!("postgres://busbar@127.0.0.1:{}/{db}{tls}", self.port)
    }

    /// Makes an empty database (each test takes its own).
    pub fn create_db(&self, db: &str) -> String {
        run(Command::new("psql")
            .args(["-q", "-v", "ON_ERROR_STOP=1", "-d"])
            .arg(self.url("postgres"))
            .args(["-c", &format!("CREATE DATABASE \"{db}\"")]));
        self.url(db)
    }

    /// Runs SQL with `psql` and answers its unaligned output.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = Command::new("psql")
            .args(["-qAt", "-v", "ON_ERROR_STOP=1", "-d"])
            .arg(self.url(db))
            .args(["-c", sql])
            .output()
            .expect("psql");
        assert!(out.status.success(), "psql {sql}: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Stops the server at once (as a crash would: `-m immediate`).
    pub fn stop(&self) {
        self.pg_ctl("stop", &["-m", "immediate"]);
    }

    /// Starts a stopped server again on the same port.
    pub fn restart(&self) {
        let opts = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        self.pg_ctl("start", &["-o", &opts]);
    }

    fn pg_ctl(&self, verb: &str, extra: &[&str]) {
        let data = self.data_dir();
        let log = self.dir.path().join("log");
        self.run_pg(|c| {
            c.arg("pg_ctl")
                .args(["-w", "-t", "60", "-D"])
                .arg(&data)
                .args(extra)
                .arg("-l")
                .arg(&log)
                .arg(verb);
        });
    }

    /// The server's log so far (for a failing test's message).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    /// The directory of the server's files.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        let data = self.data_dir();
        let program = self.bin.join("pg_ctl");
        let mut c = if self.as_nobody {
            let mut c = Command::new("runuser");
            c.args(["-u", "nobody", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        };
        let _ = c
            .args(["-D"])
            .arg(&data)
            .args(["-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// True when this process runs as root (from `id -u`, no libc binding needed).
fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn run(c: &mut Command) {
    let out = c.output().unwrap_or_else(|e| panic!("{c:?}: {e}"));
    assert!(
        out.status.success(),
        "{c:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
