//! The frontend token join: the balancer forwards a client's token bytes unchanged, so a keyed
//! hash of the token seen on a frontend connection names the client (its address and port) of
//! the backend request that carries the same bytes. Also which frontend connections announced
//! their end, for the cause of a split.

use std::net::SocketAddr;

use tracker_ntlm::hash::TokenHash;

use crate::{
    decode::Decoded,
    hashing::{self, KeyedMap},
};

#[derive(Clone, Copy, Debug)]
struct FrontRef {
    client: SocketAddr,
    at_ns: u64,
}

pub(super) struct FrontendJoin {
    tokens: KeyedMap<TokenHash, FrontRef>,
    /// Frontend connections (client address) whose HTTP said the connection ends after the
    /// message (HTTP/1.0, `Connection: close`), with when: a client that had to reconnect.
    closing: KeyedMap<SocketAddr, u64>,
    /// Entries per table at most; when full, those older than `window_ns` go first.
    capacity: usize,
    window_ns: u64,
}

impl FrontendJoin {
    pub fn new(capacity: usize, window_ns: u64) -> Self {
        Self {
            tokens: hashing::map(),
            closing: hashing::map(),
            capacity,
            window_ns,
        }
    }

    /// A head on a frontend connection of `client`, carrying `tokens`.
    pub fn observe(&mut self, client: SocketAddr, closes: bool, tokens: &[Decoded], now: u64) {
        let window = self.window_ns;
        if closes && !tokens.is_empty() {
            if self.closing.len() >= self.capacity {
                self.closing
                    .retain(|_, at| now.saturating_sub(*at) <= window);
            }
            self.closing.insert(client, now);
        }
        for hash in tokens.iter().filter_map(|t| t.hash) {
            if self.tokens.len() >= self.capacity {
                self.tokens
                    .retain(|_, f| now.saturating_sub(f.at_ns) <= window);
            }
            self.tokens.insert(hash, FrontRef { client, at_ns: now });
        }
    }

    /// The frontend client that sent one of `tokens`, if the balancer forwarded it.
    pub fn client_of(&self, tokens: &[Decoded]) -> Option<SocketAddr> {
        tokens
            .iter()
            .filter_map(|t| t.hash)
            .find_map(|h| self.tokens.get(&h).map(|f| f.client))
    }

    /// Whether the frontend connection of `client` announced its end within the window of
    /// `at_ns`.
    pub fn announced_close(&self, client: SocketAddr, at_ns: u64) -> bool {
        self.closing
            .get(&client)
            .is_some_and(|at| at.abs_diff(at_ns) <= self.window_ns)
    }

    /// Forgets what is older than `horizon_ns` before `now`.
    pub fn expire(&mut self, now: u64, horizon_ns: u64) {
        self.tokens
            .retain(|_, f| now.saturating_sub(f.at_ns) <= horizon_ns);
        self.closing
            .retain(|_, at| now.saturating_sub(*at) <= horizon_ns);
    }
}
