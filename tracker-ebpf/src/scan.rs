//! The kernel driver of the shared header scan ([`tracker_common::scan`]): the copy sits in
//! the per-CPU scratch buffer and `bpf_loop` runs one scan step (up to 128 bytes) per call, so the
//! verifier checks the callback a few times instead of every iteration. Only the byte window
//! (masked, aligned loads) and the loop are kernel-specific.

use aya_ebpf::helpers::generated::bpf_loop;
use core::ffi::c_void;
pub use tracker_common::scan::{Found, record_len};
use tracker_common::{
    CAPTURE_MAX, identity,
    scan::{self, ScanState, Window},
};

use aya_ebpf::{macros::map, maps::PerCpuArray};

use crate::SCRATCH;

/// The scan's state in map memory (why: [`ScanState`]).
#[map]
static SCAN: PerCpuArray<ScanState> = PerCpuArray::with_max_entries(1, 0);

const MASK: u32 = CAPTURE_MAX as u32 - 1;

/// The scratch buffer's data as a [`Window`]. Every offset is masked into the buffer, so any
/// offset the rules compute is a safe load for the verifier; past the copied length the
/// buffer holds an earlier packet's bytes, which the rules never depend on.
#[derive(Clone, Copy)]
pub struct Scratch(*const u8);

impl Window for Scratch {
    /// Eight bytes at any offset, from two aligned loads: the BPF backend would otherwise
    /// split an unaligned load into eight byte loads. `data` is 8-aligned (it follows the
    /// 88-byte header), and the masked aligned offset + 16 stays inside CAPTURE_MAX +
    /// SCAN_SLACK.
    #[inline(always)]
    fn word(&self, off: u32) -> u64 {
        let a = (off & MASK & !7) as usize;
        let k = (off & 7) * 8;
        let (lo, hi) = unsafe {
            (
                *(self.0.add(a) as *const u64),
                *(self.0.add(a + 8) as *const u64),
            )
        };
        // `hi << (63 - k) << 1` is `hi << (64 - k)` without the undefined shift by 64 when k = 0.
        (lo >> k) | ((hi << (63 - k)) << 1)
    }

    #[inline(always)]
    fn aligned(&self, base: u32, i: u32) -> u64 {
        // `i` is a constant in each unrolled copy: base masked once, then fixed offsets.
        unsafe { *(self.0.add((base & MASK & !7) as usize + 8 * i as usize) as *const u64) }
    }

    #[inline(always)]
    fn byte(&self, off: u32) -> u8 {
        unsafe { *self.0.add((off & MASK) as usize) }
    }
}

#[inline(always)]
pub fn scratch() -> Option<Scratch> {
    SCRATCH
        .get_ptr(0)
        .map(|c| Scratch(unsafe { (*c).data.as_ptr() }))
}

/// What `bpf_loop` hands each step: pointers only, the same on every call.
#[repr(C)]
struct LoopCtx {
    data: Scratch,
    st: *mut ScanState,
}

extern "C" fn step(_index: u64, ctx: *mut c_void) -> i64 {
    let l = unsafe { &*(ctx as *const LoopCtx) };
    let c = unsafe { &mut *l.st };
    scan::scan_step(&l.data, c) as i64
}

/// Scans the first `len` bytes of the scratch buffer.
#[inline(always)]
pub fn scan(len: u32) -> Found {
    let Some(data) = scratch() else {
        return Found::default();
    };
    let Some(st) = SCAN.get_ptr_mut(0) else {
        return Found::default();
    };
    scan::scan_begin(&data, len, unsafe { &mut *st });
    let mut l = LoopCtx { data, st };
    unsafe {
        bpf_loop(
            len,
            step as *mut c_void,
            &mut l as *mut LoopCtx as *mut c_void,
            0,
        );
    }
    scan::scan_end(&data, unsafe { &*st })
}

/// [`identity::hash`] of `len` bytes at `off` of the scratch buffer (`len` ≤ `MAX_LEN`).
#[inline(always)]
pub fn identity_hash(key: &[u64; 2], off: u32, len: u32) -> u64 {
    let Some(data) = scratch() else {
        return 0;
    };
    identity::hash(key, &scan::identity_words(&data, off, len), len)
}
