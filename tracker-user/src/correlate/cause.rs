//! Why a handshake broke: the cause of a split and of an abandoned challenge, as pure
//! functions of what was seen of the two connections (docs/design.md, "Correlation").

use super::verdict::{Cause, ClientIdentity, Evidence};

/// What was seen of the challenge's side when its Type-3 went elsewhere.
#[derive(Clone, Copy, Debug)]
pub struct ChallengeSide<'a> {
    /// The client of the request that drew the challenge.
    pub identity: &'a ClientIdentity,
    /// That request said its connection would close (`Connection: close`, HTTP/1.0).
    pub closing: bool,
    /// The challenge's backend connection ended (FIN/RST, reuse) before the Type-3.
    pub closed: bool,
    /// The frontend connection that carried the handshake announced its end around the
    /// challenge: the client had to reconnect.
    pub frontend_closed: bool,
}

/// Why a Type-3 went elsewhere than its challenge, first rule that applies (the list in
/// docs/design.md, "Correlation", and docs/events.md).
pub fn split(ch: ChallengeSide<'_>, identity: &ClientIdentity) -> (Cause, Evidence) {
    // The client kept its frontend connection: whatever closed the challenge's backend
    // connection (HAProxy `option http-server-close`, an NGINX upstream without `keepalive`
    // sending `Connection: close`), it was the balancer's choice to carry the Type-3
    // elsewhere — the fix is in its configuration, not in the client.
    if let (Some(a), Some(b)) = (ch.identity.frontend, identity.frontend)
        && a == b
    {
        return (Cause::BalancerReroute, Evidence::FrontendToken);
    }
    if let (Some(a), Some(b), Some(x), Some(y)) = (
        ch.identity.port,
        identity.port,
        ch.identity.forwarded_for.as_ref(),
        identity.forwarded_for.as_ref(),
    ) && a == b
        && x == y
    {
        return (Cause::BalancerReroute, Evidence::ClientIdentity);
    }
    if ch.closing {
        return (Cause::ConnectionClosed, Evidence::ConnectionClose);
    }
    if ch.identity.frontend.is_some() && identity.frontend.is_some() {
        // Another frontend connection. When the one that carried the handshake announced its
        // end (an HTTP/1.0 client, `Connection: close`), the client had to reconnect.
        return if ch.frontend_closed {
            (Cause::ConnectionClosed, Evidence::ConnectionClose)
        } else {
            (Cause::ClientReconnect, Evidence::FrontendToken)
        };
    }
    if ch.closed {
        return (Cause::ConnectionClosed, Evidence::ConnectionClose);
    }
    if let (Some(a), Some(b)) = (ch.identity.port, identity.port) {
        return if a != b {
            (Cause::ClientReconnect, Evidence::ClientIdentity)
        } else {
            (Cause::BalancerReroute, Evidence::ClientIdentity)
        };
    }
    (Cause::Unknown, Evidence::None)
}

/// Why a challenge was never answered: its connection ended, or nothing says.
pub fn abandoned(closing: bool, closed: bool) -> (Cause, Evidence) {
    if closing || closed {
        (Cause::ConnectionClosed, Evidence::ConnectionClose)
    } else {
        (Cause::Unknown, Evidence::Timeout)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn client(xff: Option<&str>, port: Option<u16>, frontend: Option<&str>) -> ClientIdentity {
        ClientIdentity {
            forwarded_for: xff.map(String::from),
            port,
            frontend: frontend.map(|f| f.parse().unwrap()),
        }
    }

    fn side(identity: &ClientIdentity) -> ChallengeSide<'_> {
        ChallengeSide {
            identity,
            closing: false,
            closed: false,
            frontend_closed: false,
        }
    }

    #[test]
    fn the_same_frontend_connection_is_the_balancers_choice_even_when_closed() {
        let c = client(None, None, Some("198.18.0.1:5000"));
        let ch = ChallengeSide {
            closing: true,
            closed: true,
            ..side(&c)
        };
        assert_eq!(
            split(ch, &c),
            (Cause::BalancerReroute, Evidence::FrontendToken)
        );
    }

    #[test]
    fn the_same_client_port_is_a_reroute_another_a_reconnect() {
        let a = client(Some("198.18.0.1"), Some(5000), None);
        let b = client(Some("198.18.0.1"), Some(5001), None);
        assert_eq!(
            split(side(&a), &a),
            (Cause::BalancerReroute, Evidence::ClientIdentity)
        );
        assert_eq!(
            split(side(&a), &b),
            (Cause::ClientReconnect, Evidence::ClientIdentity)
        );
        // A closed challenge connection explains a reconnect first.
        let closed = ChallengeSide {
            closed: true,
            ..side(&a)
        };
        assert_eq!(
            split(closed, &b),
            (Cause::ConnectionClosed, Evidence::ConnectionClose)
        );
    }

    #[test]
    fn another_frontend_connection_is_a_reconnect_unless_the_first_announced_its_end() {
        let a = client(None, None, Some("198.18.0.1:5000"));
        let b = client(None, None, Some("198.18.0.1:5001"));
        assert_eq!(
            split(side(&a), &b),
            (Cause::ClientReconnect, Evidence::FrontendToken)
        );
        let announced = ChallengeSide {
            frontend_closed: true,
            ..side(&a)
        };
        assert_eq!(
            split(announced, &b),
            (Cause::ConnectionClosed, Evidence::ConnectionClose)
        );
    }

    #[test]
    fn nothing_known_is_unknown() {
        let none = ClientIdentity::default();
        assert_eq!(split(side(&none), &none), (Cause::Unknown, Evidence::None));
        assert_eq!(abandoned(false, false), (Cause::Unknown, Evidence::Timeout));
        assert_eq!(
            abandoned(true, false),
            (Cause::ConnectionClosed, Evidence::ConnectionClose)
        );
    }
}
