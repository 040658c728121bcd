// Image files to 8-bit RGB, pixel for pixel as the official pipeline's
// Image.open(path).convert("RGB") (Pillow) gives them: gray is replicated,
// alpha and transparency are dropped, not blended, palettes are applied.
// The format is recognised from the file's first bytes, as PIL does, never
// from its name. Decoders:
// - JPEG: libjpeg-turbo with PIL's settings (jpeg_decoder.hpp);
// - PNG, BMP, TGA: stb_image (stb_image.hpp); a 16-bit gray PNG, which PIL
//   opens as mode "I", is clipped to 255 like convert("RGB") does, other
//   16-bit PNGs keep their high byte as in PIL;
// - GIF, first frame: gif_decoder.hpp; PNM (P1-P6): pnm_decoder.hpp.
// Every decoder checks the size the file claims against `max_pixels` before
// it allocates anything for the pixels, and no decoder's buffers grow past
// what that size needs (a PNG whose data inflates further is refused).
#pragma once

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "gif_decoder.hpp"
#include "jpeg_decoder.hpp"
#include "mapped_file.hpp"
#include "pnm_decoder.hpp"
#include "rgb_image.hpp"
#include "stb_image.hpp"

namespace mplug_owl2 {

// The default pixel budget of load_image: 2^28 pixels (16384 x 16384),
// 768 MiB of RGB.
constexpr std::size_t kDefaultMaxImagePixels = std::size_t(1) << 28;

namespace image_detail {

inline bool starts_with(const std::uint8_t* data, std::size_t size, const char* magic, std::size_t n) {
    return size >= n && std::memcmp(data, magic, n) == 0;
}

inline std::uint32_t be32(const std::uint8_t* p) {
    return (std::uint32_t(p[0]) << 24) | (std::uint32_t(p[1]) << 16) | (std::uint32_t(p[2]) << 8) | p[3];
}

struct StbFree {
    void operator()(void* p) const { stbi_image_free(p); }
};

// stb_image reads past the end of a truncated BMP or TGA as zeros without
// complaint, where PIL reports a truncated file. Feeding it through these
// callbacks records whether it ever wanted to read a byte the file does not
// have (skipping past the end, as over a BMP's missing last padding, is not
// reading).
struct StbSource {
    const std::uint8_t* data;
    std::size_t size, pos = 0;
    bool overrun = false;

    static int read(void* user, char* out, int n) {
        auto* s = static_cast<StbSource*>(user);
        if (s->pos >= s->size) {
            if (n > 0) s->overrun = true;
            return 0;
        }
        const std::size_t k = std::min(std::size_t(n), s->size - s->pos);
        std::memcpy(out, s->data + s->pos, k);
        s->pos += k;
        return int(k);
    }
    static void skip(void* user, int n) {
        auto* s = static_cast<StbSource*>(user);
        if (n < 0) {
            s->pos -= std::min(s->pos, std::size_t(-std::int64_t(n)));
        } else if (std::size_t(n) > s->size - s->pos) {
            s->pos = s->size;  // skipping a BMP's last row padding past the end is fine for PIL too
        } else {
            s->pos += std::size_t(n);
        }
    }
    static int eof(void* user) {
        auto* s = static_cast<StbSource*>(user);
        return s->pos >= s->size;
    }
};

// Bytes an uncompressed TGA needs (header, id, colour map, pixels): stb_image
// reads its rows in bulk, and a short last row would not reach the callbacks'
// end-of-file check. 0 for other image types.
inline std::size_t tga_uncompressed_size(const std::uint8_t* d, std::size_t size) {
    if (size < 18 || d[2] < 1 || d[2] > 3) return 0;
    const std::size_t map_bytes = d[1] ? std::size_t(d[5] | (d[6] << 8)) * ((d[7] + 7) / 8) : 0;
    const std::size_t w = d[12] | (d[13] << 8), h = d[14] | (d[15] << 8);
    return 18 + d[0] + map_bytes + w * h * ((d[16] + 7) / 8);
}

// Sets stb_image's allocation budget for one decode, and restores it.
class StbBudget {
public:
    explicit StbBudget(std::size_t bytes) : saved_(stb_detail::budget) {
        stb_detail::budget = bytes;
        stb_detail::over_budget = false;
    }
    ~StbBudget() { stb_detail::budget = saved_; }
    StbBudget(const StbBudget&) = delete;
    StbBudget& operator=(const StbBudget&) = delete;

private:
    std::size_t saved_;
};

enum class StbFormat { Png, Bmp, Tga };

// stb_image copies a zero-length IDAT chunk that comes before any image data
// with memcpy(NULL, p, 0), which is undefined behaviour. Such a chunk holds no
// data, so the file is decoded from a copy without its zero-length IDAT
// chunks (the same pixels); returns false, leaving `out` alone, when it has
// none. Chunks are walked as far as their lengths stay inside the file; the
// rest is copied as it is.
inline bool png_without_empty_idat(const std::uint8_t* data, std::size_t size, std::vector<std::uint8_t>& out) {
    auto empty_idat = [&](std::size_t at) { return be32(data + at) == 0 && std::memcmp(data + at + 4, "IDAT", 4) == 0; };
    auto next = [&](std::size_t at) -> std::size_t {  // the following chunk, or 0 past the end
        const std::uint32_t len = be32(data + at);
        return len <= size - at - 12 ? at + 12 + len : 0;
    };
    bool any = false;
    for (std::size_t at = 8; at != 0 && at + 12 <= size && !any; at = next(at)) any = empty_idat(at);
    if (!any) return false;
    out.assign(data, data + 8);
    std::size_t at = 8;
    for (; at + 12 <= size; at = next(at)) {
        const std::size_t following = next(at);
        if (following == 0) break;
        if (!empty_idat(at)) out.insert(out.end(), data + at, data + following);
    }
    out.insert(out.end(), data + at, data + size);
    return true;
}

// PNG, BMP, TGA through stb_image.
inline RgbImage decode_with_stb(const std::uint8_t* data, std::size_t size, const std::string& name,
                                std::size_t max_pixels, StbFormat format) {
    if (size > std::size_t(INT_MAX)) fail(name, ": file of ", size, " bytes is too large to decode (limit 2 GiB)");

    // 1. The size the header claims, checked before stb_image allocates. For
    //    PNG read IHDR directly: stb_image's own header check would refuse a
    //    huge image with a less helpful message.
    bool gray16 = false;
    std::vector<std::uint8_t> cleaned;
    if (format == StbFormat::Png && size >= 8 && png_without_empty_idat(data, size, cleaned)) {
        data = cleaned.data();
        size = cleaned.size();
    }
    if (format == StbFormat::Png) {
        if (size < 33 || std::memcmp(data + 12, "IHDR", 4) != 0) fail(name, ": truncated PNG (no IHDR chunk)");
        check_image_size(be32(data + 16), be32(data + 20), max_pixels, name);
        gray16 = data[24] == 16 && data[25] == 0;  // bit depth 16, colour type 0
    }
    int w = 0, h = 0, channels = 0;
    if (!stbi_info_from_memory(data, int(size), &w, &h, &channels))
        fail(name, ": cannot read the image header (", stbi_failure_reason(), ")");
    RgbImage img = allocate_rgb(std::size_t(w), std::size_t(h), max_pixels, name);
    const std::size_t n = img.width * img.height;
    if (format == StbFormat::Tga && size < tga_uncompressed_size(data, size))
        fail(name, ": truncated TGA (", tga_uncompressed_size(data, size), " bytes expected, ", size, " present)");

    // 2. Decode, no stb_image buffer larger than twice the file plus twice
    //    what the pixels need at 16 bits and 4 channels (stb_image.hpp says
    //    why; a PNG's data buffer grows by doubling to the file's size). PIL
    //    opens a 16-bit gray PNG as 32-bit mode "I", and convert("RGB") clips
    //    it to 0..255; stb_image would keep the high byte.
    const StbBudget budget(2 * size + 2 * (n * 8 + img.height) + (std::size_t(1) << 20));
    StbSource src{data, size};
    const stbi_io_callbacks io{StbSource::read, StbSource::skip, StbSource::eof};
    int dw = 0, dh = 0;
    auto check = [&](const void* p) {
        if (!p && stb_detail::over_budget)
            fail(name, ": corrupt image (its compressed data expands past the ", w, "x", h,
                 " pixels of its header)");
        if (!p) fail(name, ": corrupt image (", stbi_failure_reason(), ")");
        if (src.overrun) fail(name, ": truncated image (the data ends before the last pixel)");
        if (dw != w || dh != h) fail(name, ": decoded size differs from the header");
    };
    if (gray16) {
        std::unique_ptr<stbi_us, StbFree> p(stbi_load_16_from_callbacks(&io, &src, &dw, &dh, &channels, 1));
        check(p.get());
        for (std::size_t i = 0; i < n; ++i)
            img.pixels[3 * i] = img.pixels[3 * i + 1] = img.pixels[3 * i + 2] =
                static_cast<std::uint8_t>(std::min<unsigned>(p.get()[i], 255u));
        return img;
    }
    std::unique_ptr<stbi_uc, StbFree> p(stbi_load_from_callbacks(&io, &src, &dw, &dh, &channels, 3));
    check(p.get());
    std::memcpy(img.pixels.data(), p.get(), n * 3);
    return img;
}

}  // namespace image_detail

// Decodes an image held in memory; `name` is used in error messages.
inline RgbImage decode_image(const std::uint8_t* data, std::size_t size, const std::string& name,
                             std::size_t max_pixels = kDefaultMaxImagePixels) {
    using namespace image_detail;
    if (size == 0) fail(name, ": empty file, not an image");
    if (starts_with(data, size, "\x89PNG\r\n\x1a\n", 8)) return decode_with_stb(data, size, name, max_pixels, StbFormat::Png);
    if (starts_with(data, size, "\xff\xd8\xff", 3)) return decode_jpeg(data, size, name, max_pixels);
    if (starts_with(data, size, "GIF87a", 6) || starts_with(data, size, "GIF89a", 6))
        return decode_gif(data, size, name, max_pixels);
    if (starts_with(data, size, "BM", 2)) return decode_with_stb(data, size, name, max_pixels, StbFormat::Bmp);
    if (size >= 2 && data[0] == 'P' && data[1] >= '1' && data[1] <= '6') return decode_pnm(data, size, name, max_pixels);
    // TGA has no signature; stb_image recognises its header.
    int w = 0, h = 0, c = 0;
    if (size <= std::size_t(INT_MAX) && stbi_info_from_memory(data, int(size), &w, &h, &c))
        return decode_with_stb(data, size, name, max_pixels, StbFormat::Tga);
    fail(name, ": not an image in a supported format (JPEG, PNG, GIF, BMP, TGA, PNM)");
}

// Reads and decodes an image file.
inline RgbImage load_image(const std::string& path, std::size_t max_pixels = kDefaultMaxImagePixels) {
    MappedFile file(path);
    return decode_image(file.data(), file.size(), path, max_pixels);
}

}  // namespace mplug_owl2
