//! `ntlm-affinity top`: the live view of a running daemon, attached read-only to its control
//! socket (docs/control.md). A reader thread turns the socket's lines into messages (and
//! reconnects when the daemon goes away); the terminal loop applies them to [`state::State`]
//! and draws [`view`] four times a second.

pub mod state;
pub mod view;

use std::{
    io::{BufRead as _, BufReader, IsTerminal as _},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    sync::mpsc,
    time::Duration,
};

use anyhow::{Context as _, bail};
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};

use state::State;
use view::{Tab, Ui};

enum Msg {
    Line(String),
    Down(String),
}

/// Follows the daemon at `path`: every line, and a `Down` when it goes away (then retries
/// every second).
fn reader(path: PathBuf, tx: mpsc::Sender<Msg>, first: UnixStream) {
    let mut stream = Some(first);
    loop {
        let s = match stream.take() {
            Some(s) => s,
            None => match UnixStream::connect(&path) {
                Ok(s) => s,
                Err(e) => {
                    if tx.send(Msg::Down(e.to_string())).is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_secs(1));
                    continue;
                }
            },
        };
        for line in BufReader::new(s).lines() {
            let Ok(line) = line else { break };
            if tx.send(Msg::Line(line)).is_err() {
                return;
            }
        }
        if tx
            .send(Msg::Down("the daemon closed the connection".into()))
            .is_err()
        {
            return;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// The error an operator can act on when the socket cannot be reached.
fn connect(path: &Path) -> anyhow::Result<UnixStream> {
    UnixStream::connect(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => anyhow::anyhow!(
            "no ntlm-affinity daemon at {} (is `ntlm-affinity run` running? it listens on --control PATH, default {})",
            path.display(),
            crate::control::DEFAULT_PATH
        ),
        std::io::ErrorKind::PermissionDenied => anyhow::anyhow!(
            "{}: permission denied; the control socket admits root and the daemon's --control-group",
            path.display()
        ),
        _ => anyhow::anyhow!("{}: {e}", path.display()),
    })
}

/// Runs the live view until `q` or Ctrl-C; the terminal is restored on every way out,
/// a panic included (ratatui's hook).
pub fn run(path: &Path) -> anyhow::Result<()> {
    let first = connect(path)?;
    if !std::io::stdout().is_terminal() {
        bail!(
            "`top` draws a live view and needs a terminal; stdout is not one. For the event stream, read the daemon's stdout or its control socket (`socat - UNIX-CONNECT:{}`)",
            path.display()
        );
    }
    let (tx, rx) = mpsc::channel();
    let p = path.to_path_buf();
    std::thread::Builder::new()
        .name("nta-top-reader".into())
        .spawn(move || reader(p, tx, first))
        .context("starting the reader")?;
    let mut terminal = ratatui::try_init().context("setting up the terminal")?;
    let result = ui_loop(&mut terminal, &rx);
    ratatui::restore();
    result
}

fn ui_loop(
    terminal: &mut ratatui::DefaultTerminal,
    rx: &mpsc::Receiver<Msg>,
) -> anyhow::Result<()> {
    let mut s = State::default();
    let mut ui = Ui::default();
    loop {
        while let Ok(m) = rx.try_recv() {
            match m {
                Msg::Line(l) => s.apply(&l),
                Msg::Down(why) => s.disconnected(why),
            }
        }
        terminal.draw(|f| view::draw(f, &s, &ui))?;
        if !event::poll(Duration::from_millis(250))? {
            continue;
        }
        if let Event::Key(k) = event::read()?
            && k.kind == KeyEventKind::Press
            && !key(&mut ui, &s, k.code, k.modifiers)
        {
            return Ok(());
        }
    }
}

/// One key; false to quit.
fn key(ui: &mut Ui, s: &State, code: KeyCode, mods: KeyModifiers) -> bool {
    if mods.contains(KeyModifiers::CONTROL) && code == KeyCode::Char('c') {
        return false;
    }
    if let Some(t) = ui.typing.as_mut() {
        match code {
            KeyCode::Enter => {
                ui.filter = ui.typing.take().unwrap_or_default();
                ui.selected = 0;
            }
            KeyCode::Esc => {
                ui.typing = None;
                ui.filter.clear();
            }
            KeyCode::Backspace => {
                t.pop();
            }
            KeyCode::Char(c) if t.len() < 64 => t.push(c),
            _ => {}
        }
        return true;
    }
    let shown = s.filtered_alerts(&ui.filter).len();
    match code {
        KeyCode::Char('q') => return false,
        KeyCode::Esc => {
            ui.details = false;
            ui.help = false;
        }
        KeyCode::Char('?') => ui.help = !ui.help,
        KeyCode::Char('/') => ui.typing = Some(String::new()),
        KeyCode::Char('1') => ui.tab = Tab::Live,
        KeyCode::Char('2') => ui.tab = Tab::Inventory,
        KeyCode::Tab => {
            ui.tab = match ui.tab {
                Tab::Live => Tab::Inventory,
                Tab::Inventory => Tab::Live,
            }
        }
        KeyCode::Down | KeyCode::Char('j') => {
            ui.selected = (ui.selected + 1).min(shown.saturating_sub(1));
        }
        KeyCode::Up | KeyCode::Char('k') => ui.selected = ui.selected.saturating_sub(1),
        KeyCode::Enter if shown > 0 && ui.tab == Tab::Live => ui.details = true,
        _ => {}
    }
    true
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use ratatui::{Terminal, backend::TestBackend};

    fn screen(t: &Terminal<TestBackend>) -> String {
        let b = t.backend().buffer();
        let mut out = String::new();
        for y in 0..b.area.height {
            for x in 0..b.area.width {
                out.push_str(b[(x, y)].symbol());
            }
            out.push('\n');
        }
        out
    }

    fn state() -> State {
        let mut s = State::default();
        s.apply(
            r#"{"event":{"action":"control_hello"},"ntlm_affinity":{"version":"9.9","pid":7}}"#,
        );
        for ok in [1, 3] {
            s.apply(
                &serde_json::json!({
                    "event": { "action": "live" },
                    "observer": { "hostname": "lb1" },
                    "ntlm_affinity": {
                        "interfaces": [{ "name": "nta-be", "ingress": "xdp" }],
                        "kernel": { "ringbuf_full": 0 },
                        "daemon": { "correlation": {
                            "handshakes_ok": ok,
                            "alerts": { "server_split": 2 },
                            "alerts_by_cause": { "server_split": { "balancer_reroute": 2 } },
                            "servers": { "198.18.1.10:80": { "ok": ok, "failed": 2, "name": "web1" } },
                        }},
                        "clients": [{ "client": "198.18.0.10", "schemes": { "kerberos": 1, "ntlm": 4, "ntlmv1": 0, "anonymous": 0, "ntlm_reasons": { "ntlm_direct": 4 } } }],
                        "users": [{ "user": "LAB\\carol", "schemes": { "kerberos": 0, "ntlm": 2, "ntlmv1": 2, "anonymous": 0, "ntlm_reasons": { "unknown": 2 } } }],
                    }
                })
                .to_string(),
            );
        }
        s.apply(
            &serde_json::json!({
                "@timestamp": "2026-12-03T18:00:01.000000Z",
                "event": { "kind": "alert", "action": "server_split", "outcome": "failure" },
                "user": { "domain": "LAB", "name": "bob" },
                "ntlm_affinity": {
                    "cause": "balancer_reroute",
                    "evidence": ["challenge_key"],
                    "client_identity": { "forwarded_for": "198.18.0.10" },
                    "challenge_leg": { "flow": "a->b", "server": { "ip": "198.18.1.10", "port": 80 } },
                    "authenticate_leg": { "flow": "c->d", "server": { "ip": "198.18.1.11", "port": 80 } },
                }
            })
            .to_string(),
        );
        s
    }

    #[test]
    fn the_screen_shows_classes_backends_and_the_latest_violation_at_80x24_and_larger() {
        let s = state();
        for (w, h) in [(80, 24), (140, 40), (160, 40)] {
            let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
            let mut ui = Ui::default();
            t.draw(|f| view::draw(f, &s, &ui)).unwrap();
            let text = screen(&t);
            for want in [
                "ntlm-affinity 9.9",
                "server_split",
                "balancer_reroute",
                "198.18.1.10:80",
                "LAB\\bob",
            ] {
                assert!(text.contains(want), "{w}x{h}: {want} missing:\n{text}");
            }
            assert_eq!(text.contains("top clients"), w >= 150, "{w}x{h}:\n{text}");
            assert!(key(&mut ui, &s, KeyCode::Enter, KeyModifiers::NONE));
            t.draw(|f| view::draw(f, &s, &ui)).unwrap();
            let text = screen(&t);
            assert!(text.contains("evidence: challenge_key"), "{text}");
            assert!(text.contains("authenticate leg"), "{text}");
            assert!(key(&mut ui, &s, KeyCode::Esc, KeyModifiers::NONE));
            assert!(key(&mut ui, &s, KeyCode::Char('2'), KeyModifiers::NONE));
            t.draw(|f| view::draw(f, &s, &ui)).unwrap();
            let text = screen(&t);
            assert!(text.contains("ntlm_direct 4"), "{text}");
            assert!(text.contains("LAB\\carol"), "{text}");
            assert!(!key(&mut ui, &s, KeyCode::Char('c'), KeyModifiers::CONTROL));
        }
    }

    #[test]
    fn a_tiny_terminal_is_drawn_without_a_panic() {
        let s = state();
        for (w, h) in [(40, 10), (20, 5), (1, 1)] {
            let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
            let mut ui = Ui {
                details: true,
                help: true,
                ..Ui::default()
            };
            t.draw(|f| view::draw(f, &s, &ui)).unwrap();
            ui.tab = Tab::Inventory;
            t.draw(|f| view::draw(f, &s, &ui)).unwrap();
        }
        let mut t = Terminal::new(TestBackend::new(40, 10)).unwrap();
        t.draw(|f| view::draw(f, &s, &Ui::default())).unwrap();
        assert!(screen(&t).contains("ntlm-affinity"));
    }

    #[test]
    fn a_filter_is_typed_applied_and_cleared() {
        let s = state();
        let mut ui = Ui::default();
        key(&mut ui, &s, KeyCode::Char('/'), KeyModifiers::NONE);
        for c in "nobody".chars() {
            key(&mut ui, &s, KeyCode::Char(c), KeyModifiers::NONE);
        }
        key(&mut ui, &s, KeyCode::Enter, KeyModifiers::NONE);
        assert_eq!(ui.filter, "nobody");
        assert!(s.filtered_alerts(&ui.filter).is_empty());
        key(&mut ui, &s, KeyCode::Char('/'), KeyModifiers::NONE);
        key(&mut ui, &s, KeyCode::Esc, KeyModifiers::NONE);
        assert!(ui.filter.is_empty());
    }
}
