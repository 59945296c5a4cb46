//! Drawing `top` with ratatui. Only default colours plus bold, reverse and red/green accents,
//! so it reads on light and dark terminals; panels give way as the terminal shrinks (below
//! 28 rows no sparklines; below 100 columns the backends go under the violations instead of
//! beside them), never a broken layout.

use ratatui::{
    Frame,
    layout::{Constraint, Layout, Rect},
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{
        Block, Borders, Clear, List, ListItem, ListState, Paragraph, Row, Sparkline, Table, Wrap,
    },
};
use serde_json::Value;

use super::state::{State, alert_client, alert_user, leg_server};
use crate::correlate::terminal_label;

/// What the keyboard changed.
#[derive(Default)]
pub struct Ui {
    pub tab: Tab,
    pub selected: usize,
    pub details: bool,
    pub help: bool,
    /// The filter being typed (`/`), applied on Enter.
    pub typing: Option<String>,
    pub filter: String,
}

#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub enum Tab {
    #[default]
    Live,
    Inventory,
}

fn bold() -> Style {
    Style::default().add_modifier(Modifier::BOLD)
}

fn alert_style() -> Style {
    Style::default().fg(Color::Red).add_modifier(Modifier::BOLD)
}

/// A value from the network, safe and short for a terminal cell.
fn cell(s: &str, max: usize) -> String {
    terminal_label(s, max)
}

pub fn draw(f: &mut Frame, s: &State, ui: &Ui) {
    let area = f.area();
    let [header, tabs, body] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(0),
    ])
    .areas(area);
    f.render_widget(header_line(s), header);
    f.render_widget(tab_line(ui), tabs);
    match ui.tab {
        Tab::Live => live(f, s, ui, body),
        Tab::Inventory => inventory(f, s, ui, body),
    }
    if ui.details {
        details(f, s, ui, area);
    }
    if ui.help {
        help(f, area);
    }
}

/// Most important first, so a narrow terminal cuts the least useful end: who and how long,
/// the losses, then the interfaces and the pid.
fn header_line(s: &State) -> Paragraph<'static> {
    let mut spans = vec![Span::styled("ntlm-affinity", bold())];
    let na = s.hello.as_ref().map(|h| &h["ntlm_affinity"]);
    if let Some(na) = na {
        spans.push(Span::raw(format!(
            " {}",
            na["version"].as_str().unwrap_or("?")
        )));
    }
    if let Some(v) = &s.live {
        let host = v["observer"]["hostname"].as_str().unwrap_or("");
        spans.push(Span::raw(format!(" · {}", cell(host, 32))));
    }
    if let Some(na) = na {
        // The daemon's monotonic clock is this host's: `top` runs beside it.
        let started = na["started_ns"].as_u64().unwrap_or(0);
        let now = u64::try_from(crate::event::monotonic_ns()).unwrap_or(0);
        spans.push(Span::raw(format!(
            " · up {}",
            uptime(now.saturating_sub(started))
        )));
    }
    if !s.connected {
        spans.push(Span::styled(
            format!(
                " · DISCONNECTED: {} (retrying)",
                s.status.as_deref().unwrap_or("")
            ),
            alert_style(),
        ));
    }
    let ring = s.kernel("ringbuf_full");
    let map = s.kernel("flow_update_failed") + s.kernel("auth_flow_write_failures");
    let out = s.output_dropped();
    let loss = format!(" · lost ring {ring} map {map} out {out}");
    spans.push(if ring + map + out > 0 {
        Span::styled(loss, alert_style())
    } else {
        Span::raw(loss)
    });
    if let Some(v) = &s.live {
        let ifaces: Vec<String> = v["ntlm_affinity"]["interfaces"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|i| {
                format!(
                    "{}({})",
                    cell(i["name"].as_str().unwrap_or("?"), 16),
                    i["ingress"].as_str().unwrap_or("?")
                )
            })
            .collect();
        spans.push(Span::raw(format!(" · {}", ifaces.join(" "))));
    }
    if let Some(na) = na {
        spans.push(Span::raw(format!(" · pid {}", na["pid"])));
    }
    Paragraph::new(Line::from(spans))
}

fn uptime(ns: u64) -> String {
    let s = ns / 1_000_000_000;
    if s >= 86_400 {
        format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600)
    } else {
        format!("{}h{:02}m{:02}s", s / 3600, s % 3600 / 60, s % 60)
    }
}

fn tab_line(ui: &Ui) -> Paragraph<'static> {
    let tab = |t: Tab, name: &'static str| {
        if ui.tab == t {
            Span::styled(name, Style::default().add_modifier(Modifier::REVERSED))
        } else {
            Span::raw(name)
        }
    };
    let mut spans = vec![
        tab(Tab::Live, "[1] live"),
        Span::raw(" "),
        tab(Tab::Inventory, "[2] inventory"),
        Span::raw("  ? keys  / filter  q quit"),
    ];
    if let Some(t) = &ui.typing {
        spans.push(Span::styled(format!("  filter: {t}_"), bold()));
    } else if !ui.filter.is_empty() {
        spans.push(Span::styled(format!("  filter: {}", ui.filter), bold()));
    }
    Paragraph::new(Line::from(spans))
}

fn boxed(title: &str) -> Block<'_> {
    Block::default().borders(Borders::ALL).title(title)
}

fn live(f: &mut Frame, s: &State, ui: &Ui, area: Rect) {
    let tall = area.height >= 28;
    let wide = area.width >= 100;
    let [sparks, tables, latest] = Layout::vertical([
        Constraint::Length(if tall { 5 } else { 0 }),
        Constraint::Length(if wide { 9 } else { 14 }.min(area.height / 2)),
        Constraint::Min(3),
    ])
    .areas(area);
    if tall {
        let [hs, vs] = Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)])
            .areas(sparks);
        let h: Vec<u64> = s.handshakes_per_s.iter().copied().collect();
        let v: Vec<u64> = s.violations_per_s.iter().copied().collect();
        f.render_widget(
            Sparkline::default()
                .block(boxed(&format!(
                    "handshakes/s {}",
                    h.last().copied().unwrap_or(0)
                )))
                .data(&h),
            hs,
        );
        f.render_widget(
            Sparkline::default()
                .block(boxed(&format!(
                    "violations/s {}",
                    v.last().copied().unwrap_or(0)
                )))
                .style(Style::default().fg(Color::Red))
                .data(&v),
            vs,
        );
    }
    // From 150 columns the clients with the most NTLM get a panel of their own too.
    let [left, ba] = if wide {
        Layout::horizontal([Constraint::Percentage(45), Constraint::Percentage(55)]).areas(tables)
    } else {
        Layout::vertical([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(tables)
    };
    if area.width >= 150 {
        let [va, ca] = Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)])
            .areas(left);
        violations(f, s, va);
        top_clients(f, s, ca);
    } else {
        violations(f, s, left);
    }
    backends(f, s, ba);
    latest_list(f, s, ui, latest);
}

fn top_clients(f: &mut Frame, s: &State, area: Rect) {
    let rows: Vec<Row> = s
        .clients()
        .into_iter()
        .map(|c| {
            let n = |k: &str| c["schemes"][k].as_u64().unwrap_or(0).to_string();
            Row::new(vec![
                cell(c["client"].as_str().unwrap_or("?"), 18),
                n("ntlm"),
                n("kerberos"),
            ])
        })
        .collect();
    let t = Table::new(
        rows,
        [
            Constraint::Length(18),
            Constraint::Length(7),
            Constraint::Length(8),
        ],
    )
    .header(Row::new(vec!["client", "ntlm", "kerberos"]).style(bold()))
    .block(boxed("top clients (NTLM)"));
    f.render_widget(t, area);
}

fn violations(f: &mut Frame, s: &State, area: Rect) {
    let rows: Vec<Row> = s
        .violations()
        .into_iter()
        .map(|(class, cause, n)| Row::new(vec![class, cause, n.to_string()]))
        .collect();
    let empty = rows.is_empty();
    let t = Table::new(
        rows,
        [
            Constraint::Length(20),
            Constraint::Length(18),
            Constraint::Length(8),
        ],
    )
    .header(Row::new(vec!["class", "cause", "count"]).style(bold()))
    .block(boxed(if empty {
        "violations: none"
    } else {
        "violations"
    }));
    f.render_widget(t, area);
}

fn backends(f: &mut Frame, s: &State, area: Rect) {
    let rows: Vec<Row> = s
        .servers()
        .into_iter()
        .map(|b| {
            let failed = b.failed;
            let ntlm = (b.ok + b.failed).saturating_sub(b.kerberos);
            let r = Row::new(vec![
                b.addr,
                cell(&b.name, 16),
                b.ok.to_string(),
                failed.to_string(),
                ntlm.to_string(),
                b.kerberos.to_string(),
            ]);
            if failed > 0 {
                r.style(Style::default().fg(Color::Red))
            } else {
                r
            }
        })
        .collect();
    let t = Table::new(
        rows,
        [
            Constraint::Length(22),
            Constraint::Length(16),
            Constraint::Length(7),
            Constraint::Length(7),
            Constraint::Length(7),
            Constraint::Length(7),
        ],
    )
    .header(Row::new(vec!["backend", "ntlm name", "ok", "failed", "ntlm", "krb"]).style(bold()))
    .block(boxed("backends: handshakes"));
    f.render_widget(t, area);
}

fn alert_line(a: &Value) -> String {
    let at = a["@timestamp"].as_str().unwrap_or("");
    let time = at.get(11..19).unwrap_or(at);
    format!(
        "{time} {:<19} {:<17} {:<15} {:<20} {} -> {}",
        a["event"]["action"].as_str().unwrap_or("?"),
        a["ntlm_affinity"]["cause"].as_str().unwrap_or("-"),
        cell(&alert_client(a), 15),
        cell(&alert_user(a), 20),
        leg_server(a, "challenge_leg"),
        leg_server(a, "authenticate_leg"),
    )
}

fn latest_list(f: &mut Frame, s: &State, ui: &Ui, area: Rect) {
    let alerts = s.filtered_alerts(&ui.filter);
    let items: Vec<ListItem> = alerts
        .iter()
        .map(|a| ListItem::new(alert_line(a)))
        .collect();
    let title = format!(
        "latest violations ({}{}), newest first — Enter: details",
        alerts.len(),
        if ui.filter.is_empty() {
            ""
        } else {
            ", filtered"
        }
    );
    let mut state = ListState::default();
    if !items.is_empty() {
        state.select(Some(ui.selected.min(items.len() - 1)));
    }
    f.render_stateful_widget(
        List::new(items)
            .block(boxed(&title))
            .highlight_style(Style::default().add_modifier(Modifier::REVERSED)),
        area,
        &mut state,
    );
}

fn inventory(f: &mut Frame, s: &State, ui: &Ui, area: Rect) {
    let [clients, users] =
        Layout::vertical([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(area);
    scheme_table(
        f,
        &s.clients(),
        "client",
        &ui.filter,
        "inventory: clients by scheme (most NTLM first)",
        clients,
    );
    scheme_table(
        f,
        &s.users(),
        "user",
        &ui.filter,
        "NTLM users (most NTLMv1 first; Kerberos names travel encrypted)",
        users,
    );
}

/// Rows of `{KEY, schemes}` from the live record: who, Kerberos, NTLM, NTLMv1, LM,
/// anonymous, unsigned, and why not Kerberos.
fn scheme_table(f: &mut Frame, rows: &[&Value], key: &str, filter: &str, title: &str, area: Rect) {
    let filter = filter.to_lowercase();
    let rows: Vec<Row> = rows
        .iter()
        .filter(|c| {
            filter.is_empty()
                || c[key]
                    .as_str()
                    .is_some_and(|n| n.to_lowercase().contains(&filter))
        })
        .map(|c| {
            let sc = &c["schemes"];
            let reasons: Vec<String> = sc["ntlm_reasons"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(r, n)| format!("{r} {n}"))
                .collect();
            let n = |k: &str| sc[k].as_u64().unwrap_or(0).to_string();
            Row::new(vec![
                cell(c[key].as_str().unwrap_or("?"), 22),
                n("kerberos"),
                n("ntlm"),
                n("ntlmv1"),
                n("lm"),
                n("anonymous"),
                n("unsigned"),
                reasons.join(", "),
            ])
        })
        .collect();
    let t = Table::new(
        rows,
        [
            Constraint::Length(22),
            Constraint::Length(8),
            Constraint::Length(6),
            Constraint::Length(6),
            Constraint::Length(3),
            Constraint::Length(4),
            Constraint::Length(5),
            Constraint::Min(10),
        ],
    )
    .header(
        Row::new(vec![
            key,
            "kerberos",
            "ntlm",
            "ntlmv1",
            "lm",
            "anon",
            "unsig",
            "why not kerberos",
        ])
        .style(bold()),
    )
    .block(boxed(title));
    f.render_widget(t, area);
}

/// A centred popup of at most `w`×`h` inside `area`.
fn popup(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    )
}

fn leg_lines(a: &Value, leg: &str, label: &str) -> Vec<Line<'static>> {
    let l = &a["ntlm_affinity"][leg];
    if l.is_null() {
        return Vec::new();
    }
    vec![
        Line::from(Span::styled(label.to_string(), bold())),
        Line::from(format!(
            "  flow {}  at {}  closed {}",
            l["flow"].as_str().unwrap_or("?"),
            l["at"].as_str().unwrap_or("?"),
            l["closed"].as_str().unwrap_or("-")
        )),
        Line::from(format!(
            "  server names {}",
            if l["server_names"].is_null() {
                "-".to_string()
            } else {
                cell(&l["server_names"].to_string(), 80)
            }
        )),
    ]
}

fn details(f: &mut Frame, s: &State, ui: &Ui, area: Rect) {
    let alerts = s.filtered_alerts(&ui.filter);
    let Some(a) = alerts.get(ui.selected.min(alerts.len().saturating_sub(1))) else {
        return;
    };
    let na = &a["ntlm_affinity"];
    let evidence: Vec<&str> = na["evidence"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let mut lines = vec![
        Line::from(Span::styled(
            format!(
                "{}  cause {}",
                a["event"]["action"].as_str().unwrap_or("?"),
                na["cause"].as_str().unwrap_or("-")
            ),
            alert_style(),
        )),
        Line::from(format!(
            "client {}  user {}",
            cell(&alert_client(a), 40),
            cell(&alert_user(a), 40)
        )),
        Line::from(format!("evidence: {}", evidence.join(", "))),
        Line::from(format!(
            "outcome: {} (status {})",
            a["event"]["outcome"].as_str().unwrap_or("?"),
            na["status"]
        )),
    ];
    lines.extend(leg_lines(a, "challenge_leg", "challenge leg (Type-2)"));
    lines.extend(leg_lines(
        a,
        "authenticate_leg",
        "authenticate leg (Type-3)",
    ));
    lines.extend(leg_lines(a, "request_leg", "request leg (reused)"));
    lines.push(Line::from(""));
    lines.push(Line::from("Esc: close"));
    let r = popup(area, 100, lines.len() as u16 + 2);
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(boxed("violation")),
        r,
    );
}

fn help(f: &mut Frame, area: Rect) {
    let lines = vec![
        Line::from("1 / 2 / Tab   live view / inventory"),
        Line::from("Up Down j k   choose a violation"),
        Line::from("Enter         its connections and evidence"),
        Line::from("/             filter by client, user or server (Enter applies, Esc clears)"),
        Line::from("Esc           close a popup"),
        Line::from("q Ctrl-C      quit"),
    ];
    let r = popup(area, 80, lines.len() as u16 + 2);
    f.render_widget(Clear, r);
    f.render_widget(Paragraph::new(lines).block(boxed("keys")), r);
}
