// JPEG through libjpeg-turbo with the settings PIL uses (JpegImagePlugin and
// its C decoder): libjpeg's defaults (ISLOW inverse DCT, fancy upsampling),
// output in RGB, gray or CMYK as the file has 1, 3 or 4 components. PIL links
// the same library, so the decoded bytes are the same; stb_image's own JPEG
// decoder differs from it by up to 3 steps on a few percent of the pixels of
// ordinary photos (docs/preprocessing.md has the figures).
#pragma once

#include <csetjmp>
#include <cstdint>
#include <cstdio>  // jpeglib.h needs FILE and size_t declared first
#include <cstring>
#include <string>
#include <vector>

#include <jerror.h>
#include <jpeglib.h>

#include "rgb_image.hpp"

namespace mplug_owl2 {
namespace jpeg_detail {

// libjpeg reports a fatal error by calling error_exit, which must not return:
// it jumps back to the setjmp of the step that called into libjpeg.
struct Decompressor {
    struct ErrorManager {
        jpeg_error_mgr pub;
        std::jmp_buf jump;
        char message[JMSG_LENGTH_MAX];
    } err;
    jpeg_decompress_struct cinfo;
    bool created = false;

    Decompressor() {
        std::memset(&cinfo, 0, sizeof cinfo);
        std::memset(err.message, 0, sizeof err.message);
    }
    ~Decompressor() {
        if (created) jpeg_destroy_decompress(&cinfo);
    }
    Decompressor(const Decompressor&) = delete;
    Decompressor& operator=(const Decompressor&) = delete;
};

inline void error_exit(j_common_ptr cinfo) {
    auto* err = reinterpret_cast<Decompressor::ErrorManager*>(cinfo->err);
    (*cinfo->err->format_message)(cinfo, err->message);
    std::longjmp(err->jump, 1);
}

// PIL ignores libjpeg's warnings (corrupt data is decoded as far as it goes)
// but refuses a file that ends early, where libjpeg would pad with grey.
inline void emit_message(j_common_ptr cinfo, int level) {
    if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) error_exit(cinfo);
}

// The two steps that call into libjpeg. Only trivially destructible locals
// live here, so a longjmp out of libjpeg skips no destructor.
inline bool read_header(Decompressor& d, const std::uint8_t* data, std::size_t size) {
    d.cinfo.err = jpeg_std_error(&d.err.pub);
    d.err.pub.error_exit = error_exit;
    d.err.pub.emit_message = emit_message;
    if (setjmp(d.err.jump)) return false;
    jpeg_create_decompress(&d.cinfo);
    d.created = true;
    jpeg_mem_src(&d.cinfo, data, static_cast<unsigned long>(size));
    jpeg_read_header(&d.cinfo, TRUE);
    return true;
}

inline bool read_pixels(Decompressor& d, J_COLOR_SPACE out_space, std::uint8_t* out, std::size_t row_bytes) {
    if (setjmp(d.err.jump)) return false;
    d.cinfo.out_color_space = out_space;
    jpeg_start_decompress(&d.cinfo);
    while (d.cinfo.output_scanline < d.cinfo.output_height) {
        JSAMPROW row = out + std::size_t(d.cinfo.output_scanline) * row_bytes;
        jpeg_read_scanlines(&d.cinfo, &row, 1);
    }
    return true;
}

}  // namespace jpeg_detail

inline RgbImage decode_jpeg(const std::uint8_t* data, std::size_t size, const std::string& name,
                            std::size_t max_pixels) {
    using namespace jpeg_detail;
    Decompressor d;
    if (!read_header(d, data, size)) {
        // libjpeg refuses sides above JPEG_MAX_DIMENSION (65500) once it has
        // read the frame header: report that size against our own budget first.
        if (d.err.pub.msg_code == JERR_IMAGE_TOO_BIG) {
            check_image_size(d.cinfo.image_width, d.cinfo.image_height, max_pixels, name);
            fail(name, ": image of ", d.cinfo.image_width, "x", d.cinfo.image_height,
                 " pixels exceeds the limit of ", JPEG_MAX_DIMENSION, " pixels per side of libjpeg");
        }
        fail(name, ": not a readable JPEG (", d.err.message, ")");
    }
    const int components = d.cinfo.num_components;
    if (components != 1 && components != 3 && components != 4)
        fail(name, ": JPEG with ", components, " components (PIL reads 1, 3 or 4)");
    RgbImage img = allocate_rgb(d.cinfo.image_width, d.cinfo.image_height, max_pixels, name);
    const std::size_t n = img.width * img.height;

    // 1. 3 components: libjpeg converts YCbCr (or RGB) to RGB, straight into the image.
    if (components == 3) {
        if (!read_pixels(d, JCS_RGB, img.pixels.data(), img.width * 3))
            fail(name, ": truncated or corrupt JPEG (", d.err.message, ")");
        return img;
    }
    // 2. Gray or CMYK: decode to a buffer, then convert as PIL's convert("RGB") does.
    std::vector<std::uint8_t> raw(n * std::size_t(components));
    if (!read_pixels(d, components == 1 ? JCS_GRAYSCALE : JCS_CMYK, raw.data(), img.width * std::size_t(components)))
        fail(name, ": truncated or corrupt JPEG (", d.err.message, ")");
    std::uint8_t* px = img.pixels.data();
    if (components == 1) {
        for (std::size_t i = 0; i < n; ++i) px[3 * i] = px[3 * i + 1] = px[3 * i + 2] = raw[i];
        return img;
    }
    // PIL stores CMYK JPEGs inverted, as Adobe writes them ("CMYK;I":
    // C = 255 - sample), and converts with r = (255 - K) - C(255 - K)/255,
    // the product rounded as muldiv255. In samples c, k of the file:
    // r = k - muldiv255(255 - c, k).
    auto muldiv255 = [](unsigned a, unsigned b) {
        const unsigned t = a * b + 128;
        return ((t >> 8) + t) >> 8;
    };
    for (std::size_t i = 0; i < n; ++i) {
        const unsigned k = raw[4 * i + 3];
        for (int c = 0; c < 3; ++c)
            px[3 * i + c] = static_cast<std::uint8_t>(k - muldiv255(255u - raw[4 * i + c], k));
    }
    return img;
}

}  // namespace mplug_owl2
