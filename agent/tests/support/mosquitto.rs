//! A real Mosquitto 2 broker run as a child process on a free loopback port, with its config,
//! password file, persistence and log in a temp dir.
//!
//! Run as root, Mosquitto would drop privileges to the `mosquitto` user and could then not write
//! its persistence file in the root-owned 0700 temp dir; the config says `user root`, which keeps
//! it as the invoking user (a no-op when the tests do not run as root).

use std::fmt::Write as _;
use std::fs::{self, OpenOptions};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::{free_port, poll_until, BIND_ATTEMPTS};

/// Where Debian installs the broker.
pub const MOSQUITTO_BIN: &str = "/usr/sbin/mosquitto";

/// Config file name inside the broker's temp dir.
const CONFIG_FILE: &str = "mosquitto.conf";

/// Log file name inside the broker's temp dir (stdout and stderr of every run, appended).
const LOG_FILE: &str = "mosquitto.log";

/// How long a start or a stop may take before the harness gives up.
pub const START_TIMEOUT: Duration = Duration::from_secs(5);

/// TLS settings of the listener.
#[derive(Debug, Clone)]
pub struct MosquittoTls {
    /// CA certificate that signs the server certificate (and accepted client certificates).
    pub ca: PathBuf,
    /// Server certificate, valid for `localhost`.
    pub cert: PathBuf,
    /// Server private key.
    pub key: PathBuf,
    /// Require a client certificate signed by `ca` and use its CN as the username.
    pub require_certificate: bool,
}

/// How to configure the broker. The default is plain TCP, anonymous, no persistence.
#[derive(Debug, Clone, Default)]
pub struct MosquittoOptions {
    /// Username/password pairs; when not empty, anonymous clients are refused.
    pub users: Vec<(String, String)>,
    /// TLS on the listener (then the URL is `mqtts://localhost:PORT`).
    pub tls: Option<MosquittoTls>,
    /// Keep retained messages and persistent sessions across [`Mosquitto::restart`].
    pub persistence: bool,
    /// Listen on this port (e.g. one an agent already tries to reach) instead of a free one.
    pub port: Option<u16>,
}

/// A running Mosquitto broker; killed when dropped.
#[derive(Debug)]
pub struct Mosquitto {
    dir: TempDir,
    port: u16,
    tls: bool,
    child: Option<Child>,
    started_in: Duration,
}

impl Mosquitto {
    /// Starts a broker on a free loopback port and waits until it accepts connections.
    ///
    /// # Panics
    /// If mosquitto is not installed, or it does not come up within [`START_TIMEOUT`] (the
    /// message includes its log), or every one of [`BIND_ATTEMPTS`] ports was taken.
    pub fn start(opts: MosquittoOptions) -> Mosquitto {
        let bin = mosquitto_bin();
        let dir = tempfile::tempdir().expect("create a temp dir for mosquitto");
        if !opts.users.is_empty() {
            write_password_file(&dir.path().join("passwd"), &opts.users);
        }
        let mut last_log = String::new();
        for _ in 0..BIND_ATTEMPTS {
            let port = opts.port.unwrap_or_else(free_port);
            fs::write(
                dir.path().join(CONFIG_FILE),
                config(dir.path(), port, &opts),
            )
            .expect("write mosquitto.conf");
            match spawn(&bin, dir.path(), port) {
                Ok((child, started_in)) => {
                    return Mosquitto {
                        dir,
                        port,
                        tls: opts.tls.is_some(),
                        child: Some(child),
                        started_in,
                    }
                }
                Err(log) if log.contains("Address already in use") => last_log = log,
                Err(log) => panic!("mosquitto did not start on port {port}; log:\n{log}"),
            }
        }
        panic!("mosquitto found no free port in {BIND_ATTEMPTS} attempts; last log:\n{last_log}")
    }

    /// The loopback port the broker listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `mqtt://127.0.0.1:PORT`, or `mqtts://localhost:PORT` with TLS (the certificate names
    /// `localhost`).
    pub fn url(&self) -> String {
        if self.tls {
            format!("mqtts://localhost:{}", self.port)
        } else {
            format!("mqtt://127.0.0.1:{}", self.port)
        }
    }

    /// How long the last (re)start took until the port accepted connections.
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// Whether the broker process is running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The broker's log so far (all restarts), for failure messages.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join(LOG_FILE)).unwrap_or_default()
    }

    /// Stops the broker gracefully (SIGTERM: it saves its persistence file) and waits for it.
    ///
    /// # Panics
    /// If it has not exited within [`START_TIMEOUT`] (it is then killed).
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("run kill -TERM");
        assert!(
            status.success(),
            "kill -TERM {} failed: {status}",
            child.id()
        );
        let exited = poll_until(START_TIMEOUT, || matches!(child.try_wait(), Ok(Some(_))));
        if !exited {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "mosquitto ignored SIGTERM for {START_TIMEOUT:?}; log:\n{}",
                self.log()
            );
        }
    }

    /// Kills the broker (SIGKILL: nothing is saved) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the broker gracefully if it runs, then starts it again on the same port with the
    /// same config and persistence directory.
    ///
    /// # Panics
    /// If it does not come up again within [`START_TIMEOUT`].
    pub fn restart(&mut self) {
        self.stop();
        match spawn(&mosquitto_bin(), self.dir.path(), self.port) {
            Ok((child, started_in)) => {
                self.child = Some(child);
                self.started_in = started_in;
            }
            Err(log) => panic!(
                "mosquitto did not restart on port {}; log:\n{log}",
                self.port
            ),
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Spawns the broker in `dir` and waits until it logs that it runs and `port` accepts
/// connections: (child, time it took). On failure the child is reaped and the log returned.
fn spawn(bin: &Path, dir: &Path, port: u16) -> Result<(Child, Duration), String> {
    let started = Instant::now();
    let log_path = dir.join(LOG_FILE);
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .expect("open the mosquitto log file");
    let log_start = log.metadata().map(|m| m.len()).unwrap_or(0) as usize;
    let mut child = Command::new(bin)
        .arg("-c")
        .arg(dir.join(CONFIG_FILE))
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone the log file handle"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let this_run = || {
        let log = fs::read(&log_path).unwrap_or_default();
        String::from_utf8_lossy(log.get(log_start..).unwrap_or_default()).into_owned()
    };
    let mut exited = false;
    let up = poll_until(START_TIMEOUT, || {
        if matches!(child.try_wait(), Ok(Some(_))) {
            exited = true;
            return true;
        }
        // Our own "running" line, not only an open port: another process may hold the port.
        this_run().contains(" running")
            && TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
    });
    if up && !exited {
        return Ok((child, started.elapsed()));
    }
    let _ = child.kill();
    let _ = child.wait();
    Err(this_run())
}

fn mosquitto_bin() -> PathBuf {
    require_installed(Path::new(MOSQUITTO_BIN))
}

/// Returns `bin` if it exists.
///
/// # Panics
/// With "mosquitto not installed: apt-get install -y mosquitto" if it does not, so that tests
/// needing the broker fail instead of passing silently.
pub fn require_installed(bin: &Path) -> PathBuf {
    assert!(
        bin.exists(),
        "mosquitto not installed: apt-get install -y mosquitto ({} is missing)",
        bin.display()
    );
    bin.to_path_buf()
}

/// Writes a password file with `mosquitto_passwd -b` (`-c` for the first user).
fn write_password_file(path: &Path, users: &[(String, String)]) {
    for (i, (user, password)) in users.iter().enumerate() {
        let mut cmd = Command::new("mosquitto_passwd");
        cmd.arg("-b");
        if i == 0 {
            cmd.arg("-c");
        }
        let status = cmd
            .arg(path)
            .arg(user)
            .arg(password)
            .status()
            .unwrap_or_else(|e| {
                panic!("mosquitto_passwd not runnable ({e}): apt-get install -y mosquitto")
            });
        assert!(
            status.success(),
            "mosquitto_passwd failed for user {user}: {status}"
        );
    }
}

/// The broker's config file.
fn config(dir: &Path, port: u16, opts: &MosquittoOptions) -> String {
    let mut conf = String::new();
    let _ = writeln!(conf, "user root");
    let _ = writeln!(conf, "log_dest stderr");
    let _ = writeln!(conf, "log_type all");
    let _ = writeln!(conf, "connection_messages true");
    let _ = writeln!(conf, "listener {port} 127.0.0.1");
    let certificate_users = opts.tls.as_ref().is_some_and(|t| t.require_certificate);
    let anonymous = opts.users.is_empty() && !certificate_users;
    let _ = writeln!(conf, "allow_anonymous {anonymous}");
    if !opts.users.is_empty() {
        let _ = writeln!(conf, "password_file {}", dir.join("passwd").display());
    }
    if let Some(tls) = &opts.tls {
        let _ = writeln!(conf, "cafile {}", tls.ca.display());
        let _ = writeln!(conf, "certfile {}", tls.cert.display());
        let _ = writeln!(conf, "keyfile {}", tls.key.display());
        if tls.require_certificate {
            let _ = writeln!(conf, "require_certificate true");
            let _ = writeln!(conf, "use_identity_as_username true");
        }
    }
    if opts.persistence {
        let _ = writeln!(conf, "persistence true");
        // The trailing slash matters: mosquitto appends the file name to this string.
        let _ = writeln!(conf, "persistence_location {}/", dir.display());
    } else {
        let _ = writeln!(conf, "persistence false");
    }
    conf
}
