//! A bounded pool of PostgreSQL connections: at most `max` open at once (a semaphore), kept for
//! reuse while they work; a broken one is dropped and the next checkout opens a fresh one. No
//! statement runs past [`STATEMENT_TIMEOUT`] (set per connection), so a stuck database frees the
//! connection in bounded time.

use crate::pg::Pg;
use crate::Error;
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::Client;

/// The longest one statement may run (PostgreSQL's `statement_timeout`).
pub const STATEMENT_TIMEOUT_MS: u32 = 10_000;

/// The longest a transaction may sit idle on the server before it is ended.
pub const IDLE_IN_TRANSACTION_MS: u32 = 15_000;

/// How long opening a connection may take.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Opens one connection; its driver task runs until the connection ends.
pub async fn connect(pg: &Pg) -> Result<Client, Error> {
    let (client, connection) = pg
        .connect_with(|config| {
            config.connect_timeout(CONNECT_TIMEOUT);
            // A transaction left open (a broker frozen mid-commit) is ended by the server,
            // freeing the partition rows it locked; keepalives find a dead peer in about a
            // minute, not two hours.
            config.options(format!(
                "-c statement_timeout={STATEMENT_TIMEOUT_MS} -c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_MS}"
            ));
            config.keepalives_idle(std::time::Duration::from_secs(15));
            config.application_name("busbar");
        })
        .await?;
    tokio::spawn(async move {
        // Ends when the client is dropped or the server goes; the client then reports closed.
        let _ = connection.await;
    });
    Ok(client)
}

/// Connections for reads and admin work.
pub struct Pool {
    config: Pg,
    idle: Mutex<Vec<Client>>,
    permits: Arc<Semaphore>,
}

/// A checked-out connection, returned to the pool when dropped (unless it broke).
pub struct Conn<'a> {
    pool: &'a Pool,
    client: Option<Client>,
    _permit: OwnedSemaphorePermit,
}

impl std::ops::Deref for Conn<'_> {
    type Target = Client;
    fn deref(&self) -> &Client {
        self.client.as_ref().expect("held until drop")
    }
}

impl std::ops::DerefMut for Conn<'_> {
    fn deref_mut(&mut self) -> &mut Client {
        self.client.as_mut().expect("held until drop")
    }
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.client.take().filter(|c| !c.is_closed()) {
            self.pool
                .idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(c);
        }
    }
}

impl Pool {
    /// A pool of at most `max` connections to `config`'s database.
    pub fn new(config: Pg, max: usize) -> Pool {
        Pool {
            config,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(max.max(1))),
        }
    }

    /// A connection: an idle one, or a new one; waits while `max` are out.
    pub async fn get(&self) -> Result<Conn<'_>, Error> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::Config("the connection pool is closed".into()))?;
        let idle = loop {
            let c = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
            match c {
                Some(c) if c.is_closed() => continue,
                other => break other,
            }
        };
        let client = match idle {
            Some(c) => c,
            None => connect(&self.config).await?,
        };
        Ok(Conn {
            pool: self,
            client: Some(client),
            _permit: permit,
        })
    }
}
