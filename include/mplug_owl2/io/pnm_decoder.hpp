// Netpbm images (P1-P6) as PIL reads them (PpmImagePlugin, Pillow 9.4), then
// convert("RGB"):
// - samples are rescaled to 8 bits as round(v / maxval * 255), Python's
//   round (ties to even), except for maxval 255 (taken as is);
// - a graymap with maxval above 255 becomes PIL mode "I" holding
//   round(v / maxval * 65535) (or v itself for maxval 65535), and
//   convert("RGB") clips that to 255: such files come out nearly white;
// - in bitmaps (P1, P4) a 1 is black.
// stb_image reads only P5/P6 and does not rescale, hence this decoder.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

#include "rgb_image.hpp"

namespace mplug_owl2 {
namespace pnm_detail {

inline bool is_space(std::uint8_t c) { return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'; }

class Reader {
public:
    Reader(const std::uint8_t* data, std::size_t size, const std::string& name) : d_(data), n_(size), name_(name) {}

    // A header token: whitespace and '#' comments (to the end of the line)
    // skipped before it; the one whitespace byte after it is consumed.
    unsigned long header_number(const char* what) {
        std::string token;
        while (token.size() <= 10) {
            if (pos_ >= n_) break;
            const std::uint8_t c = d_[pos_++];
            if (is_space(c)) {
                if (token.empty()) continue;
                break;
            }
            if (c == '#') {
                --pos_;
                skip_comment();
                continue;
            }
            token.push_back(char(c));
        }
        if (token.empty()) fail(name_, ": PNM header ends before its ", what);
        if (token.size() > 10) fail(name_, ": PNM header token for the ", what, " is too long");
        unsigned long v = 0;
        for (char c : token) {
            if (c < '0' || c > '9') fail(name_, ": PNM ", what, " is not a number: ", token);
            v = v * 10 + unsigned(c - '0');
        }
        return v;
    }

    // A sample of a plain (ASCII) file: a decimal number between whitespace
    // and comments.
    unsigned long plain_number() {
        std::string token;
        for (;;) {
            if (pos_ >= n_) break;
            const std::uint8_t c = d_[pos_];
            if (c == '#') {
                skip_comment();
                continue;
            }
            ++pos_;
            if (is_space(c)) {
                if (token.empty()) continue;
                break;
            }
            if (c < '0' || c > '9') fail(name_, ": PNM sample is not a number at byte ", pos_ - 1);
            token.push_back(char(c));
            if (token.size() > 10) fail(name_, ": PNM sample token is too long at byte ", pos_ - 1);
        }
        if (token.empty()) fail(name_, ": truncated PNM (the samples end early)");
        return std::stoul(token);
    }

    // A bit of a plain bitmap: '0' or '1', whitespace optional.
    bool plain_bit() {
        for (;;) {
            if (pos_ >= n_) fail(name_, ": truncated PNM (the samples end early)");
            const std::uint8_t c = d_[pos_++];
            if (c == '#') {
                --pos_;
                skip_comment();
                continue;
            }
            if (is_space(c)) continue;
            if (c != '0' && c != '1') fail(name_, ": PNM bitmap sample is neither 0 nor 1 at byte ", pos_ - 1);
            return c == '1';
        }
    }

    const std::uint8_t* raw(std::size_t bytes) {
        if (bytes > n_ - pos_)
            fail(name_, ": truncated PNM (", bytes, " bytes of samples expected, ", n_ - pos_, " present)");
        pos_ += bytes;
        return d_ + pos_ - bytes;
    }

private:
    // From '#' through the first CR or LF, which PIL removes with it: a
    // comment inside a token joins its two halves.
    void skip_comment() {
        while (pos_ < n_ && d_[pos_] != '\r' && d_[pos_] != '\n') ++pos_;
        if (pos_ < n_) ++pos_;
    }

    const std::uint8_t* d_;
    std::size_t n_;
    std::size_t pos_ = 0;
    const std::string& name_;
};

}  // namespace pnm_detail

inline RgbImage decode_pnm(const std::uint8_t* data, std::size_t size, const std::string& name,
                           std::size_t max_pixels) {
    using namespace pnm_detail;
    // 1. Magic number: "P" and a digit 1-6, then whitespace.
    if (size < 3 || data[0] != 'P' || data[1] < '1' || data[1] > '6' || !is_space(data[2]))
        fail(name, ": not a PNM file (P1 to P6 followed by whitespace)");
    const int kind = data[1] - '0';
    Reader in(data + 3, size - 3, name);
    const bool plain = kind <= 3, bitmap = kind == 1 || kind == 4, gray = kind == 2 || kind == 5;

    // 2. Width, height and, except for bitmaps, the largest sample value.
    const unsigned long w = in.header_number("width");
    const unsigned long h = in.header_number("height");
    unsigned long maxval = 1;
    if (!bitmap) {
        maxval = in.header_number("maxval");
        if (maxval == 0 || maxval > 65535) fail(name, ": PNM maxval ", maxval, " (expected 1 to 65535)");
    }
    RgbImage img = allocate_rgb(w, h, max_pixels, name);
    const std::size_t n = img.width * img.height, channels = gray || bitmap ? 1 : 3;
    std::uint8_t* px = img.pixels.data();
    auto store = [&](std::size_t i, std::size_t c, std::uint8_t v) {
        if (channels == 1)
            px[3 * i] = px[3 * i + 1] = px[3 * i + 2] = v;
        else
            px[3 * i + c] = v;
    };

    // 3. Bitmaps: one bit per pixel, 1 = black; binary rows are padded to a byte.
    if (bitmap) {
        const std::size_t row_bytes = (img.width + 7) / 8;
        const std::uint8_t* bits = plain ? nullptr : in.raw(row_bytes * img.height);
        for (std::size_t y = 0; y < img.height; ++y)
            for (std::size_t x = 0; x < img.width; ++x) {
                const bool one = plain ? in.plain_bit() : (bits[y * row_bytes + x / 8] >> (7 - x % 8)) & 1;
                store(y * img.width + x, 0, one ? 0 : 255);
            }
        return img;
    }

    // 4. Sample rescaling: 8 bits directly, or through PIL's 16-bit mode "I"
    //    and the clip of convert("RGB") for graymaps above maxval 255.
    const bool mode_i = gray && maxval > 255;
    auto to_u8 = [&](unsigned long v) -> std::uint8_t {
        if (maxval == 255 || (mode_i && maxval == 65535)) return std::uint8_t(std::min(v, 255ul));
        const double out_max = mode_i ? 65535.0 : 255.0;
        const double r = std::min(out_max, std::nearbyint(double(v) / double(maxval) * out_max));
        return std::uint8_t(std::min(r, 255.0));
    };
    if (plain) {
        for (std::size_t i = 0; i < n; ++i)
            for (std::size_t c = 0; c < channels; ++c) {
                const unsigned long v = in.plain_number();
                if (v > maxval) fail(name, ": PNM sample ", v, " exceeds maxval ", maxval);
                store(i, c, to_u8(v));
            }
        return img;
    }
    const std::size_t bytes_per_sample = maxval < 256 ? 1 : 2;
    const std::uint8_t* s = in.raw(n * channels * bytes_per_sample);
    for (std::size_t i = 0; i < n; ++i)
        for (std::size_t c = 0; c < channels; ++c, s += bytes_per_sample)
            store(i, c, to_u8(bytes_per_sample == 1 ? s[0] : (unsigned(s[0]) << 8) | s[1]));
    return img;
}

}  // namespace mplug_owl2
