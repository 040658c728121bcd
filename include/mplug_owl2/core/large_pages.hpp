// Memory for large weight buffers in 2 MB pages where the kernel offers them.
//
// Weights are streamed front to back (a decoding step reads every one) or
// read in blocks of many rows (the prompt products). In 4 KB pages every
// 4 KB is a separate address translation: the half-precision 7B, its
// checkpoint mapped in 4 KB pages, prefilled in 6.9-7.2 s and decoded
// 2.4-2.6 tokens/s, against 5.2-5.3 s and 3.1 tokens/s in 2 MB pages
// (docs/real_model.md). Buffers of at least kLargePageBytes are therefore
// aligned to 2 MB and advised as huge (madvise MADV_HUGEPAGE) before they
// are first touched; with the kernel's transparent huge pages set to
// "madvise" or "always" they are then backed by 2 MB pages, with "never"
// the advice is ignored and they are ordinary memory. Smaller buffers are
// 64-byte aligned (one cache line, one AVX-512 register).
#pragma once

#include <sys/mman.h>

#include <cstddef>
#include <cstdlib>
#include <new>

namespace mplug_owl2 {

constexpr std::size_t kLargePageBytes = std::size_t(2) << 20;

// `bytes` of memory (at least 1), released with std::free; throws
// std::bad_alloc when there is none.
inline void* allocate_large(std::size_t bytes) {
    const bool large = bytes >= kLargePageBytes;
    void* p = nullptr;
    if (posix_memalign(&p, large ? kLargePageBytes : 64, bytes == 0 ? 1 : bytes) != 0) throw std::bad_alloc();
    if (large) ::madvise(p, bytes / kLargePageBytes * kLargePageBytes, MADV_HUGEPAGE);  // advice only
    return p;
}

// allocate_large as a standard allocator, for std::vector.
template <class T>
struct LargePageAllocator {
    using value_type = T;
    LargePageAllocator() = default;
    template <class U>
    LargePageAllocator(const LargePageAllocator<U>&) noexcept {}
    T* allocate(std::size_t n) {
        if (n > std::size_t(-1) / sizeof(T)) throw std::bad_alloc();
        return static_cast<T*>(allocate_large(n * sizeof(T)));
    }
    void deallocate(T* p, std::size_t) noexcept { std::free(p); }
    template <class U>
    bool operator==(const LargePageAllocator<U>&) const noexcept { return true; }
    template <class U>
    bool operator!=(const LargePageAllocator<U>&) const noexcept { return false; }
};

}  // namespace mplug_owl2
