//! The frontend token join: the balancer forwards a client's token bytes unchanged, so a keyed
//! hash of the token seen on a frontend connection names the client (its address and port) of
//! the backend request that carries the same bytes. Also which frontend connections announced
//! their end, for the cause of a split.

use std::net::SocketAddr;

use tracker_ntlm::hash::TokenHash;

use crate::{
    decode::Decoded,
    hashing::{self, KeyedLru, put_bounded},
};

#[derive(Clone, Copy, Debug)]
struct FrontRef {
    client: SocketAddr,
    at_ns: u64,
}

/// Both tables are in insertion order (oldest first), so the bound and the expiry take
/// entries from the old end in O(1) each, never a pass over the table.
pub(super) struct FrontendJoin {
    tokens: KeyedLru<TokenHash, FrontRef>,
    /// Frontend connections (client address) whose HTTP said the connection ends after the
    /// message (HTTP/1.0, `Connection: close`), with when: a client that had to reconnect.
    closing: KeyedLru<SocketAddr, u64>,
    /// Entries per table at most; when full, the oldest goes.
    capacity: usize,
    window_ns: u64,
}

impl FrontendJoin {
    pub fn new(capacity: usize, window_ns: u64) -> Self {
        Self {
            tokens: hashing::lru(),
            closing: hashing::lru(),
            capacity,
            window_ns,
        }
    }

    /// A head on a frontend connection of `client`, carrying `tokens`; returns how many old
    /// entries the bound evicted.
    pub fn observe(
        &mut self,
        client: SocketAddr,
        closes: bool,
        tokens: &[Decoded],
        now: u64,
    ) -> u64 {
        let mut evicted = 0;
        if closes && !tokens.is_empty() {
            evicted += u64::from(put_bounded(&mut self.closing, self.capacity, client, now));
        }
        for hash in tokens.iter().filter_map(|t| t.hash) {
            let entry = FrontRef { client, at_ns: now };
            evicted += u64::from(put_bounded(&mut self.tokens, self.capacity, hash, entry));
        }
        evicted
    }

    /// The frontend client that sent one of `tokens`, if the balancer forwarded it.
    pub fn client_of(&self, tokens: &[Decoded]) -> Option<SocketAddr> {
        tokens
            .iter()
            .filter_map(|t| t.hash)
            .find_map(|h| self.tokens.peek(&h).map(|f| f.client))
    }

    /// Whether the frontend connection of `client` announced its end within the window of
    /// `at_ns`.
    pub fn announced_close(&self, client: SocketAddr, at_ns: u64) -> bool {
        self.closing
            .peek(&client)
            .is_some_and(|at| at.abs_diff(at_ns) <= self.window_ns)
    }

    /// Forgets what is older than `horizon_ns` before `now`.
    pub fn expire(&mut self, now: u64, horizon_ns: u64) {
        while self
            .tokens
            .peek_lru()
            .is_some_and(|(_, f)| now.saturating_sub(f.at_ns) > horizon_ns)
        {
            self.tokens.pop_lru();
        }
        while self
            .closing
            .peek_lru()
            .is_some_and(|(_, at)| now.saturating_sub(*at) > horizon_ns)
        {
            self.closing.pop_lru();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tracker_ntlm::hash::Digest128;

    fn token(i: u64) -> Decoded {
        let mut d = Decoded::test_token();
        let mut h = [0u8; 16];
        h[..8].copy_from_slice(&i.to_le_bytes());
        d.hash = Some(Digest128(h));
        d
    }

    fn fill(n: u64) -> (std::time::Duration, usize, u64) {
        let mut j = FrontendJoin::new(1_000, u64::MAX);
        let client: SocketAddr = "198.18.0.10:5000".parse().unwrap();
        let t = std::time::Instant::now();
        let mut evicted = 0;
        for i in 0..n {
            evicted += j.observe(client, true, &[token(i)], i);
        }
        (t.elapsed(), j.tokens.len(), evicted)
    }

    #[test]
    fn a_full_table_evicts_the_oldest_in_constant_time() {
        // All entries inside the window: the old bound kept none out and scanned the whole
        // table on every insert (and grew past its capacity).
        let (small, len, evicted) = fill(20_000);
        assert_eq!((len, evicted), (1_000, 19_000));
        let (large, _, _) = fill(200_000);
        let ratio = large.as_secs_f64() / small.as_secs_f64().max(1e-9);
        assert!(ratio < 35.0, "{small:?} -> {large:?}: {ratio:.0}x");
        let mut j = FrontendJoin::new(10, 5);
        let client: SocketAddr = "198.18.0.10:5000".parse().unwrap();
        for i in 0..10 {
            j.observe(client, false, &[token(i)], i);
        }
        j.expire(12, 5);
        assert_eq!(j.tokens.len(), 3, "entries at 7, 8, 9 are within 5 of 12");
    }
}
