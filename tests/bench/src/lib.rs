//! presence-bench: the load generator of the presence benchmark suite.
//! See `src/main.rs` for usage; this library is what the CLI and the smoke
//! test share.

pub mod chart;
pub mod floor;
pub mod net;
pub mod procstat;
pub mod report;
pub mod s1;
pub mod s2;
pub mod s3;
pub mod s4;
pub mod s5;
pub mod s6;
pub mod s7;

use std::net::SocketAddr;
use std::process::Stdio;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, BufReader};

/// The S0 floor server as a child process of this binary (`floor-server`),
/// so its CPU time and RSS are its own. Killed on drop.
pub struct FloorChild {
    pub addr: SocketAddr,
    pub pid: u32,
    _child: tokio::process::Child,
}

/// Starts `<this exe> floor-server` on 127.0.0.1:0, under `taskset -c <cpu>`
/// when `cpu` is given; it exits by itself after `max_seconds`.
pub async fn spawn_floor_child(cpu: Option<usize>, max_seconds: u64) -> anyhow::Result<FloorChild> {
    let exe = std::env::current_exe()?;
    let mut cmd = match cpu {
        Some(c) => {
            let mut cmd = tokio::process::Command::new("taskset");
            cmd.arg("-c").arg(c.to_string()).arg(exe);
            cmd
        }
        None => tokio::process::Command::new(exe),
    };
    cmd.args([
        "floor-server",
        "--listen",
        "127.0.0.1:0",
        "--max-seconds",
        &max_seconds.to_string(),
    ])
    .stdout(Stdio::piped())
    .kill_on_drop(true);
    let mut child = cmd.spawn().context("starting the floor server")?;
    let pid = child.id().context("floor server pid")?;
    let stdout = child.stdout.take().context("floor stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).await?;
    let addr = line
        .trim()
        .strip_prefix("floor listening on ")
        .with_context(|| format!("unexpected floor output {line:?}"))?
        .parse()?;
    Ok(FloorChild {
        addr,
        pid,
        _child: child,
    })
}
