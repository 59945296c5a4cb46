//! Replay against tshark on a generated capture: packets per second of
//! `ntlm-affinity replay FILE --backend …` and of `tshark -r FILE -Y ntlmssp`, and their NTLM
//! message counts. When the daemon has `replay`, the same runs also give its peak RSS
//! holding many open handshakes and its decode + correlate rate (messages per CPU second).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use super::Figure;
use super::pcap::{CaptureSpec, CaptureStats, generate};
use crate::{BACKEND_CIDR, BACKEND_PORT};

const NOT_AVAILABLE: &str = "replay not available in this build";

/// Options of the replay figures.
#[derive(Clone, Debug)]
pub struct ReplayOptions {
    pub tracker_bin: PathBuf,
    /// Directory for the generated captures (not committed; under target/).
    pub dir: PathBuf,
    /// The capture for the throughput comparison.
    pub spec: CaptureSpec,
    /// Open handshakes (Type-1 + Type-2, no Type-3) for the RSS figure.
    pub open_handshakes: usize,
}

/// Does this daemon build have the `replay` subcommand?
pub fn replay_available(bin: &Path) -> bool {
    Command::new(bin)
        .args(["replay", "--help"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Resource use of a finished child (wait4).
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    pub wall_s: f64,
    pub cpu_s: f64,
    pub max_rss_kib: u64,
    pub success: bool,
}

/// Runs `cmd` with stdout to `stdout_to`, returns its resource use.
pub fn run_measured(cmd: &mut Command, stdout_to: &Path) -> Result<Usage> {
    let out = fs::File::create(stdout_to)?;
    let t0 = Instant::now();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("start {cmd:?}"))?;
    let pid = child.id() as libc::pid_t;
    let stderr = child.stderr;
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut e) = stderr {
            let _ = std::io::Read::read_to_string(&mut e, &mut s);
        }
        s
    });
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it for our own child.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waiting for our own child's pid with valid out-pointers.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    let wall_s = t0.elapsed().as_secs_f64();
    let err = err_reader.join().unwrap_or_default();
    if r != pid {
        bail!("wait4 failed: {}", std::io::Error::last_os_error());
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let success = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    if !success {
        eprintln!(
            "bench: {cmd:?} failed (status {status}): {}",
            err.trim().chars().take(2000).collect::<String>()
        );
    }
    Ok(Usage {
        wall_s,
        cpu_s: tv(ru.ru_utime) + tv(ru.ru_stime),
        max_rss_kib: ru.ru_maxrss as u64,
        success,
    })
}

/// The replay figures (4), and when `replay` exists also (5b) daemon RSS and (6) decode +
/// correlate throughput.
pub fn run(opts: &ReplayOptions) -> Result<Vec<Figure>> {
    fs::create_dir_all(&opts.dir)?;
    let capture = opts.dir.join("replay.pcap");
    let t0 = Instant::now();
    let st = generate(&capture, &opts.spec)?;
    println!(
        "bench: generated {} ({} handshakes, {} packets, {:.0} MB) in {:.1} s",
        capture.display(),
        st.handshakes,
        st.packets,
        st.bytes as f64 / 1e6,
        t0.elapsed().as_secs_f64()
    );
    let mut figs = vec![Figure::info(
        "replay.capture_mb",
        st.bytes as f64 / 1e6,
        "MB",
    )];
    let tshark = tshark(&capture, &opts.dir, &st);
    let available = replay_available(&opts.tracker_bin);
    let (tshark_pps, tshark_msgs) = match &tshark {
        Ok((u, n)) => {
            let pps = st.packets as f64 / u.wall_s;
            figs.push(Figure::info("replay.tshark_pkts_per_s", pps, "pkt/s"));
            figs.push(
                Figure::at_least(
                    "replay.tshark_ntlm_messages",
                    *n as f64,
                    "msg",
                    st.ntlm_messages as f64,
                )
                .note(format!(
                    "the generator wrote {} NTLM messages",
                    st.ntlm_messages
                )),
            );
            (Some(pps), Some(*n))
        }
        Err(e) => {
            figs.push(Figure::missing(
                "replay.tshark_pkts_per_s",
                "pkt/s",
                None,
                &format!("tshark failed: {e:#}"),
            ));
            (None, None)
        }
    };
    if !available {
        for (name, unit, target) in [
            ("replay.speedup_vs_tshark", "x", ">= 10"),
            ("replay.ntlm_messages_match", "bool", ">= 1"),
            ("memory.daemon_rss_open_handshakes_mib", "MiB", "<= 64"),
            (
                "userspace.decode_correlate_msgs_per_cpu_s",
                "msg/s",
                ">= 500000",
            ),
        ] {
            figs.push(Figure::missing(name, unit, Some(target), NOT_AVAILABLE));
        }
        return Ok(figs);
    }
    // Replay the same capture.
    let out = opts.dir.join("replay.ndjson");
    let u = run_measured(
        Command::new(&opts.tracker_bin)
            .arg("replay")
            .arg(&capture)
            .args(["--backend", &format!("{BACKEND_CIDR}:{BACKEND_PORT}")])
            .args(["--messages", "--no-progress"]),
        &out,
    )?;
    let msgs = super::e2e::count_messages(&out);
    let _ = fs::remove_file(&out);
    if !u.success {
        figs.push(Figure::missing(
            "replay.speedup_vs_tshark",
            "x",
            Some(">= 10"),
            "ntlm-affinity replay failed (see stderr above)",
        ));
        return Ok(figs);
    }
    let pps = st.packets as f64 / u.wall_s;
    figs.push(Figure::info("replay.pkts_per_s", pps, "pkt/s"));
    match tshark_pps {
        Some(t) => figs.push(
            Figure::at_least("replay.speedup_vs_tshark", pps / t, "x", 10.0)
                .note("design aim 100x"),
        ),
        None => figs.push(Figure::missing(
            "replay.speedup_vs_tshark",
            "x",
            Some(">= 10"),
            "no tshark figure",
        )),
    }
    let same = tshark_msgs == Some(msgs);
    figs.push(Figure {
        ok: same,
        ..Figure::at_least(
            "replay.ntlm_messages_match",
            f64::from(u8::from(same)),
            "bool",
            1.0,
        )
        .note(format!(
            "replay reported {msgs} ntlm_message records, tshark {}",
            tshark_msgs.map(|n| n.to_string()).unwrap_or("-".into())
        ))
    });
    figs.push(
        Figure::at_least(
            "userspace.decode_correlate_msgs_per_cpu_s",
            msgs as f64 / u.cpu_s.max(1e-9),
            "msg/s",
            500_000.0,
        )
        .note("NTLM messages per CPU second of the whole replay (pcap reading included)"),
    );
    // RSS holding open handshakes.
    let open = opts.dir.join("open.pcap");
    generate(
        &open,
        &CaptureSpec {
            handshakes: opts.open_handshakes,
            body_bytes: 0,
            backends: opts.spec.backends,
            open: true,
        },
    )?;
    let out = opts.dir.join("open.ndjson");
    let u = run_measured(
        Command::new(&opts.tracker_bin)
            .arg("replay")
            .arg(&open)
            .args(["--backend", &format!("{BACKEND_CIDR}:{BACKEND_PORT}")])
            .arg("--no-progress"),
        &out,
    )?;
    let _ = fs::remove_file(&out);
    let _ = fs::remove_file(&open);
    figs.push(
        Figure::at_most(
            "memory.daemon_rss_open_handshakes_mib",
            u.max_rss_kib as f64 / 1024.0,
            "MiB",
            64.0,
        )
        .note(format!(
            "peak RSS of `replay` over a capture of {} handshakes left open after the Type-2",
            opts.open_handshakes
        )),
    );
    Ok(figs)
}

/// `tshark -r FILE -Y ntlmssp`: its resource use and the NTLM messages it dissected.
fn tshark(capture: &Path, dir: &Path, _st: &CaptureStats) -> Result<(Usage, u64)> {
    let out = dir.join("tshark.txt");
    let u = run_measured(
        Command::new("tshark").arg("-r").arg(capture).args([
            "-Y",
            "ntlmssp",
            "-T",
            "fields",
            "-e",
            "ntlmssp.messagetype",
        ]),
        &out,
    )?;
    if !u.success {
        bail!("tshark failed");
    }
    let text = fs::read_to_string(&out)?;
    let _ = fs::remove_file(&out);
    let n = text
        .lines()
        .flat_map(|l| l.split(','))
        .filter(|f| !f.trim().is_empty())
        .count() as u64;
    Ok((u, n))
}
