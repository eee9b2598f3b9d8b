//! A PostgreSQL server of a test's own (initdb in a temporary folder, a
//! free port on loopback, trust auth), for faults that would disturb every
//! other test on the machine's server: a restart. Needs root (initdb and
//! pg_ctl run as the `postgres` user through `runuser`), as the TLS tests
//! do. Stopped (immediate) when dropped.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

pub struct PgServer {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
}

/// The newest PostgreSQL's binaries (`/usr/lib/postgresql/<v>/bin`).
fn pg_bin() -> anyhow::Result<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .context("no /usr/lib/postgresql (Debian's PostgreSQL packages)")?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    found.sort();
    found
        .pop()
        .map(|(_, bin)| bin)
        .context("no initdb under /usr/lib/postgresql/*/bin")
}

fn as_postgres(bin: &Path, tool: &str, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(bin.join(tool))
        .args(args)
        .output()
        .with_context(|| format!("running {tool} (needs root and the postgres user)"))?;
    if !out.status.success() {
        bail!(
            "{tool} {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

impl PgServer {
    /// Initialises and starts a server; a few seconds.
    pub async fn start() -> anyhow::Result<Self> {
        let bin = pg_bin()?;
        let dir = tempfile::Builder::new()
            .prefix("thumbnails-pg-")
            .tempdir()
            .context("temporary folder")?;
        let status = Command::new("chown")
            .arg("postgres:postgres")
            .arg(dir.path())
            .status()?;
        if !status.success() {
            bail!("cannot give {} to the postgres user", dir.path().display());
        }
        let port = crate::helpers::free_port();
        let me = Self { dir, bin, port };
        let data = me.data();
        tokio::task::spawn_blocking({
            let (bin, data, sock) = (me.bin.clone(), data.clone(), me.dir.path().to_owned());
            move || -> anyhow::Result<()> {
                as_postgres(
                    &bin,
                    "initdb",
                    &["-D", &data, "-U", "postgres", "--auth=trust", "--no-sync"],
                )?;
                let conf = format!(
                    "port = {port}\nlisten_addresses = '127.0.0.1'\n\
                     unix_socket_directories = '{}'\nmax_connections = 200\n\
                     fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n",
                    sock.display()
                );
                let path = Path::new(&data).join("postgresql.conf");
                let mut all = std::fs::read_to_string(&path)?;
                all.push_str(&conf);
                std::fs::write(&path, all)?;
                Ok(())
            }
        })
        .await??;
        me.pg_ctl(&["start", "-w", "-t", "60", "-l", &me.log()])
            .await?;
        Ok(me)
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn log(&self) -> String {
        self.dir.path().join("server.log").display().to_string()
    }

    async fn pg_ctl(&self, args: &[&str]) -> anyhow::Result<()> {
        let data = self.data();
        let mut all = vec!["-D", data.as_str()];
        all.extend_from_slice(args);
        let all: Vec<String> = all.into_iter().map(String::from).collect();
        let bin = self.bin.clone();
        tokio::task::spawn_blocking(move || {
            let refs: Vec<&str> = all.iter().map(String::as_str).collect();
            as_postgres(&bin, "pg_ctl", &refs)
        })
        .await?
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server (fast: every session is ended, new connections
    /// refused), keeps it down for `down`, and starts it again; returns
    /// once it accepts connections.
    pub async fn restart_after(&self, down: std::time::Duration) -> anyhow::Result<()> {
        self.pg_ctl(&["stop", "-m", "fast", "-w", "-t", "60"])
            .await?;
        tokio::time::sleep(down).await;
        self.pg_ctl(&["start", "-w", "-t", "60", "-l", &self.log()])
            .await
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let data = self.data();
        let _ = as_postgres(
            &self.bin,
            "pg_ctl",
            &["-D", &data, "-m", "immediate", "stop"],
        );
    }
}
