//! The challenge table: every Type-2 seen, by id, and the single index of their
//! MsvAvTimestamp (with the server names, the key a NTLMv2 Type-3 names its challenge by).
//! Ids grow with time, so the oldest is evicted first in O(log n).

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
};

use super::verdict::{ClientIdentity, Closing, Fallback, LegInfo};
use crate::{
    decode::{ChallengeId, ChallengeInfo},
    hashing::KeyedMap,
};

/// Challenges indexed under one MsvAvTimestamp at most.
pub(super) const MAX_SAME_TIMESTAMP: usize = 64;

#[derive(Debug)]
pub(super) struct Challenge {
    /// The connection that carried it.
    pub conn: u64,
    pub leg: LegInfo,
    pub info: ChallengeInfo,
    /// The client of the request that drew it.
    pub identity: ClientIdentity,
    pub proxy: bool,
    /// The request that got the challenge said the connection would close.
    pub closing: bool,
    pub answered: bool,
    /// Reported as abandoned (kept a while for late Type-3s to join).
    pub expired: bool,
    pub fallback: Option<Fallback>,
}

impl Challenge {
    /// Whether the Type-3's challenge identity names this challenge.
    pub fn is_named_by(&self, id: &ChallengeId) -> bool {
        self.info
            .id
            .as_ref()
            .is_some_and(|i| i.timestamp == id.timestamp)
            && self.info.names == id.names
    }

    /// Its leg as it stood given how its connection ended (`closed`, if before the verdict):
    /// else `connection_close` when the request that drew it announced the end.
    pub fn leg_closed_by(&self, closed: Option<Closing>) -> LegInfo {
        let mut leg = self.leg.clone();
        if closed.is_some() {
            leg.closed = closed;
        } else if self.closing {
            leg.closed = Some(Closing::ConnectionClose);
        }
        leg
    }

    pub fn is_open(&self) -> bool {
        !self.answered && !self.expired
    }
}

/// One known field of a client identity: a key of the window join's index.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum ClientField {
    ForwardedFor(String),
    Port(u16),
    Frontend(SocketAddr),
}

/// The known fields of `id`. Two identities that are [`ClientIdentity::same_as`] share at
/// least one, so the index of each field finds every candidate.
fn client_fields(id: &ClientIdentity) -> impl Iterator<Item = ClientField> {
    [
        id.forwarded_for.clone().map(ClientField::ForwardedFor),
        id.port.map(ClientField::Port),
        id.frontend.map(ClientField::Frontend),
    ]
    .into_iter()
    .flatten()
}

fn unindex_client(
    by_client: &mut KeyedMap<ClientField, BTreeSet<u64>>,
    id: u64,
    identity: &ClientIdentity,
) {
    for f in client_fields(identity) {
        if let Some(set) = by_client.get_mut(&f) {
            set.remove(&id);
            if set.is_empty() {
                by_client.remove(&f);
            }
        }
    }
}

#[derive(Default)]
pub(super) struct Challenges {
    by_id: BTreeMap<u64, Challenge>,
    by_timestamp: KeyedMap<u64, Vec<u64>>,
    /// Unanswered challenges by each known field of the client that drew them: the window
    /// join looks at one client's challenges, not at every challenge.
    by_client: KeyedMap<ClientField, BTreeSet<u64>>,
    next: u64,
}

impl Challenges {
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn get(&self, id: u64) -> Option<&Challenge> {
        self.by_id.get(&id)
    }

    pub fn get_mut(&mut self, id: u64) -> Option<&mut Challenge> {
        self.by_id.get_mut(&id)
    }

    pub fn iter(&self) -> impl Iterator<Item = (u64, &Challenge)> {
        self.by_id.iter().map(|(id, c)| (*id, c))
    }

    /// Challenges neither answered nor reported abandoned.
    pub fn open(&self) -> usize {
        self.by_id.values().filter(|c| c.is_open()).count()
    }

    /// Adds a challenge; returns its id and whether its MsvAvTimestamp was already shared by
    /// [`MAX_SAME_TIMESTAMP`] others (the oldest of them left the index).
    pub fn insert(&mut self, ch: Challenge) -> (u64, bool) {
        self.next += 1;
        let id = self.next;
        let mut crowded = false;
        if let Some(cid) = &ch.info.id {
            // MsvAvTimestamp is unique per real challenge; many challenges sharing one (a
            // replayed or forged Type-2) must not make every join a long scan.
            let same = self.by_timestamp.entry(cid.timestamp).or_default();
            if same.len() >= MAX_SAME_TIMESTAMP {
                same.remove(0);
                crowded = true;
            }
            same.push(id);
        }
        for f in client_fields(&ch.identity) {
            self.by_client.entry(f).or_default().insert(id);
        }
        self.by_id.insert(id, ch);
        (id, crowded)
    }

    /// Evicts the oldest challenge; whether there was one.
    pub fn evict_oldest(&mut self) -> bool {
        match self.by_id.keys().next().copied() {
            Some(id) => {
                self.remove(id);
                true
            }
            None => false,
        }
    }

    pub fn remove(&mut self, id: u64) {
        let Some(ch) = self.by_id.remove(&id) else {
            return;
        };
        unindex_client(&mut self.by_client, id, &ch.identity);
        if let Some(ts) = ch.info.id.as_ref().map(|i| i.timestamp)
            && let Some(v) = self.by_timestamp.get_mut(&ts)
        {
            v.retain(|x| *x != id);
            if v.is_empty() {
                self.by_timestamp.remove(&ts);
            }
        }
    }

    /// The challenge a NTLMv2 Type-3 on connection `conn` names: among those with its
    /// MsvAvTimestamp and server names, the one of this connection, else an unanswered one,
    /// else the first (a replayed Type-3 still joins the challenge it answers).
    pub fn named_by(&self, id: &ChallengeId, conn: u64) -> Option<u64> {
        let matching: Vec<u64> = self
            .by_timestamp
            .get(&id.timestamp)
            .into_iter()
            .flatten()
            .copied()
            .filter(|ch| self.get(*ch).is_some_and(|c| c.info.names == id.names))
            .collect();
        let first = |pred: &dyn Fn(&Challenge) -> bool| {
            matching
                .iter()
                .copied()
                .find(|ch| self.get(*ch).is_some_and(pred))
        };
        first(&|c| c.conn == conn)
            .or_else(|| first(&|c| !c.answered))
            .or_else(|| matching.first().copied())
    }

    /// The latest unanswered challenge drawn by the same client within `window_ns` of `now`
    /// (the highest id among equally late ones): the join of last resort, for a Type-3 that
    /// names no challenge (NTLMv1). Looks only at that client's challenges.
    pub fn latest_for(&self, identity: &ClientIdentity, now: u64, window_ns: u64) -> Option<u64> {
        client_fields(identity)
            .filter_map(|f| self.by_client.get(&f))
            .flatten()
            .filter_map(|id| self.by_id.get(id).map(|c| (*id, c)))
            .filter(|(_, c)| {
                !c.answered
                    && now.saturating_sub(c.leg.at_ns) <= window_ns
                    && c.identity.same_as(identity)
            })
            .max_by_key(|(id, c)| (c.leg.at_ns, *id))
            .map(|(id, _)| id)
    }

    /// Marks a challenge answered; the connection that carried it.
    pub fn answer(&mut self, id: u64) -> Option<u64> {
        let ch = self.by_id.get_mut(&id)?;
        ch.answered = true;
        // An answered challenge never joins by window again.
        unindex_client(&mut self.by_client, id, &ch.identity);
        Some(ch.conn)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::{net::SocketAddr, sync::Arc};

    use super::*;
    use crate::decode::ServerNames;

    fn names(server: &str) -> Arc<ServerNames> {
        Arc::new(ServerNames {
            nb_computer_name: Some(server.into()),
            ..ServerNames::default()
        })
    }

    fn challenge(conn: u64, server: &str, timestamp: Option<u64>, xff: &str, at: u64) -> Challenge {
        let addr: SocketAddr = "198.18.1.10:80".parse().unwrap();
        let n = names(server);
        Challenge {
            conn,
            leg: LegInfo {
                client: addr,
                server: addr,
                generation: 0,
                at_ns: at,
                closed: None,
                server_names: Some(Arc::clone(&n)),
            },
            info: ChallengeInfo {
                server_challenge: [0; 8],
                target_name: None,
                names: Arc::clone(&n),
                id: timestamp.map(|timestamp| ChallengeId {
                    timestamp,
                    names: Arc::clone(&n),
                    key: tracker_ntlm::hash::Digest128([0; 16]),
                }),
            },
            identity: ClientIdentity {
                forwarded_for: Some(xff.into()),
                ..ClientIdentity::default()
            },
            proxy: false,
            closing: false,
            answered: false,
            expired: false,
            fallback: None,
        }
    }

    fn id(server: &str, timestamp: u64) -> ChallengeId {
        ChallengeId {
            timestamp,
            names: names(server),
            key: tracker_ntlm::hash::Digest128([0; 16]),
        }
    }

    #[test]
    fn a_type3_joins_by_timestamp_and_names_preferring_its_connection() {
        let mut t = Challenges::default();
        let (a, _) = t.insert(challenge(1, "WEB1", Some(100), "198.18.0.1", 1));
        let (b, _) = t.insert(challenge(2, "WEB1", Some(100), "198.18.0.1", 2));
        let (_, _) = t.insert(challenge(3, "WEB2", Some(100), "198.18.0.1", 3));
        assert_eq!(t.named_by(&id("WEB1", 100), 2), Some(b));
        assert_eq!(t.named_by(&id("WEB1", 100), 9), Some(a));
        t.answer(a);
        assert_eq!(t.named_by(&id("WEB1", 100), 9), Some(b));
        t.answer(b);
        // All answered: still the first (a replayed Type-3 joins what it answers).
        assert_eq!(t.named_by(&id("WEB1", 100), 9), Some(a));
        assert_eq!(t.named_by(&id("WEB1", 101), 9), None);
        assert_eq!(t.named_by(&id("WEB9", 100), 9), None);
        assert!(t.get(a).unwrap().is_named_by(&id("WEB1", 100)));
        assert!(!t.get(a).unwrap().is_named_by(&id("WEB2", 100)));
    }

    #[test]
    fn the_timestamp_index_is_bounded_and_follows_removal() {
        let mut t = Challenges::default();
        let mut crowded = 0;
        for i in 0..(MAX_SAME_TIMESTAMP as u64 + 3) {
            crowded += u64::from(t.insert(challenge(i, "WEB1", Some(7), "c", i)).1);
        }
        assert_eq!(crowded, 3);
        assert_eq!(t.by_timestamp[&7].len(), MAX_SAME_TIMESTAMP);
        while t.evict_oldest() {}
        assert_eq!(t.len(), 0);
        assert!(
            t.by_timestamp.is_empty(),
            "the index holds no removed challenge"
        );
    }

    #[test]
    fn the_window_join_takes_the_same_clients_latest_open_challenge() {
        let mut t = Challenges::default();
        let (_old, _) = t.insert(challenge(1, "WEB1", None, "198.18.0.1", 10));
        let (new, _) = t.insert(challenge(2, "WEB1", None, "198.18.0.1", 20));
        let (_other, _) = t.insert(challenge(3, "WEB1", None, "198.18.0.2", 30));
        let me = ClientIdentity {
            forwarded_for: Some("198.18.0.1".into()),
            ..ClientIdentity::default()
        };
        assert_eq!(t.latest_for(&me, 25, 100), Some(new));
        assert_eq!(t.latest_for(&me, 200, 100), None, "outside the window");
        t.answer(new);
        assert_eq!(t.latest_for(&me, 25, 100), Some(1));
        assert_eq!(t.open(), 2);
    }

    #[test]
    fn the_window_join_looks_only_at_the_clients_own_challenges() {
        // Ten times as many other clients' open challenges: the same time per join (it
        // scanned every challenge before).
        let time = |others: u64| {
            let mut t = Challenges::default();
            for i in 0..others {
                t.insert(challenge(
                    i,
                    "WEB1",
                    None,
                    &format!("198.18.{}.{}", i / 250, i % 250),
                    i,
                ));
            }
            let (mine, _) = t.insert(challenge(others, "WEB1", None, "198.19.0.1", others));
            let me = ClientIdentity {
                forwarded_for: Some("198.19.0.1".into()),
                ..ClientIdentity::default()
            };
            let t0 = std::time::Instant::now();
            for _ in 0..2_000 {
                assert_eq!(t.latest_for(&me, others, u64::MAX), Some(mine));
            }
            let d = t0.elapsed();
            t.answer(mine);
            assert_eq!(t.latest_for(&me, others, u64::MAX), None);
            while t.evict_oldest() {}
            assert!(
                t.by_client.is_empty(),
                "the index holds no removed challenge"
            );
            d
        };
        let small = time(5_000);
        let large = time(50_000);
        let ratio = large.as_secs_f64() / small.as_secs_f64().max(1e-9);
        assert!(ratio < 5.0, "{small:?} -> {large:?}: {ratio:.1}x");
    }
}
