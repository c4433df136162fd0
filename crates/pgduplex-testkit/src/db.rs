//! Fresh databases for tests: the two servers ("left" and "right") shared by every test
//! of a test process, a [`TestPair`] with one new uniquely named database on each side,
//! dedicated pairs for tests that stop or reconfigure their servers, and role helpers.
//!
//! Administration (CREATE/DROP DATABASE, roles) goes through `psql` over the unix socket,
//! so it works on TLS-only servers too and can run synchronously in `Drop`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::Context;
use tokio_postgres::{Client, NoTls};

use crate::server::{PgServer, ServerOptions};

/// The two servers shared by all tests of this process, started on first use (both in
/// parallel). Never dropped: the servers' reapers stop them and remove their directories
/// when the process exits. Tests must not stop or reconfigure them: use
/// [`TestPair::dedicated`] for that. Blocking on first call; panics if they can't start.
pub fn shared_pair() -> &'static (PgServer, PgServer) {
    static PAIR: OnceLock<(PgServer, PgServer)> = OnceLock::new();
    PAIR.get_or_init(|| {
        start_pair(ServerOptions::default())
            .unwrap_or_else(|e| panic!("starting the shared test servers: {e:#}"))
    })
}

/// Starts two servers with the same options, in parallel.
pub fn start_pair(options: ServerOptions) -> anyhow::Result<(PgServer, PgServer)> {
    std::thread::scope(|s| {
        let left = s.spawn(|| PgServer::start(options.clone()).context("starting left server"));
        let right = PgServer::start(options.clone()).context("starting right server");
        let left = left
            .join()
            .map_err(|_| anyhow::anyhow!("left server start panicked"))?;
        Ok((left?, right?))
    })
}

/// A name no other call in this process returns: `<prefix>_<pid>_<n>`. Use it for
/// roles, which are cluster-wide and so shared by all tests on a shared server.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}_{}_{n}", std::process::id())
}

/// Quotes an SQL identifier: `my "t"` becomes `"my ""t"""`.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes an SQL string literal: `it's` becomes `'it''s'` (standard_conforming_strings
/// is on, so backslashes need nothing).
pub fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

enum ServerRef {
    Shared(&'static PgServer),
    Owned(Arc<PgServer>),
}

/// One database on one server, dropped (`WITH (FORCE)`) when this value is dropped,
/// together with the roles made through [`TestDb::create_role`].
pub struct TestDb {
    server: ServerRef,
    name: String,
    roles: Mutex<Vec<String>>,
}

impl std::fmt::Debug for TestDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TestDb({}/{})", self.server().display_addr(), self.name)
    }
}

impl TestDb {
    /// Creates a new database with a unique name on `server`. Blocking (runs `psql`).
    fn create(server: ServerRef, name: String) -> anyhow::Result<TestDb> {
        let srv: &PgServer = match &server {
            ServerRef::Shared(s) => s,
            ServerRef::Owned(s) => s,
        };
        srv.run_sql(
            "postgres",
            &format!("CREATE DATABASE {}", quote_ident(&name)),
        )
        .with_context(|| format!("creating database {name} on {}", srv.display_addr()))?;
        Ok(TestDb {
            server,
            name,
            roles: Mutex::new(Vec::new()),
        })
    }

    /// The server this database lives on.
    pub fn server(&self) -> &PgServer {
        match &self.server {
            ServerRef::Shared(s) => s,
            ServerRef::Owned(s) => s,
        }
    }

    /// The database name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `host:port/db`, for messages (no password).
    pub fn display(&self) -> String {
        format!("{}/{}", self.server().display_addr(), self.name)
    }

    /// Superuser URL of this database (see [`PgServer::url`]).
    pub fn url(&self) -> String {
        self.server().url(&self.name)
    }

    /// URL of this database for another user.
    pub fn url_for(&self, user: &str, password: &str) -> String {
        self.server().url_for(user, password, &self.name)
    }

    /// A superuser connection over TCP without TLS (so not for `require_ssl` servers);
    /// its connection task is spawned on the current tokio runtime.
    pub async fn client(&self) -> anyhow::Result<Client> {
        self.connect_url(&self.url()).await
    }

    /// A connection as another user (e.g. one made with [`TestDb::create_role`]).
    pub async fn client_as(&self, user: &str, password: &str) -> anyhow::Result<Client> {
        self.connect_url(&self.url_for(user, password)).await
    }

    async fn connect_url(&self, url: &str) -> anyhow::Result<Client> {
        let (client, connection) = tokio_postgres::connect(url, NoTls)
            .await
            .with_context(|| format!("connecting to {}", self.display()))?;
        tokio::spawn(async move {
            // A closed connection surfaces as an error on the client's next call.
            let _ = connection.await;
        });
        Ok(client)
    }

    /// Runs one or more statements (`batch_execute`) on a new superuser connection.
    pub async fn execute(&self, sql: &str) -> anyhow::Result<()> {
        let client = self.client().await?;
        client
            .batch_execute(sql)
            .await
            .with_context(|| format!("executing SQL on {}", self.display()))
    }

    /// Creates a login role with a password and extra attributes written verbatim after
    /// `WITH LOGIN PASSWORD '...'` (e.g. `"REPLICATION"`, `"SUPERUSER"`, or `""`). Roles
    /// are cluster-wide: pick a name with [`unique_name`] so concurrent tests on a shared
    /// server don't collide. The role is dropped (best effort) after the database.
    pub async fn create_role(&self, name: &str, password: &str, attrs: &str) -> anyhow::Result<()> {
        let sql = format!(
            "CREATE ROLE {} WITH LOGIN PASSWORD {} {attrs}",
            quote_ident(name),
            quote_literal(password)
        );
        let client = self.client().await?;
        client
            .batch_execute(&sql)
            .await
            .with_context(|| format!("creating role {name} on {}", self.display()))?;
        self.roles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(name.to_string());
        Ok(())
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let roles = std::mem::take(self.roles.get_mut().unwrap_or_else(|e| e.into_inner()));
        let server = self.server();
        let mut sql = format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE);\n",
            quote_ident(&self.name)
        );
        for role in roles {
            // A role that still owns objects elsewhere stays; that is harmless.
            sql.push_str(&format!(
                "DO $$BEGIN DROP ROLE IF EXISTS {}; EXCEPTION WHEN OTHERS THEN NULL; END$$;\n",
                quote_ident(&role)
            ));
        }
        // A server the test left stopped needs no cleanup: its directory goes away with
        // it. Checked only on failure, to keep the common path to one process.
        if let Err(e) = server.run_sql("postgres", &sql) {
            if !server.is_running() {
                return;
            }
            eprintln!("pgduplex-testkit: dropping {}: {e:#}", self.display());
        }
    }
}

/// Creates the same-named database on both servers, in parallel. Blocking.
fn create_pair(left: ServerRef, right: ServerRef) -> anyhow::Result<TestPair> {
    let name = unique_name("pgdx");
    std::thread::scope(|s| {
        let left_name = name.clone();
        let left = s.spawn(move || TestDb::create(left, left_name));
        let right = TestDb::create(right, name);
        let left = left
            .join()
            .map_err(|_| anyhow::anyhow!("creating the left database panicked"))?;
        Ok(TestPair {
            left: left?,
            right: right?,
        })
    })
}

/// A fresh database on each of two servers: `left` and `right` carry the same name.
#[derive(Debug)]
pub struct TestPair {
    pub left: TestDb,
    pub right: TestDb,
}

impl TestPair {
    /// New databases on the shared servers (starting them on first use). Async; the
    /// blocking work runs on tokio's blocking pool. Panics with context on failure: it is
    /// test setup.
    pub async fn new() -> TestPair {
        Self::try_new()
            .await
            .unwrap_or_else(|e| panic!("TestPair::new: {e:#}"))
    }

    /// [`TestPair::new`] returning the error instead of panicking.
    pub async fn try_new() -> anyhow::Result<TestPair> {
        tokio::task::spawn_blocking(|| {
            let (left, right) = shared_pair();
            create_pair(ServerRef::Shared(left), ServerRef::Shared(right))
        })
        .await
        .context("TestPair setup task")?
    }

    /// Two new servers of this pair's own, started with `options`, with a new database
    /// on each. The servers are stopped and removed when the pair is dropped, so tests
    /// may stop, restart and reconfigure them (`pair.left.server().stop()`). Panics on
    /// failure.
    pub async fn dedicated(options: ServerOptions) -> TestPair {
        Self::try_dedicated(options)
            .await
            .unwrap_or_else(|e| panic!("TestPair::dedicated: {e:#}"))
    }

    /// [`TestPair::dedicated`] returning the error instead of panicking.
    pub async fn try_dedicated(options: ServerOptions) -> anyhow::Result<TestPair> {
        tokio::task::spawn_blocking(move || {
            let (left, right) = start_pair(options)?;
            create_pair(
                ServerRef::Owned(Arc::new(left)),
                ServerRef::Owned(Arc::new(right)),
            )
        })
        .await
        .context("TestPair setup task")?
    }

    /// Creates the same role on both sides (see [`TestDb::create_role`]).
    pub async fn create_role(&self, name: &str, password: &str, attrs: &str) -> anyhow::Result<()> {
        self.left.create_role(name, password, attrs).await?;
        self.right.create_role(name, password, attrs).await
    }

    /// Runs the same SQL on both sides.
    pub async fn execute_both(&self, sql: &str) -> anyhow::Result<()> {
        self.left.execute(sql).await?;
        self.right.execute(sql).await
    }
}
