//! Real agents as child processes of the `edgepool-agent` binary: `init` (keystore, config, state
//! directory in a temp dir), `run`, `kill -9`, restart on the same state.
//!
//! The binary is found, in order: `$EDGEPOOL_AGENT_BIN`; next to the current executable (or one
//! level up, for test executables in `deps/`). When it is not there and the simulator runs under
//! cargo (`cargo run`, `cargo test` set `$CARGO`), `cargo build -p edgepool-agent` builds it with
//! the same profile, so a fresh clone needs nothing but `cargo run -p edgepool-simulator -- demo`.
//! An existing binary is not rebuilt: after changing the agent, `cargo build --workspace` (or
//! `cargo test --workspace`, which builds every binary before running any test).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use edgepool_protocol::primitives::Address;

/// Why an agent could not be started.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AgentError {
    /// The binary is nowhere to be found.
    #[error(
        "the edgepool-agent binary was not found next to {exe} (set EDGEPOOL_AGENT_BIN, or build \
         it: cargo build -p edgepool-agent{release})"
    )]
    NotFound {
        /// The current executable.
        exe: String,
        /// ` --release` for a release simulator.
        release: &'static str,
    },
    /// Building it failed.
    #[error("cargo build -p edgepool-agent failed: {0}")]
    Build(String),
    /// `init` or `run` failed.
    #[error("{0}")]
    Start(String),
}

/// Where the binary is (built first when running under cargo); computed once per process.
///
/// # Errors
/// [`AgentError`].
pub fn agent_binary() -> Result<PathBuf, AgentError> {
    static FOUND: OnceLock<Result<PathBuf, AgentError>> = OnceLock::new();
    FOUND.get_or_init(find_or_build).clone()
}

fn find_or_build() -> Result<PathBuf, AgentError> {
    if let Some(bin) = std::env::var_os("EDGEPOOL_AGENT_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let exe = std::env::current_exe().map_err(|e| AgentError::Start(e.to_string()))?;
    let dir = exe.parent().unwrap_or(Path::new("."));
    let release = dir.ancestors().take(2).any(|d| d.ends_with("release"));
    let name = format!("edgepool-agent{}", std::env::consts::EXE_SUFFIX);
    let candidates = [dir.join(&name), dir.join("..").join(&name)];
    let found = || candidates.iter().find(|c| c.is_file()).cloned();
    if let Some(bin) = found() {
        return Ok(bin);
    }
    // Not built yet: under cargo, build it with the same profile. (Always building would be
    // fresher, but `-p edgepool-agent` alone unifies features differently from a workspace
    // build and would recompile shared dependencies on every run.)
    if let Some(cargo) = std::env::var_os("CARGO") {
        eprintln!("edgepool-sim: building edgepool-agent (cargo build -p edgepool-agent) ...");
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
        let mut build = Command::new(cargo);
        build
            .args([
                "build",
                "--quiet",
                "-p",
                "edgepool-agent",
                "--bin",
                "edgepool-agent",
                "--manifest-path",
            ])
            .arg(&manifest);
        if release {
            build.arg("--release");
        }
        let out = build
            .stdin(Stdio::null())
            .output()
            .map_err(|e| AgentError::Build(e.to_string()))?;
        if !out.status.success() {
            return Err(AgentError::Build(
                String::from_utf8_lossy(&out.stderr).into_owned(),
            ));
        }
        if let Some(bin) = found() {
            return Ok(bin);
        }
    }
    Err(AgentError::NotFound {
        exe: exe.display().to_string(),
        release: if release { " --release" } else { "" },
    })
}

/// A real agent process with its own temp dir (keystore, config, journal, logs).
#[derive(Debug)]
pub struct AgentProcess {
    bin: PathBuf,
    dir: tempfile::TempDir,
    config: PathBuf,
    address: Address,
    child: Option<Child>,
    runs: u32,
    env: Vec<(String, String)>,
}

impl AgentProcess {
    /// Runs `edgepool-agent init` for `broker`, `pool`, `scheduler`, then `run`. `slots` tasks at
    /// once; heartbeats every second.
    ///
    /// # Errors
    /// [`AgentError`].
    pub fn start(
        broker: &str,
        pool: Address,
        scheduler: Address,
        slots: u32,
    ) -> Result<AgentProcess, AgentError> {
        Self::start_with_env(broker, pool, scheduler, slots, &[])
    }

    /// [`AgentProcess::start`] with more environment (configuration keys as `EDGEPOOL_…`
    /// variables, e.g. `EDGEPOOL_AGENT_ATTESTATION=software` for a TEE scenario).
    ///
    /// # Errors
    /// [`AgentError`].
    pub fn start_with_env(
        broker: &str,
        pool: Address,
        scheduler: Address,
        slots: u32,
        extra_env: &[(&str, &str)],
    ) -> Result<AgentProcess, AgentError> {
        let bin = agent_binary()?;
        let dir = tempfile::tempdir().map_err(|e| AgentError::Start(e.to_string()))?;
        let (config, address) = init(&bin, dir.path(), broker, pool, scheduler)?;
        let env = vec![
            (
                "EDGEPOOL_IDENTITY_PASSWORD_FILE".to_string(),
                dir.path().join("password").display().to_string(),
            ),
            (
                "EDGEPOOL_AGENT_MIN_FREE_DISK_MB".to_string(),
                "1".to_string(),
            ),
            ("EDGEPOOL_AGENT_SLOTS".to_string(), slots.to_string()),
            ("EDGEPOOL_AGENT_HEARTBEAT_SECS".to_string(), "1".to_string()),
            ("EDGEPOOL_FETCH_RETRIES".to_string(), "1".to_string()),
            (
                "EDGEPOOL_LOG".to_string(),
                // EDGEPOOL_SIM_AGENT_LOG raises it (e.g. `debug`) when a run needs diagnosing.
                std::env::var("EDGEPOOL_SIM_AGENT_LOG").unwrap_or_else(|_| "info".to_string()),
            ),
        ];
        let mut env = env;
        env.extend(
            extra_env
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string())),
        );
        let mut agent = AgentProcess {
            bin,
            dir,
            config,
            address,
            child: None,
            runs: 0,
            env,
        };
        agent.spawn()?;
        Ok(agent)
    }

    fn spawn(&mut self) -> Result<(), AgentError> {
        let log = self.dir.path().join(format!("agent-{}.log", self.runs));
        self.runs += 1;
        let log = std::fs::File::create(log).map_err(|e| AgentError::Start(e.to_string()))?;
        let child = Command::new(&self.bin)
            .args(["run", "--config"])
            .arg(&self.config)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env_remove("NOTIFY_SOCKET")
            // The agent reads every EDGEPOOL_AGENT_* variable as a configuration key and refuses
            // unknown ones: the simulator's own variable must not reach it.
            .env_remove("EDGEPOOL_AGENT_BIN")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| AgentError::Start(format!("{}: {e}", self.bin.display())))?;
        self.child = Some(child);
        Ok(())
    }

    /// Its wallet address.
    pub fn address(&self) -> Address {
        self.address
    }

    /// The running process's id (to signal it, e.g. SIGSTOP in a test).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process runs.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A new process on the same state directory.
    ///
    /// # Errors
    /// [`AgentError::Start`].
    pub fn restart(&mut self) -> Result<(), AgentError> {
        self.kill();
        self.spawn()
    }

    /// Every run's log, concatenated.
    pub fn logs(&self) -> String {
        (0..self.runs)
            .map(|i| {
                std::fs::read_to_string(self.dir.path().join(format!("agent-{i}.log")))
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("\n--- restart ---\n")
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `edgepool-agent init` in `dir` (password file `dir/password`): returns (config, address).
///
/// # Errors
/// [`AgentError::Start`] with the agent's stderr.
pub fn init(
    bin: &Path,
    dir: &Path,
    broker: &str,
    pool: Address,
    scheduler: Address,
) -> Result<(PathBuf, Address), AgentError> {
    let password = dir.join("password");
    if !password.exists() {
        let secret: [u8; 16] = rand::random();
        std::fs::write(&password, format!("{}\n", hex_string(&secret)))
            .map_err(|e| AgentError::Start(e.to_string()))?;
    }
    let config = dir.join("agent.toml");
    let out = Command::new(bin)
        .args(["init", "--json", "--config"])
        .arg(&config)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .args([
            "--broker",
            broker,
            "--pool",
            &pool.to_string(),
            "--scheduler",
            &scheduler.to_string(),
        ])
        .arg("--password-file")
        .arg(&password)
        .env_remove("EDGEPOOL_AGENT_BIN")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| AgentError::Start(format!("{}: {e}", bin.display())))?;
    if !out.status.success() {
        return Err(AgentError::Start(format!(
            "edgepool-agent init: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| AgentError::Start(format!("edgepool-agent init output: {e}")))?;
    let address = report["address"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| AgentError::Start("edgepool-agent init printed no address".into()))?;
    Ok((config, address))
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
