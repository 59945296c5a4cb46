//! Connections and their slots: which backend (or frontend) connection a record belongs to.
//!
//! A 5-tuple is reused by the balancer's ephemeral ports: each use is a kernel generation, and
//! a slot keeps the current and the previous use so late records of the old one still land
//! there. Connection ids grow with creation, so the oldest is evicted first in O(log n).

use std::{
    collections::{BTreeMap, VecDeque},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
};

use tracker_common::{FlowKey, RecordHeader};

use super::{
    Config,
    reuse::{AuthCtx, AuthUpdate},
    verdict::{ClientIdentity, Closing, Fallback, LegInfo, Verdict},
};
use crate::{
    decode::{KerberosInfo, ServerNames},
    hashing::KeyedMap,
    http::IdentityValue,
};

/// How a connection ended.
#[derive(Clone, Copy, Debug)]
pub(super) struct Closed {
    pub how: Closing,
    pub at_ns: u64,
}

/// What a request carried, for matching its response.
#[derive(Debug)]
pub(super) enum ReqKind {
    Plain,
    Type1,
    Type3,
    Kerberos,
}

/// A request waiting for its response.
#[derive(Debug)]
pub(super) struct PendingReq {
    pub kind: ReqKind,
    /// The request's flow (balancer → server) and generation, and its identity line.
    pub key: FlowKey,
    pub generation: u64,
    pub forwarded_for_line: Option<IdentityValue>,
    pub identity: ClientIdentity,
    pub at_ns: u64,
    /// A verdict that waits for the response's status (boxed: a verdict is ~700 bytes and a
    /// connection's queue keeps room for several requests).
    pub verdict: Option<Box<Verdict>>,
    /// For a healthy Type-3: who authenticated.
    pub user: Option<(Option<String>, Option<String>)>,
    /// For a Type-1: how the client came to NTLM.
    pub fallback: Option<Fallback>,
    /// For a Kerberos request: the AP-REQ's cleartext.
    pub kerberos: Option<KerberosInfo>,
}

/// Requests waiting for a response on one connection, at most (HTTP pipelining is rare; a
/// peer that never answers must not grow this).
pub(super) const MAX_PENDING: usize = 64;

#[derive(Debug)]
pub(super) struct Conn {
    pub client: SocketAddr,
    pub server: SocketAddr,
    /// Generation per direction: 0 client→server, 1 server→client.
    pub gens: [Option<u64>; 2],
    pub frontend: bool,
    pub pending: VecDeque<PendingReq>,
    /// The unanswered challenge issued on this connection.
    pub challenge: Option<u64>,
    /// Boxed: most connections never authenticate, and the context is a few hundred bytes.
    pub auth: Option<Box<AuthCtx>>,
    /// The flow whose identity the kernel checks (an `AuthUpdate::Set` was issued).
    pub kernel_auth: Option<FlowKey>,
    pub closed: Option<Closed>,
    /// The last request or response said the connection ends after it.
    pub closing: bool,
    pub last_ns: u64,
    pub names: Option<Arc<ServerNames>>,
    /// The last KRB-ERROR the server answered on this connection (code, name).
    pub krb_error: Option<(i32, Option<&'static str>)>,
    /// What the last 401/407 offered.
    pub offers: super::kerberos::Offers,
}

impl Conn {
    fn new(client: SocketAddr, server: SocketAddr, frontend: bool, at_ns: u64) -> Self {
        Conn {
            client,
            server,
            gens: [None, None],
            frontend,
            pending: VecDeque::new(),
            challenge: None,
            auth: None,
            kernel_auth: None,
            closed: None,
            closing: false,
            last_ns: at_ns,
            names: None,
            krb_error: None,
            offers: super::kerberos::Offers::default(),
        }
    }

    /// Ends the kernel's identity check of this connection, if it had one.
    pub fn end_kernel_check(&mut self) -> Option<AuthUpdate> {
        self.kernel_auth.take().map(|key| AuthUpdate::Clear { key })
    }

    /// Marks the connection ended, unless it already was.
    pub fn close(&mut self, how: Closing, at_ns: u64) {
        if self.closed.is_none() {
            self.closed = Some(Closed { how, at_ns });
        }
    }

    pub fn leg(&self, at_ns: u64) -> LegInfo {
        LegInfo {
            client: self.client,
            server: self.server,
            generation: self.gens[0].or(self.gens[1]).unwrap_or(0),
            at_ns,
            closed: self.closed.map(|c| c.how),
            server_names: self.names.clone(),
        }
    }

    /// The direction of a record from `src` (0: client → server).
    fn direction(&self, src: SocketAddr) -> usize {
        usize::from(src != self.client)
    }
}

type ConnKey = (SocketAddr, SocketAddr);

#[derive(Default)]
struct Slot {
    cur: u64,
    prev: Option<u64>,
}

/// Every connection, by id, and the slot of each 5-tuple.
#[derive(Default)]
pub(super) struct Conns {
    slots: KeyedMap<ConnKey, Slot>,
    /// Ids grow with creation: the first entry is the oldest, evicted first when full.
    by_id: BTreeMap<u64, Conn>,
    next: u64,
}

impl Conns {
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn get(&self, id: u64) -> Option<&Conn> {
        self.by_id.get(&id)
    }

    pub fn get_mut(&mut self, id: u64) -> Option<&mut Conn> {
        self.by_id.get_mut(&id)
    }

    pub fn ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.by_id.keys().copied()
    }

    pub fn iter(&self) -> impl Iterator<Item = (u64, &Conn)> {
        self.by_id.iter().map(|(id, c)| (*id, c))
    }

    pub fn remove(&mut self, id: u64) -> Option<Conn> {
        self.by_id.remove(&id)
    }

    /// Puts a connection taken with [`Conns::remove`] back under its id.
    pub fn restore(&mut self, id: u64, c: Conn) {
        self.by_id.insert(id, c);
    }

    /// Removes the oldest connection.
    pub fn evict_oldest(&mut self) -> Option<Conn> {
        self.by_id.pop_first().map(|(_, c)| c)
    }

    /// Forgets the slots whose current connection is gone.
    pub fn forget_slots(&mut self) {
        let by_id = &self.by_id;
        self.slots.retain(|_, s| by_id.contains_key(&s.cur));
    }

    /// The known connection of a record: the slot's current one (taking the record's
    /// generation if that direction had none yet), or its previous one when the generation is
    /// that one's. Returns the id and the direction.
    pub fn find(&mut self, h: &RecordHeader) -> Option<(u64, usize)> {
        let (src, dst) = flow_addrs(&h.key);
        let slot = self.slots.get(&slot_key(src, dst))?;
        let (cur, prev) = (slot.cur, slot.prev);
        let c = self.by_id.get_mut(&cur)?;
        let d = c.direction(src);
        match c.gens[d] {
            None => {
                c.gens[d] = Some(h.generation);
                Some((cur, d))
            }
            Some(g) if g == h.generation => Some((cur, d)),
            Some(_) => {
                let p = prev?;
                let pc = self.by_id.get(&p)?;
                let pd = pc.direction(src);
                (pc.gens[pd] == Some(h.generation)).then_some((p, pd))
            }
        }
    }

    /// A new connection (or a new use of the 5-tuple) for a record: the slot's old connection
    /// becomes its previous one and, if still open, ends as `reused`.
    pub fn open(
        &mut self,
        h: &RecordHeader,
        client: SocketAddr,
        server: SocketAddr,
        frontend: bool,
    ) -> (u64, usize) {
        let (src, dst) = flow_addrs(&h.key);
        let id = self.next + 1;
        self.next = id;
        let mut c = Conn::new(client, server, frontend, h.timestamp_ns);
        let d = c.direction(src);
        c.gens[d] = Some(h.generation);
        self.by_id.insert(id, c);
        let slot = self.slots.entry(slot_key(src, dst)).or_default();
        if slot.cur != 0 {
            let old = slot.cur;
            slot.prev = Some(old);
            if let Some(oc) = self.by_id.get_mut(&old) {
                oc.close(Closing::Reused, h.timestamp_ns);
            }
        }
        slot.cur = id;
        (id, d)
    }
}

/// A 5-tuple's slot key, the same for both directions.
fn slot_key(a: SocketAddr, b: SocketAddr) -> ConnKey {
    if a <= b { (a, b) } else { (b, a) }
}

/// Which side serves, for a connection's first record: (client, server, frontend leg). A
/// configured backend address decides, then a frontend port, then the record's direction.
pub(super) fn orient(
    cfg: &Config,
    src: SocketAddr,
    dst: SocketAddr,
    request: Option<bool>,
) -> (SocketAddr, SocketAddr, bool) {
    let backend = |a: SocketAddr| cfg.backends.iter().any(|b| b.contains(a));
    let frontend = |a: SocketAddr| cfg.frontend_ports.contains(&a.port());
    if backend(dst) {
        (src, dst, false)
    } else if backend(src) {
        (dst, src, false)
    } else if frontend(dst) {
        (src, dst, true)
    } else if frontend(src) {
        (dst, src, true)
    } else if request == Some(false) {
        (dst, src, false)
    } else {
        (src, dst, false)
    }
}

fn sock(addr: &[u8; 16], family: u8, port: u16) -> SocketAddr {
    let v6 = Ipv6Addr::from(*addr);
    let ip = match (family, v6.to_ipv4_mapped()) {
        (4, Some(v4)) => IpAddr::V4(v4),
        (4, None) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        _ => IpAddr::V6(v6),
    };
    SocketAddr::new(ip, port)
}

/// A kernel flow key's (source, destination).
pub fn flow_addrs(k: &FlowKey) -> (SocketAddr, SocketAddr) {
    (
        sock(&k.src_addr, k.family, k.src_port),
        sock(&k.dst_addr, k.family, k.dst_port),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn header(src: &str, dst: &str, generation: u64, at: u64) -> RecordHeader {
        let (s, d): (SocketAddr, SocketAddr) = (src.parse().unwrap(), dst.parse().unwrap());
        RecordHeader {
            key: crate::testsupport::key(s, d),
            generation,
            timestamp_ns: at,
            ..RecordHeader::default()
        }
    }

    const LB: &str = "198.18.0.10:40000";
    const WEB: &str = "198.18.1.10:80";

    #[test]
    fn both_directions_and_a_reused_port_find_their_connection() {
        let mut conns = Conns::default();
        let cfg = Config {
            backends: vec!["198.18.1.0/24:80".parse().unwrap()],
            ..Config::default()
        };
        let req = header(LB, WEB, 7, 1);
        assert!(conns.find(&req).is_none());
        let (src, dst) = flow_addrs(&req.key);
        let (client, server, frontend) = orient(&cfg, src, dst, Some(true));
        let first = conns.open(&req, client, server, frontend);
        assert_eq!(first.1, 0);
        // The response takes its own generation on first sight.
        assert_eq!(conns.find(&header(WEB, LB, 9, 2)), Some((first.0, 1)));
        assert_eq!(conns.find(&header(LB, WEB, 7, 3)), Some(first));
        // A new generation is a new use of the port: not found, then opened.
        let next_use = header(LB, WEB, 11, 4);
        assert!(conns.find(&next_use).is_none());
        let second = conns.open(&next_use, client, server, frontend);
        assert_ne!(second.0, first.0);
        assert_eq!(
            conns.get(first.0).unwrap().closed.map(|c| c.how),
            Some(Closing::Reused)
        );
        // Once the new use has its own response generation, a late record of the first use
        // still lands there.
        assert_eq!(conns.find(&header(WEB, LB, 12, 5)), Some((second.0, 1)));
        assert_eq!(conns.find(&header(WEB, LB, 9, 6)), Some((first.0, 1)));
        assert_eq!(
            conns.evict_oldest().map(|c| c.gens),
            Some([Some(7), Some(9)])
        );
        assert_eq!(conns.len(), 1);
    }

    #[test]
    fn orientation_prefers_backends_then_frontend_ports() {
        let cfg = Config {
            backends: vec!["198.18.1.0/24:80".parse().unwrap()],
            frontend_ports: vec![8080],
            ..Config::default()
        };
        let a: SocketAddr = "198.18.0.1:5000".parse().unwrap();
        let web: SocketAddr = WEB.parse().unwrap();
        let fe: SocketAddr = "198.18.0.10:8080".parse().unwrap();
        assert_eq!(orient(&cfg, web, a, Some(true)), (a, web, false));
        assert_eq!(orient(&cfg, fe, a, None), (a, fe, true));
        assert_eq!(orient(&cfg, a, fe, None), (a, fe, true));
        let b: SocketAddr = "198.18.0.2:6000".parse().unwrap();
        assert_eq!(orient(&cfg, a, b, Some(false)), (b, a, false));
        assert_eq!(orient(&cfg, a, b, None), (a, b, false));
    }
}
