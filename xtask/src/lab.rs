//! `cargo xtask lab up|down|status`: the network-namespace lab (see `nta_lab`).

use anyhow::{Context, Result};
use clap::Subcommand;
use nta_lab::{Frontend, Lab, LabConfig};

/// Lab sub-commands.
#[derive(Debug, Subcommand)]
pub enum LabCmd {
    /// Build the lab (namespaces nta-*, veth links in 198.18.0.0/15, three IIS-like NTLM
    /// backends, HAProxy and/or NGINX) and leave it running. Replaces a running lab.
    Up {
        /// Preset: haproxy, haproxy-server-close, haproxy-httpclose, haproxy-stick-src,
        /// nginx, nginx-keepalive, all (every balancer on its own port 80..84). With a KDC
        /// (realm LAB.TEST, SPN HTTP/www.lab.test): haproxy-reuse-always,
        /// nginx-keepalive-2 (keepalive, two servers), kerberos (haproxy 80, haproxy
        /// http-reuse always 81, nginx keepalive one server 82 / two servers 83, nginx 84).
        #[arg(long, default_value = "haproxy")]
        preset: String,
        /// Frontends instead of the preset's, repeatable: KIND[:PORT][@web1,web2], KIND one of
        /// haproxy-keepalive, haproxy-server-close, haproxy-httpclose, haproxy-stick-src,
        /// haproxy-reuse-always, nginx, nginx-keepalive. Example:
        /// --frontend haproxy-server-close:81@1,2
        #[arg(long = "frontend", value_name = "KIND[:PORT][@BACKENDS]")]
        frontends: Vec<String>,
        /// Number of backends (web1..webN).
        #[arg(long, default_value_t = 3)]
        backends: usize,
        /// Number of client source addresses (198.18.0.10..).
        #[arg(long, default_value_t = 8)]
        clients: usize,
        /// Backends re-challenge every request (IIS authPersistSingleRequest).
        #[arg(long)]
        persist_single_request: bool,
    },
    /// Stop everything the lab started and delete its namespaces (idempotent; also cleans
    /// up after a crash).
    Down,
    /// Show what is running.
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Run a lab sub-command.
pub fn lab(cmd: LabCmd) -> Result<()> {
    match cmd {
        LabCmd::Up {
            preset,
            frontends,
            backends,
            clients,
            persist_single_request,
        } => {
            let mut cfg = LabConfig::preset(&preset)?;
            if !frontends.is_empty() {
                let fes = frontends
                    .iter()
                    .map(|s| {
                        s.parse::<Frontend>()
                            .with_context(|| format!("--frontend {s}"))
                    })
                    .collect::<Result<Vec<_>>>()?;
                cfg = cfg.with_frontends(fes);
            }
            cfg = cfg.with_backends(backends).with_client_addrs(clients);
            cfg.persist_single_request = persist_single_request;
            let lab = Lab::up(cfg)?;
            print!("{}", Lab::status()?);
            let t = lab.topology();
            println!(
                "try:  ip netns exec {} curl --ntlm -u 'LAB\\alice:{}' --interface {} http://{}:{}/",
                t.client_ns,
                nta_lab::LAB_PASSWORD,
                t.client_addrs
                    .first()
                    .map(|a| a.to_string())
                    .unwrap_or_default(),
                t.vip,
                t.frontend_ports().first().copied().unwrap_or(80)
            );
            Ok(())
        }
        LabCmd::Down => {
            Lab::down()?;
            println!("lab: down");
            Ok(())
        }
        LabCmd::Status { json } => {
            let st = Lab::status()?;
            if json {
                println!("{}", st.to_json()?);
            } else {
                print!("{st}");
            }
            Ok(())
        }
    }
}
