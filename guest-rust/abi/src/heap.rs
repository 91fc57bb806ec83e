//! The guest's global allocator: power-of-two size classes with intrusive free
//! lists, carved from a bump region that grows with `memory.grow`.
//!
//! Why not a crate: the guest builds with nothing but the Rust library sources.
//! Why this design: kernel state is long-lived hash tables that double in size;
//! freed blocks of a class are reused by the next allocation of that class, so a
//! steady state does not keep growing memory. Memory is never returned to the host
//! (wasm cannot shrink), which is what the host's per-store memory limit bounds.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;

const CLASSES: usize = 32;
const MIN_CLASS: u32 = 4; // 16 bytes: room for the free-list link
const MAX_BLOCK_ALIGN: usize = 4096;
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
const PAGE: usize = 65536;

struct State {
    free: [usize; CLASSES],
    /// Set when an allocation could not be served (memory limit or grow failure).
    failed: bool,
    bump: usize,
    end: usize,
}

/// See the module docs. Single-threaded: wasm32 guests have one thread.
pub struct SizeClassHeap {
    state: UnsafeCell<State>,
}

// The guest is single-threaded; the allocator is never shared across threads.
unsafe impl Sync for SizeClassHeap {}

impl SizeClassHeap {
    pub const fn new() -> Self {
        SizeClassHeap { state: UnsafeCell::new(State { free: [0; CLASSES], failed: false, bump: 0, end: 0 }) }
    }
}

impl SizeClassHeap {
    /// Whether any allocation has failed (read by the host after a trap).
    pub fn failed(&self) -> bool {
        unsafe { (*self.state.get()).failed }
    }
}

impl Default for SizeClassHeap {
    fn default() -> Self {
        Self::new()
    }
}

#[inline]
fn class_of(layout: &Layout) -> Option<u32> {
    let size = layout.size().max(layout.align()).max(1 << MIN_CLASS);
    if layout.align() > MAX_BLOCK_ALIGN || size > 1 << (CLASSES - 1) {
        return None;
    }
    Some(size.next_power_of_two().trailing_zeros())
}

#[cfg(target_arch = "wasm32")]
fn grow(st: &mut State, need_end: usize) -> bool {
    use core::arch::wasm32::{memory_grow, memory_size};
    if st.end == 0 {
        extern "C" {
            static __heap_base: u8;
        }
        st.bump = unsafe { &__heap_base as *const u8 as usize };
        st.end = memory_size(0) * PAGE;
    }
    if need_end <= st.end {
        return true;
    }
    let pages = (need_end - st.end).div_ceil(PAGE);
    if memory_grow(0, pages) == usize::MAX {
        return false;
    }
    st.end += pages * PAGE;
    true
}

#[cfg(not(target_arch = "wasm32"))]
fn grow(_st: &mut State, _need_end: usize) -> bool {
    false
}

unsafe impl GlobalAlloc for SizeClassHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(class) = class_of(&layout) else { return core::ptr::null_mut() };
        let st = &mut *self.state.get();
        let head = st.free[class as usize];
        if head != 0 {
            st.free[class as usize] = *(head as *const usize);
            return head as *mut u8;
        }
        let size = 1usize << class;
        if st.end == 0 && !grow(st, 0) {
            return core::ptr::null_mut();
        }
        let align = size.min(MAX_BLOCK_ALIGN);
        let start = (st.bump + align - 1) & !(align - 1);
        let Some(new_end) = start.checked_add(size) else { return core::ptr::null_mut() };
        if !grow(st, new_end) {
            st.failed = true;
            return core::ptr::null_mut();
        }
        st.bump = new_end;
        start as *mut u8
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(class) = class_of(&layout) {
            let st = &mut *self.state.get();
            *(ptr as *mut usize) = st.free[class as usize];
            st.free[class as usize] = ptr as usize;
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
        if class_of(&layout).is_some() && class_of(&layout) == class_of(&new_layout) {
            return ptr;
        }
        let new = self.alloc(new_layout);
        if !new.is_null() {
            core::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
            self.dealloc(ptr, layout);
        }
        new
    }
}
