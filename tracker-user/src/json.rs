//! A streaming JSON object writer for the per-message events: the line is written straight
//! into a reused buffer, without building a `serde_json::Value` tree (a map node and a `String`
//! per key, then freed), which cost more than decoding and correlating the message.
//!
//! Keys are written in ascending byte order, the order `serde_json::Value` (a `BTreeMap`)
//! writes them, so a line is byte for byte what serialising the equivalent `Value` gives; debug
//! builds check the order of every key.

use std::fmt::Display;
use std::io::Write as _;

/// One JSON object being written into `buf`.
pub struct Obj<'a> {
    buf: &'a mut Vec<u8>,
    first: bool,
    #[cfg(debug_assertions)]
    last: &'static str,
}

impl<'a> Obj<'a> {
    /// Opens an object at the end of `buf`.
    pub fn new(buf: &'a mut Vec<u8>) -> Self {
        buf.push(b'{');
        Self {
            buf,
            first: true,
            #[cfg(debug_assertions)]
            last: "",
        }
    }

    fn key(&mut self, k: &'static str) {
        #[cfg(debug_assertions)]
        {
            debug_assert!(
                self.first || k > self.last,
                "JSON key {k:?} after {:?}: keys must ascend",
                self.last
            );
            self.last = k;
        }
        if !self.first {
            self.buf.push(b',');
        }
        self.first = false;
        // Keys are plain identifiers: nothing to escape.
        self.buf.push(b'"');
        self.buf.extend_from_slice(k.as_bytes());
        self.buf.extend_from_slice(b"\":");
    }

    /// A string value, escaped as serde_json escapes it.
    pub fn str(&mut self, k: &'static str, v: &str) -> &mut Self {
        self.key(k);
        string(self.buf, v);
        self
    }

    /// A string value that is the `Display` of `v`, known to need no escaping (addresses,
    /// numbers, timestamps, base64).
    pub fn display(&mut self, k: &'static str, v: impl Display) -> &mut Self {
        self.key(k);
        self.buf.push(b'"');
        // Writing into a Vec cannot fail.
        let _ = write!(self.buf, "{v}");
        self.buf.push(b'"');
        self
    }

    pub fn opt_str(&mut self, k: &'static str, v: Option<&str>) -> &mut Self {
        if let Some(v) = v {
            self.str(k, v);
        }
        self
    }

    pub fn u64(&mut self, k: &'static str, v: u64) -> &mut Self {
        self.key(k);
        let _ = write!(self.buf, "{v}");
        self
    }

    pub fn bool(&mut self, k: &'static str, v: bool) -> &mut Self {
        self.key(k);
        self.buf
            .extend_from_slice(if v { b"true" } else { b"false" });
        self
    }

    pub fn null(&mut self, k: &'static str) -> &mut Self {
        self.key(k);
        self.buf.extend_from_slice(b"null");
        self
    }

    /// An array of strings.
    pub fn strs(&mut self, k: &'static str, v: &[&str]) -> &mut Self {
        self.key(k);
        self.buf.push(b'[');
        for (i, s) in v.iter().enumerate() {
            if i > 0 {
                self.buf.push(b',');
            }
            string(self.buf, s);
        }
        self.buf.push(b']');
        self
    }

    /// A nested object.
    pub fn obj(&mut self, k: &'static str, f: impl FnOnce(&mut Obj<'_>)) -> &mut Self {
        self.key(k);
        let mut o = Obj::new(self.buf);
        f(&mut o);
        o.close();
        self
    }

    /// Any serialisable value, through `serde_json::Value` so that its keys are sorted as
    /// well (for the rare, nested Kerberos and SPNEGO facts).
    pub fn value(&mut self, k: &'static str, v: &impl serde::Serialize) -> &mut Self {
        self.key(k);
        match serde_json::to_value(v) {
            Ok(v) => {
                let _ = serde_json::to_writer(&mut *self.buf, &v);
            }
            Err(_) => self.buf.extend_from_slice(b"null"),
        }
        self
    }

    /// Ends the object.
    pub fn close(self) {
        self.buf.push(b'}');
    }
}

/// `v` as a JSON string.
fn string(buf: &mut Vec<u8>, v: &str) {
    // serde_json's own escaping of a str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *buf, v);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn writes_what_a_sorted_value_writes() {
        let mut buf = Vec::new();
        let mut o = Obj::new(&mut buf);
        o.str("a", "x\"\u{1}\u{202e}y")
            .u64("b", 7)
            .bool("c", false)
            .null("d")
            .strs("e", &["p", "q"])
            .obj("f", |o| {
                o.display("ip", "198.18.0.1".parse::<std::net::IpAddr>().unwrap());
            })
            .value("g", &serde_json::json!({"z": 1, "a": [true]}))
            .opt_str("h", None);
        o.close();
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(serde_json::to_vec(&v).unwrap(), buf);
        assert_eq!(v["a"], "x\"\u{1}\u{202e}y");
        assert_eq!(v["g"]["z"], 1);
        assert!(v.get("h").is_none());
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "keys must ascend")]
    fn keys_out_of_order_are_caught_in_debug_builds() {
        let mut buf = Vec::new();
        let mut o = Obj::new(&mut buf);
        o.u64("b", 1).u64("a", 2);
    }
}
