// The first frame of a GIF as PIL shows it (GifImagePlugin and its LZW
// decoder, Pillow 9.4), then convert("RGB"):
// - the canvas is the logical screen, grown if the frame reaches past it,
//   filled with the frame's transparent index if it has one, else index 0;
// - the frame's indices are written into its rectangle, the transparent one
//   included (transparency only matters for later frames);
// - indices map through the frame's palette (local, else global); an index
//   past the end of the palette, or any index without a palette, is gray
//   (i, i, i);
// - a frame whose data ends before its last pixel is an error.
// stb_image differs on the first three points, hence this decoder.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "rgb_image.hpp"

namespace mplug_owl2 {
namespace gif_detail {

class ByteReader {
public:
    ByteReader(const std::uint8_t* data, std::size_t size, const std::string& name)
        : data_(data), size_(size), name_(name) {}

    bool at_end() const { return pos_ >= size_; }
    std::uint8_t u8() {
        need(1);
        return data_[pos_++];
    }
    unsigned u16() {
        need(2);
        const unsigned v = data_[pos_] | (unsigned(data_[pos_ + 1]) << 8);
        pos_ += 2;
        return v;
    }
    const std::uint8_t* bytes(std::size_t n) {
        need(n);
        pos_ += n;
        return data_ + pos_ - n;
    }
    // Skips data sub-blocks up to and including the zero-length terminator.
    void skip_sub_blocks() {
        for (std::uint8_t n = u8(); n != 0; n = u8()) bytes(n);
    }
    std::size_t pos() const { return pos_; }

private:
    void need(std::size_t n) const {
        if (n > size_ - pos_) fail(name_, ": truncated GIF (needed ", n, " more bytes at offset ", pos_, ")");
    }
    const std::uint8_t* data_;
    std::size_t size_;
    std::size_t pos_ = 0;
    const std::string& name_;
};

// Reads LZW codes least-significant bit first from the image's data
// sub-blocks; returns false when the sub-blocks or the file run out.
class CodeReader {
public:
    CodeReader(const std::uint8_t* data, std::size_t size, std::size_t pos) : data_(data), size_(size), pos_(pos) {}

    bool next(int width, int& code) {
        while (nbits_ < width) {
            if (block_left_ == 0) {
                if (done_ || pos_ >= size_) return false;
                block_left_ = data_[pos_++];
                if (block_left_ == 0) {
                    done_ = true;
                    return false;
                }
            }
            if (pos_ >= size_) return false;
            bits_ |= std::uint32_t(data_[pos_++]) << nbits_;
            nbits_ += 8;
            --block_left_;
        }
        code = int(bits_ & ((1u << width) - 1));
        bits_ >>= width;
        nbits_ -= width;
        return true;
    }

private:
    const std::uint8_t* data_;
    std::size_t size_, pos_;
    std::size_t block_left_ = 0;
    bool done_ = false;
    std::uint32_t bits_ = 0;
    int nbits_ = 0;
};

// Row of the frame that the r-th decoded row lands on: interlaced frames
// store rows 0, 8, 16, ..., then 4, 12, ..., then 2, 6, ..., then 1, 3, ...
inline std::size_t interlaced_row(std::size_t r, std::size_t h) {
    const std::size_t pass1 = (h + 7) / 8, pass2 = (h + 3) / 8, pass3 = (h + 1) / 4;
    if (r < pass1) return r * 8;
    r -= pass1;
    if (r < pass2) return 4 + r * 8;
    r -= pass2;
    if (r < pass3) return 2 + r * 4;
    r -= pass3;
    return 1 + r * 2;
}

}  // namespace gif_detail

inline RgbImage decode_gif(const std::uint8_t* data, std::size_t size, const std::string& name,
                           std::size_t max_pixels) {
    using namespace gif_detail;
    ByteReader in(data, size, name);

    // 1. Header and logical screen descriptor, then the global palette.
    in.bytes(6);  // "GIF87a" or "GIF89a", checked by the caller
    std::size_t width = in.u16(), height = in.u16();
    const std::uint8_t screen_flags = in.u8();
    in.u8();  // background colour index: PIL does not paint with it
    in.u8();  // pixel aspect ratio
    const std::uint8_t* palette = nullptr;
    std::size_t palette_entries = 0;
    if (screen_flags & 0x80) {
        palette_entries = std::size_t(2) << (screen_flags & 7);
        palette = in.bytes(3 * palette_entries);
    }

    // 2. Blocks up to the first image descriptor; a graphic control extension
    //    on the way may name a transparent index.
    int transparent = -1;
    for (;;) {
        if (in.at_end()) fail(name, ": GIF has no image");
        const std::uint8_t introducer = in.u8();
        if (introducer == 0x3B) fail(name, ": GIF has no image");
        if (introducer == 0x2C) break;
        if (introducer != 0x21) continue;  // stray byte: PIL skips it too
        const std::uint8_t label = in.u8();
        if (label == 0xF9) {
            const std::uint8_t n = in.u8();
            if (n < 3) fail(name, ": GIF graphic control extension of ", int(n), " bytes (expected 4)");
            const std::uint8_t* block = in.bytes(n);
            if (block[0] & 1) {
                if (n < 4) fail(name, ": GIF graphic control extension of ", int(n), " bytes (expected 4)");
                transparent = block[3];
            }
        }
        in.skip_sub_blocks();
    }

    // 3. Image descriptor: the frame's rectangle, local palette, interlacing.
    const std::size_t x0 = in.u16(), y0 = in.u16(), fw = in.u16(), fh = in.u16();
    const std::uint8_t frame_flags = in.u8();
    if (frame_flags & 0x80) {
        palette_entries = std::size_t(2) << (frame_flags & 7);
        palette = in.bytes(3 * palette_entries);
    }
    const bool interlaced = (frame_flags & 0x40) != 0;
    const int min_code_size = in.u8();
    if (min_code_size < 1 || min_code_size > 11)
        fail(name, ": GIF LZW minimum code size ", min_code_size, " (expected 1 to 11)");
    if (fw == 0 || fh == 0) fail(name, ": GIF frame has no pixels (", fw, "x", fh, ")");
    width = std::max(width, x0 + fw);
    height = std::max(height, y0 + fh);

    // 4. Canvas of indices, filled with the transparent index or 0.
    RgbImage img = allocate_rgb(width, height, max_pixels, name);
    std::vector<std::uint8_t> index(width * height, std::uint8_t(transparent >= 0 ? transparent : 0));

    // 5. LZW decoding into the frame's rectangle. Table entry e is the string
    //    of entry prefix[e] followed by byte suffix[e]; codes below `clear`
    //    are single bytes.
    const int clear = 1 << min_code_size, end = clear + 1;
    std::vector<std::uint16_t> prefix(4096);
    std::vector<std::uint8_t> suffix(4096), first(4096), stack(4097);
    for (int c = 0; c < clear; ++c) suffix[c] = first[c] = std::uint8_t(c);
    CodeReader codes(data, size, in.pos());
    int code_size = min_code_size + 1, next = clear + 2, prev = -1;
    const std::size_t total = fw * fh;
    std::size_t written = 0;
    auto put = [&](std::uint8_t v) {
        if (written >= total) return;
        const std::size_t r = written / fw, x = written % fw;
        const std::size_t y = interlaced ? interlaced_row(r, fh) : r;
        index[(y0 + y) * width + x0 + x] = v;
        ++written;
    };
    int code = 0;
    while (written < total && codes.next(code_size, code)) {
        if (code == clear) {
            code_size = min_code_size + 1;
            next = clear + 2;
            prev = -1;
            continue;
        }
        if (code == end) break;
        if (prev < 0) {
            if (code > clear) fail(name, ": broken GIF data (code ", code, " right after a clear code)");
            put(std::uint8_t(code));
            prev = code;
            continue;
        }
        if (code > next || (code == next && next >= 4096))
            fail(name, ": broken GIF data (code ", code, " with ", next, " table entries)");
        // The string of `code`; the one code not yet in the table (next) is
        // the previous string plus its own first byte.
        const int known = code < next ? code : prev;
        std::size_t n = 0;
        if (code == next) stack[n++] = first[prev];
        for (int e = known; e >= 0; e = e < clear ? -1 : prefix[e]) stack[n++] = suffix[e];
        while (n > 0) put(stack[--n]);
        if (next < 4096) {
            prefix[next] = std::uint16_t(prev);
            suffix[next] = first[known];
            first[next] = first[prev];
            ++next;
            if (next == (1 << code_size) && code_size < 12) ++code_size;
        }
        prev = code;
    }
    if (written < total)
        fail(name, ": truncated GIF (the first frame ends after ", written, " of ", total, " pixels)");

    // 6. Indices to RGB through the palette.
    std::uint8_t* px = img.pixels.data();
    for (std::size_t i = 0; i < index.size(); ++i) {
        const std::size_t v = index[i];
        for (int c = 0; c < 3; ++c)
            px[3 * i + c] = v < palette_entries ? palette[3 * v + c] : std::uint8_t(v);
    }
    return img;
}

}  // namespace mplug_owl2
