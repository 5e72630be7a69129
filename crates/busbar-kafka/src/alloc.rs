//! An allocator for processes that decode Kafka requests (the `busbar` binary declares it, and so
//! do the fuzz targets): the system allocator, except that a single allocation of 1 GiB or more
//! is an anonymous `MAP_NORESERVE` mapping (address space only; pages exist once written).
//!
//! Why: `kafka-protocol` 0.18 decodes an array by calling `Vec::with_capacity(count)` with the
//! count read off the wire, before reading any element (upstream kafka-protocol-rs PRs #152, #161,
//! #200 are open). A 19-byte Metadata request declaring 2^31-1 topics asks for ~154 GB; the system
//! allocator refuses, and a refused allocation aborts the process. busbar never allocates 1 GiB on
//! purpose (every buffer is bounded far below), so such a request can only be this: served from
//! address space it costs nothing, the decode fails on the missing elements a moment later, and
//! the mapping is returned. `crates/busbar/tests/hostile_frames.rs` sends these frames to the real binary.
//! With `vm.overcommit_memory = 2` the kernel refuses even these mappings; `busbar serve` warns.

use std::alloc::{GlobalAlloc, Layout, System};

/// Allocations at least this large are lazy mappings.
const HUGE_BYTES: usize = 1 << 30;
const PAGE_BYTES: usize = 4096;

/// The allocator `busbar` runs with.
pub struct Allocator;

fn huge(layout: Layout) -> bool {
    layout.size() >= HUGE_BYTES && layout.align() <= PAGE_BYTES
}

unsafe fn map(size: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping with no address hint has no preconditions.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        std::ptr::null_mut()
    } else {
        p.cast()
    }
}

// SAFETY: huge blocks come from `map` and go back through `munmap` with the same size; everything
// else is the system allocator's, unchanged. `huge(layout)` decides both ways identically.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if huge(layout) {
            unsafe { map(layout.size()) }
        } else {
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if huge(layout) {
            unsafe { map(layout.size()) } // anonymous mappings read as zeros
        } else {
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if huge(layout) {
            unsafe { libc::munmap(ptr.cast(), layout.size()) };
        } else {
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return std::ptr::null_mut();
        };
        if !huge(layout) && !huge(new_layout) {
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new
    }
}

/// A warning when the kernel would refuse lazy mappings (strict overcommit).
pub fn overcommit_warning() -> Option<String> {
    let mode = std::fs::read_to_string("/proc/sys/vm/overcommit_memory").ok()?;
    (mode.trim() == "2").then(|| {
        "vm.overcommit_memory is 2 (strict): a hostile Kafka request declaring a huge array can \
         make an allocation fail and stop the process; see crates/busbar-kafka/src/alloc.rs"
            .to_string()
    })
}

#[cfg(test)]
mod tests {
    #[global_allocator]
    static ALLOCATOR: super::Allocator = super::Allocator;

    #[test]
    fn a_huge_capacity_is_address_space_only() {
        // 64 GiB reserved, a few bytes used, returned: no abort, nothing resident.
        let mut v: Vec<u8> = Vec::with_capacity(64 << 30);
        v.extend_from_slice(b"busbar");
        assert_eq!(&v[..], b"busbar");
        let mut w = v.clone();
        w.reserve(1 << 20);
        drop(v);
        assert_eq!(&w[..6], b"busbar");
    }
}
