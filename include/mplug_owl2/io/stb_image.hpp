// stb_image (Debian libstb-dev) for PNG, BMP and TGA, compiled with
// STB_IMAGE_STATIC: every translation unit that includes this header gets its
// own private copy with internal linkage, so the header-only library never
// defines an stb symbol the linker could see twice, and a program may link
// its own stb_image elsewhere. (The copies are identical, so inline library
// functions that call them behave the same whichever copy they reach.)
// A translation unit that includes this header must not include
// stb_image.h itself.
#pragma once

#ifdef STBI_INCLUDE_STB_IMAGE_H
#error "stb_image.h was included before mplug_owl2/io/stb_image.hpp in this translation unit; the library compiles its own private copy, include only one of them per translation unit"
#endif

#include <cstddef>
#include <cstdint>
#include <cstdlib>

namespace mplug_owl2 {
namespace stb_detail {
// stb_image sizes its buffers from the header, which the library checks
// first, except one: a PNG's compressed data may inflate to far more than its
// header's pixels need (a decompression bomb), and stb_image grows the
// buffer to hold it all. Every allocation it makes goes through these, and
// one larger than `budget` (set around each decode) fails instead.
inline thread_local std::size_t budget = SIZE_MAX;
inline thread_local bool over_budget = false;
inline void* allocate(std::size_t n) {
    if (n > budget) {
        over_budget = true;
        return nullptr;
    }
    return std::malloc(n);
}
inline void* reallocate(void* p, std::size_t n) {
    if (n > budget) {
        over_budget = true;
        return nullptr;
    }
    return std::realloc(p, n);
}
}  // namespace stb_detail
}  // namespace mplug_owl2

#define STBI_MALLOC(sz) ::mplug_owl2::stb_detail::allocate(sz)
#define STBI_REALLOC(p, newsz) ::mplug_owl2::stb_detail::reallocate(p, newsz)
#define STBI_FREE(p) std::free(p)
#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#define STBI_ONLY_PNG
#define STBI_ONLY_BMP
#define STBI_ONLY_TGA
#define STBI_NO_STDIO   // the library reads files itself and decodes from memory
#define STBI_NO_LINEAR  // no float (HDR) output
#define STBI_NO_HDR

#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"  // static API functions the library does not call
#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#endif
#include <stb_image.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

#undef STB_IMAGE_STATIC
#undef STB_IMAGE_IMPLEMENTATION
#undef STBI_ONLY_PNG
#undef STBI_ONLY_BMP
#undef STBI_ONLY_TGA
#undef STBI_NO_STDIO
#undef STBI_NO_LINEAR
#undef STBI_NO_HDR
#undef STBI_MALLOC
#undef STBI_REALLOC
#undef STBI_FREE
