//! The NDJSON writer of `run`: a thread of its own behind a bounded queue, so a slow or stalled
//! stdout (a pager, a full pipe, a SIEM shipper that stopped reading) never holds up the
//! ring-buffer reader, which would turn into records lost in the kernel. Events that do not fit
//! in the queue are dropped and counted (`output.dropped` in `tracker_stats` and the exit
//! summary), never silently. Formatting happens on the writer thread too: on a busy host it
//! is half the daemon's work and runs beside the reader.

use std::{
    io::Write,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        mpsc,
    },
    thread::JoinHandle,
};

use crate::{control::Hub, event::Context, pipeline::Output};

/// Events queued at most (about 100 MiB at the size of the largest alerts).
pub const DEFAULT_QUEUE: usize = 65_536;

enum Item {
    Outputs(Vec<Output>),
    /// An already formatted line (the stats record).
    Line(Vec<u8>),
}

impl Item {
    fn events(&self) -> usize {
        match self {
            Item::Outputs(v) => v.len(),
            Item::Line(_) => 1,
        }
    }
}

/// The reader's end of the writer.
pub struct Writer {
    tx: Option<mpsc::Sender<Item>>,
    thread: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
    capacity: usize,
}

#[derive(Default)]
struct Shared {
    queued: AtomicUsize,
    dropped: AtomicU64,
    written: AtomicU64,
    /// The sink failed (stdout closed): nobody is listening.
    closed: AtomicBool,
}

impl Writer {
    /// Starts the writer thread on `sink`, formatting with `ctx`, `capacity` events queued
    /// at most. With a control `hub`, alerts and formatted lines also go to its clients
    /// (formatted once, here).
    pub fn spawn(
        ctx: Context,
        sink: impl Write + Send + 'static,
        capacity: usize,
        hub: Option<Arc<Hub>>,
    ) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Item>();
        let shared = Arc::new(Shared::default());
        let s = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("nta-output".into())
            .spawn(move || write_loop(&ctx, sink, &rx, &s, hub.as_deref()))?;
        Ok(Self {
            tx: Some(tx),
            thread: Some(thread),
            shared,
            capacity,
        })
    }

    /// Queues `outputs` (leaving it empty), or counts them dropped when the queue is full.
    pub fn send(&mut self, outputs: &mut Vec<Output>) {
        if !outputs.is_empty() {
            self.enqueue(Item::Outputs(std::mem::take(outputs)), false);
        }
    }

    /// Queues one formatted line.
    pub fn send_line(&mut self, line: Vec<u8>) {
        self.enqueue(Item::Line(line), false);
    }

    /// Queues the exit summary even when the queue is full: it is one line over the bound,
    /// once, and the only record of what the run dropped.
    pub fn send_summary(&mut self, line: Vec<u8>) {
        self.enqueue(Item::Line(line), true);
    }

    fn enqueue(&mut self, item: Item, always: bool) {
        let n = item.events();
        // One sender (the reader): the writer only ever makes room between load and add.
        let fits = always || self.shared.queued.load(Ordering::Acquire) + n <= self.capacity;
        let sent = fits
            && self.tx.as_ref().is_some_and(|tx| {
                self.shared.queued.fetch_add(n, Ordering::AcqRel);
                let ok = tx.send(item).is_ok();
                if !ok {
                    self.shared.queued.fetch_sub(n, Ordering::AcqRel);
                }
                ok
            });
        if !sent {
            self.shared.dropped.fetch_add(n as u64, Ordering::Relaxed);
        }
    }

    /// Events dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Events written so far.
    pub fn written(&self) -> u64 {
        self.shared.written.load(Ordering::Relaxed)
    }

    /// Events waiting to be written.
    pub fn queued(&self) -> usize {
        self.shared.queued.load(Ordering::Relaxed)
    }

    /// The sink failed: stdout was closed.
    pub fn closed(&self) -> bool {
        self.shared.closed.load(Ordering::Relaxed)
    }

    /// Writes everything queued and stops the thread.
    pub fn finish(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.finish();
    }
}

fn write_loop(
    ctx: &Context,
    sink: impl Write,
    rx: &mpsc::Receiver<Item>,
    s: &Shared,
    hub: Option<&Hub>,
) {
    let mut out = std::io::BufWriter::with_capacity(1 << 16, sink);
    let mut line = Vec::with_capacity(4096);
    while let Ok(mut item) = rx.recv() {
        loop {
            let n = item.events();
            let ok = match &item {
                Item::Outputs(v) => v.iter().all(|o| {
                    line.clear();
                    ctx.write(o, &mut line);
                    if let (Some(h), Output::Verdict(v)) = (hub, o)
                        && v.class.is_violation()
                    {
                        h.alert(&line);
                    }
                    out.write_all(&line).is_ok()
                }),
                Item::Line(l) => {
                    if let Some(h) = hub {
                        h.broadcast(l);
                    }
                    out.write_all(l).is_ok()
                }
            };
            s.queued.fetch_sub(n, Ordering::AcqRel);
            if !ok {
                s.closed.store(true, Ordering::Relaxed);
                return;
            }
            s.written.fetch_add(n as u64, Ordering::Relaxed);
            // Flush only when the queue is empty: one write per burst, not per event.
            match rx.try_recv() {
                Ok(next) => item = next,
                Err(_) => break,
            }
        }
        if out.flush().is_err() {
            s.closed.store(true, Ordering::Relaxed);
            return;
        }
    }
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::{collections::HashMap, sync::mpsc::Receiver};

    use super::*;

    /// A sink that takes nothing until told to, as a stalled pipe.
    struct Stalled {
        go: Receiver<()>,
        started: bool,
        bytes: Arc<AtomicUsize>,
    }

    impl Write for Stalled {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            if !self.started {
                let _ = self.go.recv();
                self.started = true;
            }
            self.bytes.fetch_add(b.len(), Ordering::Relaxed);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stalled_sink_never_blocks_the_sender_and_every_event_is_written_or_counted() {
        let (go, rx) = mpsc::channel();
        let bytes = Arc::new(AtomicUsize::new(0));
        let sink = Stalled {
            go: rx,
            started: false,
            bytes: Arc::clone(&bytes),
        };
        let mut w = Writer::spawn(Context::replay(HashMap::new()), sink, 100, None).unwrap();
        let t = std::time::Instant::now();
        for i in 0..10_000 {
            w.send_line(format!("{{\"n\":{i}}}\n").into_bytes());
        }
        assert!(
            t.elapsed() < std::time::Duration::from_secs(2),
            "sending blocked"
        );
        assert!(w.dropped() >= 9_000, "{}", w.dropped());
        let dropped = w.dropped();
        w.send_summary(b"{\"summary\":1}\n".to_vec());
        assert_eq!(w.dropped(), dropped, "the summary is never dropped");
        go.send(()).unwrap();
        w.finish();
        assert_eq!(w.written() + w.dropped(), 10_001);
        assert_eq!(w.queued(), 0);
        assert!(bytes.load(Ordering::Relaxed) > 0);
    }

    struct Closed;

    impl Write for Closed {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
    }

    #[test]
    fn a_closed_sink_is_reported_not_a_panic() {
        let mut w = Writer::spawn(Context::replay(HashMap::new()), Closed, 100, None).unwrap();
        w.send_line(vec![b'x'; 100_000]);
        let t = std::time::Instant::now();
        while !w.closed() && t.elapsed() < std::time::Duration::from_secs(5) {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert!(w.closed());
        w.send_line(b"{}\n".to_vec());
        w.finish();
    }
}
