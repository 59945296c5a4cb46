//! Expiry: challenges no Type-3 answered within the window become `abandoned_challenge`;
//! idle connections, old challenges and old frontend tokens are forgotten; at the end of the
//! input, what still waits is emitted or counted.

use super::{
    Correlator, cause,
    challenge::Challenge,
    conn::Conn,
    verdict::{Class, Evidence, Outcome, Verdict},
};

impl Correlator {
    /// Expires state older than the windows, at time `now_ns` (record clock). Yields
    /// `abandoned_challenge` for challenges no Type-3 answered within the window, and the
    /// verdicts still waiting for a response on connections gone idle.
    pub fn tick(&mut self, now_ns: u64, out: &mut Vec<Verdict>) {
        let window = self.cfg.window_ns;
        // Answered and abandoned challenges stay four windows, for late Type-3s to join.
        let horizon = window.saturating_mul(4);
        let mut expired = Vec::new();
        let mut old = Vec::new();
        for (id, ch) in self.challenges.iter() {
            let age = now_ns.saturating_sub(ch.leg.at_ns);
            if ch.is_open() && age > window {
                expired.push((ch.leg.at_ns, id));
            } else if age > horizon {
                old.push(id);
            }
        }
        expired.sort_by_key(|(at, _)| *at);
        for (_, id) in expired {
            self.abandon(id, now_ns, out);
        }
        for id in old {
            self.challenges.remove(id);
        }
        let idle = self.cfg.idle_ns;
        let gone: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                let age = now_ns.saturating_sub(c.last_ns);
                // An open connection whose requests the kernel checks may look idle here
                // while its own client keeps using it: it stays until closed or evicted.
                (age > idle && (c.kernel_auth.is_none() || c.closed.is_some()))
                    || (c.closed.is_some() && age > horizon)
            })
            .map(|(id, _)| id)
            .collect();
        for id in gone {
            if let Some(mut c) = self.conns.remove(id) {
                self.flush_pending(&mut c, out);
                self.auth_updates.extend(c.end_kernel_check());
            }
        }
        self.conns.forget_slots();
        self.frontend.expire(now_ns, horizon);
    }

    /// Emits challenge `id` as abandoned and stops its connection waiting for a Type-3.
    fn abandon(&mut self, id: u64, now_ns: u64, out: &mut Vec<Verdict>) {
        let Some(ch) = self.challenges.get_mut(id) else {
            return;
        };
        ch.expired = true;
        let conn = ch.conn;
        let v = abandoned(ch, self.conns.get(conn), now_ns);
        self.emit(v, out);
        if let Some(c) = self.conns.get_mut(conn)
            && c.challenge == Some(id)
        {
            c.challenge = None;
        }
    }

    /// Emits the verdicts still waiting for a response on `c`.
    pub(super) fn flush_pending(&mut self, c: &mut Conn, out: &mut Vec<Verdict>) {
        for mut p in c.pending.drain(..) {
            if let Some(v) = p.verdict.take() {
                self.emit(*v, out);
            }
        }
    }

    /// The end of the input (end of a capture, daemon shutdown): verdicts waiting for a
    /// response are emitted with an unknown outcome; challenges on closed connections that no
    /// Type-3 answered are abandoned; those on open connections are counted only.
    pub fn finish(&mut self, out: &mut Vec<Verdict>) {
        let now = self.last_ns;
        let ids: Vec<u64> = self.conns.ids().collect();
        for id in ids {
            if let Some(mut c) = self.conns.remove(id) {
                self.flush_pending(&mut c, out);
                self.conns.restore(id, c);
            }
        }
        let open: Vec<u64> = self
            .challenges
            .iter()
            .filter(|(_, c)| c.is_open())
            .map(|(id, _)| id)
            .collect();
        for id in open {
            let Some(ch) = self.challenges.get_mut(id) else {
                continue;
            };
            ch.expired = true;
            let conn = self.conns.get(ch.conn);
            let closed = ch.closing || conn.is_none_or(|c| c.closed.is_some());
            if closed || now.saturating_sub(ch.leg.at_ns) > self.cfg.window_ns {
                let v = abandoned(ch, conn, now);
                self.emit(v, out);
            } else {
                self.stats.challenges_open_at_end += 1;
            }
        }
    }
}

/// The `abandoned_challenge` verdict of `ch`, whose connection is `conn` (if still known).
fn abandoned(ch: &Challenge, conn: Option<&Conn>, now: u64) -> Verdict {
    let mut v = Verdict::new(Class::AbandonedChallenge, now);
    let closed = conn.and_then(|c| c.closed);
    let leg = ch.leg_closed_by(closed.map(|c| c.how));
    let (cause, ev) = cause::abandoned(ch.closing, closed.is_some());
    v.cause = Some(cause);
    v.evidence = vec![Evidence::Timeout, ev];
    v.evidence.dedup();
    v.challenge_leg = Some(leg);
    v.client = ch.identity.clone();
    v.challenge_key = ch.info.id.as_ref().map(|i| i.key);
    v.server_challenge = Some(ch.info.server_challenge);
    v.outcome = Outcome::Failure;
    v.proxy = ch.proxy;
    v
}
