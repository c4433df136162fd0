//! Throw-away PostgreSQL servers: finding the server binaries, a per-machine cached
//! `initdb` template, starting a copy of it on a free port as the `postgres` OS user
//! (when the tests run as root), stopping and restarting it, and making sure it is
//! stopped and its directory removed however the test process ends.
//!
//! Everything here is blocking `std::process` work, so it can be called from sync code
//! and from inside a tokio runtime alike (it then blocks that worker for the duration).

use std::fmt;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::TcpListener;
use std::os::unix::fs::{chown, MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};

use crate::tls::{self, TlsFiles};

/// Bumped whenever the template's `initdb` flags change, so a stale cached template
/// from an older kit is not reused.
const TEMPLATE_REV: u32 = 2;
/// Name of the settings file the kit writes into each data directory; `postgresql.conf`
/// includes it, so rewriting it (e.g. for a new port) never edits the stock file twice.
const KIT_CONF: &str = "pgduplex-testkit.conf";
const LOG_FILE: &str = "server.log";
const START_ATTEMPTS: usize = 5;

/// How a server is set up. `Default` is a plain-TCP server.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// Generate certificates (see [`crate::tls`]) and turn `ssl` on.
    pub tls: bool,
    /// Accept TCP connections only over TLS (`hostssl` lines only). Needs `tls`.
    pub require_ssl: bool,
    /// Extra `postgresql.conf` settings, written after the kit's own (so they win).
    /// Values are written verbatim: quote strings yourself, e.g. `("work_mem", "'8MB'")`.
    pub extra_conf: Vec<(String, String)>,
    /// Extra `pg_hba.conf` lines, placed before the kit's TCP lines (first match wins),
    /// e.g. `"hostssl all certuser 127.0.0.1/32 cert"`.
    pub extra_hba: Vec<String>,
}

/// The installed server binaries.
#[derive(Debug, Clone)]
struct PgBins {
    bindir: PathBuf,
    /// Full version as printed by `pg_ctl --version`, e.g. `15.14`.
    version: String,
}

/// The OS user the servers run as, when the tests run as root.
#[derive(Debug, Clone, Copy)]
struct OsUser {
    uid: u32,
    gid: u32,
}

/// One throw-away PostgreSQL server. Dropping it stops the server (`immediate`) and
/// removes its directory; if the process dies without dropping it (killed, or the server
/// lives in a static), a reaper process does the same.
pub struct PgServer {
    bins: PgBins,
    run_as: Option<OsUser>,
    data_dir: PathBuf,
    port: u16,
    password: String,
    require_ssl: bool,
    tls: Option<TlsFiles>,
    reaper: Mutex<Option<Reaper>>,
}

struct Reaper {
    child: Child,
    /// The write end of the reaper's stdin. Closing it (or the process dying) makes the
    /// reaper stop the server and remove the directory.
    stdin: Option<ChildStdin>,
}

impl fmt::Debug for PgServer {
    // Hand-written so the password never shows up in a `{:?}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgServer")
            .field("port", &self.port)
            .field("data_dir", &self.data_dir)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl PgServer {
    /// Starts a new server from the cached template (creating the template first if this
    /// machine has none yet). Blocking.
    pub fn start(options: ServerOptions) -> anyhow::Result<PgServer> {
        if options.require_ssl && !options.tls {
            bail!("ServerOptions::require_ssl needs ServerOptions::tls");
        }
        let bins = pg_bins()?.clone();
        let run_as = server_os_user()?;
        let template = template_dir(&bins, run_as)?;

        let base = base_dir();
        let data_dir = tempfile::Builder::new()
            .prefix("pgdx-")
            .tempdir_in(&base)
            .with_context(|| format!("creating a data directory under {}", base.display()))?
            .keep();
        let mut server = PgServer {
            bins,
            run_as,
            data_dir,
            port: 0,
            password: random_hex(16)?,
            require_ssl: options.require_ssl,
            tls: None,
            reaper: Mutex::new(None),
        };
        // From here on, `server`'s Drop cleans up if anything below fails.
        if let Some(user) = run_as {
            chown(&server.data_dir, Some(user.uid), Some(user.gid))
                .context("handing the data directory to the postgres user")?;
        }
        server.spawn_reaper()?;
        let out = Command::new("cp")
            .arg("-a")
            .arg(template.join("."))
            .arg(&server.data_dir)
            .stdin(Stdio::null())
            .output()
            .context("running cp")?;
        check_output("cp -a <template>", &out)?;

        if options.tls {
            let files = tls::generate(&server.data_dir)?;
            if let Some(user) = run_as {
                // The server reads these as the postgres user and insists its key is
                // 0600 and owned by it.
                for p in [&files.server_cert, &files.server_key, &files.ca_cert] {
                    chown(p, Some(user.uid), Some(user.gid))
                        .with_context(|| format!("chown {}", p.display()))?;
                }
            }
            server.tls = Some(files);
        }
        server.write_hba(&options)?;
        let include = format!("\ninclude_if_exists = '{KIT_CONF}'\n");
        append_file(&server.data_dir.join("postgresql.conf"), &include)?;

        let mut last_err = None;
        for _ in 0..START_ATTEMPTS {
            server.port = free_port()?;
            server.write_conf(&options)?;
            let log_start = fs::metadata(server.log_file())
                .map(|m| m.len())
                .unwrap_or(0);
            match server.pg_ctl_start() {
                Ok(()) => {
                    last_err = None;
                    break;
                }
                Err(e) => {
                    // Another process may have taken the port between our probe and the
                    // server's bind: retry on a new port; any other failure is final.
                    let log = server.log_since(log_start);
                    if log.contains("could not bind") || log.contains("Address already in use") {
                        last_err = Some(e);
                        continue;
                    }
                    return Err(e.context(format!("server log tail:\n{log}")));
                }
            }
        }
        if let Some(e) = last_err {
            return Err(e.context("no free port after several attempts"));
        }
        server
            .run_sql(
                "postgres",
                &format!("ALTER ROLE postgres PASSWORD '{}'", server.password),
            )
            .context("setting the superuser password")?;
        Ok(server)
    }

    /// The TCP port, the same across `stop`/`start_again`.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The TCP host the server listens on: always `127.0.0.1`. (`localhost` resolves to
    /// it too, which TLS tests use for `verify-full`.)
    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    /// The random password of the `postgres` superuser.
    pub fn superuser_password(&self) -> &str {
        &self.password
    }

    /// `host:port` for messages: unlike URLs it carries no password.
    pub fn display_addr(&self) -> String {
        format!("{}:{}", self.host(), self.port)
    }

    /// A `postgres://` URL for the superuser and database `db`. `sslmode=disable`, or
    /// `sslmode=require` when the server accepts TLS connections only.
    pub fn url(&self, db: &str) -> String {
        self.url_for("postgres", &self.password, db)
    }

    /// A `postgres://` URL for any user, password and database (all percent-encoded),
    /// with the same `sslmode` rule as [`PgServer::url`].
    pub fn url_for(&self, user: &str, password: &str, db: &str) -> String {
        let sslmode = if self.require_ssl {
            "require"
        } else {
            "disable"
        };
        self.url_with(
            user,
            password,
            self.host(),
            db,
            &format!("sslmode={sslmode}"),
        )
    }

    /// A `postgres://` URL with a chosen host (e.g. `localhost` for `verify-full`) and a
    /// raw query string (e.g. `sslmode=verify-full&sslrootcert=/path`), which is used
    /// verbatim.
    pub fn url_with(
        &self,
        user: &str,
        password: &str,
        host: &str,
        db: &str,
        query: &str,
    ) -> String {
        let mut url = format!(
            "postgres://{}:{}@{}:{}/{}",
            percent_encode(user),
            percent_encode(password),
            host,
            self.port,
            percent_encode(db)
        );
        if !query.is_empty() {
            url.push('?');
            url.push_str(query);
        }
        url
    }

    /// The data directory (also the unix socket directory).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The unix socket directory: the data directory itself.
    pub fn socket_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The server's log file.
    pub fn log_file(&self) -> PathBuf {
        self.data_dir.join(LOG_FILE)
    }

    /// The certificate files, when the server was started with `tls`.
    pub fn tls_files(&self) -> Option<&TlsFiles> {
        self.tls.as_ref()
    }

    /// Path of a server binary such as `pg_dump` or `psql`.
    pub fn bin(&self, name: &str) -> PathBuf {
        self.bins.bindir.join(name)
    }

    /// The server version as `pg_ctl --version` prints it, e.g. `15.14`.
    pub fn version(&self) -> &str {
        &self.bins.version
    }

    /// A `psql` command connected as `postgres` to `db` over the unix socket (trust
    /// auth, so no password and no TLS), with `-X` and `ON_ERROR_STOP=1`. Add `-c` or
    /// pipe a script to stdin.
    pub fn psql_command(&self, db: &str) -> Command {
        let mut cmd = Command::new(self.bin("psql"));
        clear_pg_env(&mut cmd);
        cmd.arg("-X")
            .arg("-q")
            .args(["-v", "ON_ERROR_STOP=1"])
            .arg("-h")
            .arg(&self.data_dir)
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-U", "postgres", "-d", db]);
        cmd
    }

    /// Runs SQL through `psql` over the unix socket and returns its unaligned, tuples-only
    /// output. Blocking; for administration (creating databases, roles) where opening a
    /// TCP connection would need TLS on `require_ssl` servers.
    pub fn run_sql(&self, db: &str, sql: &str) -> anyhow::Result<String> {
        let mut child = self
            .psql_command(db)
            .args(["-A", "-t"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("spawning psql")?;
        // SQL goes through stdin, not argv, so passwords in it never show up in `ps`.
        let mut stdin = child.stdin.take().context("psql stdin")?;
        stdin
            .write_all(sql.as_bytes())
            .context("writing SQL to psql")?;
        drop(stdin);
        let out = child.wait_with_output().context("waiting for psql")?;
        if !out.status.success() {
            bail!(
                "psql on {}/{db} failed ({}): {}",
                self.display_addr(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_string())
    }

    /// Stops the server (`fast` mode: clients are disconnected, a shutdown checkpoint is
    /// written). The data directory stays for [`PgServer::start_again`].
    pub fn stop(&self) -> anyhow::Result<()> {
        self.pg_ctl_stop("fast")
    }

    /// Stops the server the way a crash would (`immediate`: no checkpoint, crash recovery
    /// on the next start).
    pub fn stop_immediate(&self) -> anyhow::Result<()> {
        self.pg_ctl_stop("immediate")
    }

    /// Starts a stopped server again with the same data directory and port. Fails if the
    /// port was taken meanwhile.
    pub fn start_again(&self) -> anyhow::Result<()> {
        self.pg_ctl_start()
            .with_context(|| format!("server log tail:\n{}", self.log_tail()))
    }

    /// `stop` then `start_again`.
    pub fn restart(&self) -> anyhow::Result<()> {
        self.stop()?;
        self.start_again()
    }

    /// Whether the postmaster is running (`pg_ctl status`).
    pub fn is_running(&self) -> bool {
        self.pg_ctl()
            .arg("status")
            .arg("-D")
            .arg(&self.data_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    fn pg_ctl(&self) -> Command {
        self.server_command(self.bin("pg_ctl"))
    }

    /// A command for a server binary, run as the server's OS user. `pg_ctl` and `initdb`
    /// refuse to run as root.
    fn server_command(&self, program: PathBuf) -> Command {
        server_command(program, self.run_as)
    }

    fn pg_ctl_start(&self) -> anyhow::Result<()> {
        let out = self
            .pg_ctl()
            .arg("start")
            .arg("-D")
            .arg(&self.data_dir)
            .arg("-l")
            .arg(self.log_file())
            .args(["-w", "-t", "60", "-s"])
            .output()
            .context("running pg_ctl start")?;
        check_output(&format!("pg_ctl start ({})", self.display_addr()), &out)
    }

    fn pg_ctl_stop(&self, mode: &str) -> anyhow::Result<()> {
        let out = self
            .pg_ctl()
            .arg("stop")
            .arg("-D")
            .arg(&self.data_dir)
            .args(["-m", mode, "-w", "-t", "60", "-s"])
            .output()
            .context("running pg_ctl stop")?;
        check_output(&format!("pg_ctl stop ({})", self.display_addr()), &out)
    }

    /// Spawns the reaper: a shell waiting for its stdin to close, then stopping the server
    /// and removing the directory. Only this process holds the pipe's write end (std
    /// opens it close-on-exec), so it closes exactly when this process exits or drops
    /// the server, however that happens.
    fn spawn_reaper(&self) -> anyhow::Result<()> {
        let script =
            r#"read _ignored; "$0" stop -D "$1" -m immediate -w -s >/dev/null 2>&1; rm -rf "$1""#;
        let mut cmd = self.server_command(PathBuf::from("/bin/sh"));
        cmd.arg("-c")
            .arg(script)
            .arg(self.bin("pg_ctl"))
            .arg(&self.data_dir)
            .stdin(Stdio::piped())
            // Not our stdout/stderr: `cargo test` waits for those to close.
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().context("spawning the reaper")?;
        let stdin = child.stdin.take();
        *self.reaper.lock().unwrap_or_else(|e| e.into_inner()) = Some(Reaper { child, stdin });
        Ok(())
    }

    fn write_conf(&self, options: &ServerOptions) -> anyhow::Result<()> {
        let mut conf = String::new();
        let dir = self.data_dir.display().to_string();
        let settings: Vec<(&str, String)> = vec![
            ("listen_addresses", "'127.0.0.1'".into()),
            ("port", self.port.to_string()),
            ("unix_socket_directories", format!("'{dir}'")),
            ("max_connections", "200".into()),
            ("shared_buffers", "'64MB'".into()),
            // Durability is irrelevant for throw-away servers, speed is not.
            ("fsync", "off".into()),
            ("synchronous_commit", "off".into()),
            ("full_page_writes", "off".into()),
            ("password_encryption", "'scram-sha-256'".into()),
            ("logging_collector", "off".into()),
            ("log_min_messages", "warning".into()),
            ("log_line_prefix", "'%m [%p] %q%u@%d '".into()),
        ];
        for (k, v) in &settings {
            conf.push_str(&format!("{k} = {v}\n"));
        }
        if self.tls.is_some() {
            conf.push_str(&format!(
                "ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\nssl_ca_file = '{}'\n",
                tls::SERVER_CERT,
                tls::SERVER_KEY,
                tls::CA_CERT
            ));
        }
        for (k, v) in &options.extra_conf {
            conf.push_str(&format!("{k} = {v}\n"));
        }
        self.write_server_file(KIT_CONF, &conf)
    }

    fn write_hba(&self, options: &ServerOptions) -> anyhow::Result<()> {
        let host = if self.require_ssl { "hostssl" } else { "host" };
        let mut hba = String::from("local all all trust\n");
        for line in &options.extra_hba {
            hba.push_str(line);
            hba.push('\n');
        }
        hba.push_str(&format!("{host} all all 127.0.0.1/32 scram-sha-256\n"));
        hba.push_str(&format!("{host} all all ::1/128 scram-sha-256\n"));
        self.write_server_file("pg_hba.conf", &hba)
    }

    /// Writes a file in the data directory, owned by the server's OS user.
    fn write_server_file(&self, name: &str, contents: &str) -> anyhow::Result<()> {
        let path = self.data_dir.join(name);
        fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
        if let Some(user) = self.run_as {
            chown(&path, Some(user.uid), Some(user.gid))
                .with_context(|| format!("chown {}", path.display()))?;
        }
        Ok(())
    }

    /// The last ~4 KB of the server log, for error messages.
    fn log_tail(&self) -> String {
        let len = fs::metadata(self.log_file()).map(|m| m.len()).unwrap_or(0);
        self.log_since(len.saturating_sub(4096))
    }

    /// The server log from byte `offset` on (what one start attempt wrote).
    fn log_since(&self, offset: u64) -> String {
        let mut buf = Vec::new();
        if let Ok(mut f) = fs::File::open(self.log_file()) {
            if f.seek(SeekFrom::Start(offset)).is_ok() {
                let _ = f.read_to_end(&mut buf);
            }
        }
        String::from_utf8_lossy(&buf).into_owned()
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        // Best effort and silent: the reaper below repeats both steps anyway.
        let _ = self
            .pg_ctl()
            .arg("stop")
            .arg("-D")
            .arg(&self.data_dir)
            .args(["-m", "immediate", "-w", "-s"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = fs::remove_dir_all(&self.data_dir);
        let reaper = self
            .reaper
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(mut reaper) = reaper {
            drop(reaper.stdin.take());
            let _ = reaper.child.wait();
        }
    }
}

fn check_output(what: &str, out: &Output) -> anyhow::Result<()> {
    if out.status.success() {
        return Ok(());
    }
    bail!(
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim(),
        String::from_utf8_lossy(&out.stdout).trim()
    )
}

fn server_command(program: PathBuf, run_as: Option<OsUser>) -> Command {
    let mut cmd = Command::new(program);
    clear_pg_env(&mut cmd);
    cmd.stdin(Stdio::null())
        // The test's working directory may not be readable by the postgres user.
        .current_dir("/")
        // Own process group: a Ctrl-C on `cargo test` must not kill a half-started
        // server or the reaper before it has done its work.
        .process_group(0);
    if let Some(user) = run_as {
        // std drops root's supplementary groups when it changes the uid.
        cmd.uid(user.uid).gid(user.gid);
    }
    cmd
}

/// Environment variables that would redirect the binaries to another server or change
/// their behaviour.
fn clear_pg_env(cmd: &mut Command) {
    for var in [
        "PGDATA",
        "PGHOST",
        "PGHOSTADDR",
        "PGPORT",
        "PGUSER",
        "PGDATABASE",
        "PGPASSWORD",
        "PGPASSFILE",
        "PGSERVICE",
        "PGSERVICEFILE",
        "PGSSLMODE",
        "PGOPTIONS",
        "PGTZ",
        "PGDATESTYLE",
        "PGCLIENTENCODING",
    ] {
        cmd.env_remove(var);
    }
}

fn append_file(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("appending to {}", path.display()))
}

/// A port that was free a moment ago. The server may still lose a race for it to another
/// process; `PgServer::start` retries then.
fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("probing for a free port")?;
    Ok(listener.local_addr()?.port())
}

fn random_hex(bytes: usize) -> anyhow::Result<String> {
    let mut buf = vec![0u8; bytes];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .context("reading /dev/urandom")?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn percent_encode(s: &str) -> String {
    /// Everything but RFC 3986's unreserved characters.
    const RESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(s, RESERVED).to_string()
}

/// The binaries, found once per process: `PGDUPLEX_PG_BINDIR`, else `pg_config
/// --bindir`, else the newest `/usr/lib/postgresql/*/bin` (Debian's layout).
fn pg_bins() -> anyhow::Result<&'static PgBins> {
    static BINS: OnceLock<PgBins> = OnceLock::new();
    if let Some(b) = BINS.get() {
        return Ok(b);
    }
    let bindir = find_bindir()?;
    let out = Command::new(bindir.join("pg_ctl"))
        .arg("--version")
        .output()
        .with_context(|| format!("running {}/pg_ctl --version", bindir.display()))?;
    check_output("pg_ctl --version", &out)?;
    // "pg_ctl (PostgreSQL) 15.14 (Debian 15.14-0+deb12u1)"
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text
        .split_whitespace()
        .nth(2)
        .with_context(|| format!("unexpected pg_ctl --version output: {text}"))?
        .to_string();
    Ok(BINS.get_or_init(|| PgBins { bindir, version }))
}

fn find_bindir() -> anyhow::Result<PathBuf> {
    let has_pg_ctl = |d: &Path| d.join("pg_ctl").is_file() && d.join("initdb").is_file();
    if let Some(dir) = std::env::var_os("PGDUPLEX_PG_BINDIR") {
        let dir = PathBuf::from(dir);
        if !has_pg_ctl(&dir) {
            bail!("PGDUPLEX_PG_BINDIR={} has no pg_ctl/initdb", dir.display());
        }
        return Ok(dir);
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        if out.status.success() {
            let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            // Debian's pg_config may come from libpq-dev without a server next to it.
            if has_pg_ctl(&dir) {
                return Ok(dir);
            }
        }
    }
    let mut found: Vec<(Vec<u32>, PathBuf)> = Vec::new();
    if let Ok(entries) = fs::read_dir("/usr/lib/postgresql") {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let bin = e.path().join("bin");
            let key: Option<Vec<u32>> = name.split('.').map(|p| p.parse().ok()).collect();
            if let (Some(key), true) = (key, has_pg_ctl(&bin)) {
                found.push((key, bin));
            }
        }
    }
    found.sort();
    found.pop().map(|(_, dir)| dir).context(
        "no PostgreSQL server binaries: set PGDUPLEX_PG_BINDIR, or install a server \
         (pg_config --bindir, /usr/lib/postgresql/*/bin)",
    )
}

/// The effective uid of this process (the owner of `/proc/self`), without `libc`.
fn current_uid() -> anyhow::Result<u32> {
    if let Ok(meta) = fs::metadata("/proc/self") {
        return Ok(meta.uid());
    }
    let out = Command::new("id")
        .arg("-u")
        .output()
        .context("running id -u")?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .context("parsing id -u")
}

/// `Some(postgres)` when running as root (initdb and the server refuse root), else
/// `None`: the servers run as the current user.
fn server_os_user() -> anyhow::Result<Option<OsUser>> {
    if current_uid()? != 0 {
        return Ok(None);
    }
    let passwd = fs::read_to_string("/etc/passwd").context("reading /etc/passwd")?;
    for line in passwd.lines() {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() >= 4 && fields[0] == "postgres" {
            let uid = fields[2].parse().context("postgres uid in /etc/passwd")?;
            let gid = fields[3].parse().context("postgres gid in /etc/passwd")?;
            return Ok(Some(OsUser { uid, gid }));
        }
    }
    bail!("running as root, but there is no `postgres` user in /etc/passwd to run servers as")
}

/// Where data directories and the template live: `PGDUPLEX_TESTKIT_DIR` if set, else
/// `/dev/shm` when it is a writable directory, else `/tmp`.
///
/// `/dev/shm` because it is memory-backed: copying the template there is ~8x faster than
/// to a disk that concurrent builds keep busy, and servers never wait on disk I/O. The
/// path must stay short: the unix socket lives inside the data directory and socket
/// paths are limited to ~107 bytes, which is why TMPDIR (possibly long) is not used.
fn base_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PGDUPLEX_TESTKIT_DIR") {
        return PathBuf::from(dir);
    }
    let shm = Path::new("/dev/shm");
    let writable = fs::metadata(shm)
        .map(|m| m.is_dir() && m.permissions().mode() & 0o1777 == 0o1777)
        .unwrap_or(false);
    if writable {
        shm.to_path_buf()
    } else {
        PathBuf::from("/tmp")
    }
}

/// The cached `initdb` output for this server version and test user, made on first use.
/// Concurrent test processes may each run initdb once into a private directory; the
/// first atomic rename wins and the others throw theirs away, so nobody ever sees a
/// half-written template.
fn template_dir(bins: &PgBins, run_as: Option<OsUser>) -> anyhow::Result<PathBuf> {
    // One initdb per process at most, even when two servers start on two threads.
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());

    let uid = current_uid()?;
    let name = format!(
        "pgduplex-testkit-template-v{TEMPLATE_REV}-{}-{uid}",
        bins.version
    );
    let dir = base_dir().join(&name);
    if dir.join("PG_VERSION").is_file() {
        return Ok(dir);
    }
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let tmp = base_dir().join(format!("{name}.tmp-{}-{nanos}", std::process::id()));
    let out = server_command(bins.bindir.join("initdb"), run_as)
        .arg("-D")
        .arg(&tmp)
        .args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
            "--no-instructions",
            // 1 MB WAL segments instead of 16: a smaller template is faster to copy.
            "--wal-segsize=1",
        ])
        .output()
        .context("running initdb")?;
    if let Err(e) = check_output("initdb", &out) {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    // Copies get their own mode from the template: keep it what the server demands.
    let _ = fs::set_permissions(&tmp, fs::Permissions::from_mode(0o700));
    if fs::rename(&tmp, &dir).is_err() {
        // Lost the race to another process: use its template.
        let _ = fs::remove_dir_all(&tmp);
        if !dir.join("PG_VERSION").is_file() {
            bail!("template directory {} is unusable", dir.display());
        }
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::percent_encode;

    #[test]
    fn percent_encoding_keeps_unreserved_only() {
        assert_eq!(percent_encode("a-b_c.d~9"), "a-b_c.d~9");
        assert_eq!(percent_encode("p@ss:w/rd%"), "p%40ss%3Aw%2Frd%25");
        assert_eq!(percent_encode("é"), "%C3%A9");
    }
}
