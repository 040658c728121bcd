// What the official pipeline does to an image before the vision model:
// mm_utils.process_images (the image_aspect_ratio step), then the
// CLIPImageProcessor of transformers 4.31 (resize the shortest edge, centre
// crop, rescale, normalise, channels first). Pixel for pixel: the resizes are
// PIL's bicubic (bicubic_resize.hpp) and the float arithmetic is float32 in
// the reference's order. docs/preprocessing.md walks through it.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <xtensor/xtensor.hpp>

#include "../core/error.hpp"
#include "../io/config.hpp"
#include "../io/image.hpp"
#include "../io/rgb_image.hpp"
#include "bicubic_resize.hpp"

namespace mplug_owl2 {

// The CLIPImageProcessor settings of preprocessor_config.json. The defaults
// here are the release's (448); fields a file leaves out take
// CLIPImageProcessor's own defaults instead (224), as from_pretrained does.
struct ImageProcessorConfig {
    int size = 448;       // "size" / {"shortest_edge"}: the shorter side after the resize
    int crop_size = 448;  // "crop_size": side of the centre crop, the model's input
    std::array<double, 3> image_mean{0.48145466, 0.4578275, 0.40821073};
    std::array<double, 3> image_std{0.26862954, 0.26130258, 0.27577711};
    bool do_resize = true;
    bool do_center_crop = true;
    bool do_rescale = true;
    double rescale_factor = 1.0 / 255.0;
    bool do_normalize = true;

    static ImageProcessorConfig load(const std::string& preprocessor_config_json_path);
};

struct ProcessedImage {
    RgbImage resized;                   // the bytes the model sees: after resize and crop, crop_size²
    xt::xtensor<float, 3> pixel_values; // [3, crop_size, crop_size]
};

// expand2square: the image centred on a square of side max(w, h) filled with
// `background`; the offset along the short side is ⌊(long − short)/2⌋.
inline RgbImage expand_to_square(const RgbImage& img, const std::array<std::uint8_t, 3>& background) {
    if (img.width == img.height) return img;
    const std::size_t side = std::max(img.width, img.height);
    RgbImage out;
    out.width = out.height = side;
    out.pixels.resize(side * side * 3);
    for (std::size_t i = 0; i < side * side; ++i)
        for (int c = 0; c < 3; ++c) out.pixels[3 * i + c] = background[c];
    const std::size_t x0 = img.width < side ? (side - img.width) / 2 : 0;
    const std::size_t y0 = img.height < side ? (side - img.height) / 2 : 0;
    for (std::size_t y = 0; y < img.height; ++y)
        std::copy(img.row(y), img.row(y) + img.width * 3, out.row(y0 + y) + x0 * 3);
    return out;
}

namespace image_processor_detail {

// CLIPImageProcessor's output value of byte u in channel c: float32(u),
// times float32(rescale_factor), then (x − mean) / std in float32 — the
// reference's arithmetic, each operation rounded separately.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
#endif
inline std::array<std::array<float, 256>, 3> value_table(const ImageProcessorConfig& cfg) {
#if defined(__clang__)
#pragma clang fp contract(off)
#endif
    std::array<std::array<float, 256>, 3> table{};
    for (int c = 0; c < 3; ++c) {
        const float mean = static_cast<float>(cfg.image_mean[c]);
        const float deviation = static_cast<float>(cfg.image_std[c]);
        const float factor = static_cast<float>(cfg.rescale_factor);
        for (int u = 0; u < 256; ++u) {
            float x = static_cast<float>(u);
            if (cfg.do_rescale) x = x * factor;
            if (cfg.do_normalize) x = (x - mean) / deviation;
            table[c][u] = x;
        }
    }
    return table;
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif

}  // namespace image_processor_detail

// aspect = the model config's image_aspect_ratio:
//   "pad"    — expand2square with the colour ⌊255·image_mean⌋ = (122, 116, 104);
//   "resize" — stretch to a square of the longer side with PIL bicubic;
//   "square" — neither (training's default name for it; the official code
//              treats every other value the same way, this port refuses
//              unknown names so that a typo cannot change the preprocessing).
inline ProcessedImage process_image(const RgbImage& img, const std::string& aspect, const ImageProcessorConfig& cfg) {
    if (img.width == 0 || img.height == 0 || img.pixels.size() != img.width * img.height * 3)
        fail("process_image: input image of ", img.width, "x", img.height, " with ", img.pixels.size(),
             " bytes is empty or inconsistent");
    if (cfg.do_resize && cfg.size <= 0) fail("process_image: size must be positive, found ", cfg.size);
    if (cfg.do_center_crop && cfg.crop_size <= 0)
        fail("process_image: crop_size must be positive, found ", cfg.crop_size);

    // 1. image_aspect_ratio (mm_utils.process_images).
    RgbImage square;
    if (aspect == "pad") {
        std::array<std::uint8_t, 3> background{};
        for (int c = 0; c < 3; ++c) {
            const double v = cfg.image_mean[c] * 255;
            if (!(v >= 0 && v < 256)) fail("process_image: image_mean[", c, "] = ", cfg.image_mean[c],
                                           " gives no pad colour in 0..255");
            background[c] = static_cast<std::uint8_t>(v);  // Python's int(): truncation
        }
        square = expand_to_square(img, background);
    } else if (aspect == "resize") {
        const std::size_t side = std::max(img.width, img.height);
        square = resize_bicubic(img, side, side);
    } else if (aspect == "square") {
        square = img;
    } else {
        fail("process_image: image_aspect_ratio \"", aspect, "\" is not one of pad, resize, square");
    }

    // 2. Resize so that the shorter side is `size`; the longer one becomes
    //    int(size · long / short) (transformers' get_resize_output_image_size).
    RgbImage resized = std::move(square);
    if (cfg.do_resize) {
        const std::size_t w = resized.width, h = resized.height, s = std::size_t(cfg.size);
        const std::size_t shorter = std::min(w, h), longer = std::max(w, h);
        const auto new_long = static_cast<std::size_t>(double(s * longer) / double(shorter));
        const std::size_t out_w = w <= h ? s : new_long, out_h = w <= h ? new_long : s;
        resized = resize_bicubic(resized, out_w, out_h);
    }

    // 3. Centre crop, top-left corner at ⌊(side − crop)/2⌋.
    if (cfg.do_center_crop) {
        const std::size_t c = std::size_t(cfg.crop_size);
        if (c > resized.width || c > resized.height)
            fail("process_image: crop_size ", c, " is larger than the ", resized.width, "x", resized.height,
                 " image (the padding transformers would add is not supported)");
        if (c != resized.width || c != resized.height) {
            const std::size_t top = (resized.height - c) / 2, left = (resized.width - c) / 2;
            RgbImage crop;
            crop.width = crop.height = c;
            crop.pixels.resize(c * c * 3);
            for (std::size_t y = 0; y < c; ++y)
                std::copy(resized.row(top + y) + left * 3, resized.row(top + y) + (left + c) * 3, crop.row(y));
            resized = std::move(crop);
        }
    }

    // 4. Rescale and normalise per channel, channels first: [3, H, W].
    const auto table = image_processor_detail::value_table(cfg);
    ProcessedImage out;
    out.pixel_values = xt::xtensor<float, 3>::from_shape({3, resized.height, resized.width});
    const std::size_t n = resized.width * resized.height;
    float* pv = out.pixel_values.data();
    for (int c = 0; c < 3; ++c)
        for (std::size_t i = 0; i < n; ++i) pv[std::size_t(c) * n + i] = table[c][resized.pixels[3 * i + c]];
    out.resized = std::move(resized);
    return out;
}

// ---- preprocessor_config.json ----------------------------------------------

namespace image_processor_detail {

// "size" and "crop_size": an integer, or an object with "shortest_edge"
// (size) or equal "height" and "width" (crop_size).
inline int read_side(const nlohmann::json& j, const std::string& path, const char* key, bool shortest_edge) {
    const auto& v = j[key];
    auto as_int = [&](const nlohmann::json& x, const std::string& field) {
        if (!x.is_number_integer() || x.get<long long>() <= 0 || x.get<long long>() > (1 << 24))
            fail(path, ": ", field, ": expected a positive integer, found ", config_detail::Fields::describe(x));
        return int(x.get<long long>());
    };
    if (v.is_number()) return as_int(v, key);
    if (v.is_object()) {
        if (shortest_edge && v.size() == 1 && v.contains("shortest_edge"))
            return as_int(v["shortest_edge"], std::string(key) + ".shortest_edge");
        if (!shortest_edge && v.size() == 2 && v.contains("height") && v.contains("width")) {
            const int h = as_int(v["height"], std::string(key) + ".height");
            const int w = as_int(v["width"], std::string(key) + ".width");
            if (h != w) fail(path, ": ", key, ": only square crops are supported, found ", v.dump());
            return h;
        }
    }
    fail(path, ": ", key, ": expected an integer or ",
         shortest_edge ? "{\"shortest_edge\": n} (CLIPImageProcessor resizes the shortest edge)"
                       : "{\"height\": n, \"width\": n}",
         ", found ", config_detail::Fields::describe(v));
}

inline std::array<double, 3> read_triple(const nlohmann::json& j, const std::string& path, const char* key) {
    const auto& v = j[key];
    if (v.is_number()) return {v.get<double>(), v.get<double>(), v.get<double>()};
    if (v.is_array() && v.size() == 3 && v[0].is_number() && v[1].is_number() && v[2].is_number())
        return {v[0].get<double>(), v[1].get<double>(), v[2].get<double>()};
    fail(path, ": ", key, ": expected a number or 3 numbers, found ", config_detail::Fields::describe(v));
}

}  // namespace image_processor_detail

inline ImageProcessorConfig ImageProcessorConfig::load(const std::string& path) {
    using namespace image_processor_detail;
    std::ifstream in(path);
    if (!in) fail(path, ": cannot open");
    const nlohmann::json j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object()) fail(path, ": not a JSON object");
    config_detail::Fields f(j, path + ": ");

    ImageProcessorConfig c;
    c.size = c.crop_size = 224;  // CLIPImageProcessor's defaults for absent fields
    if (f.present("size")) c.size = read_side(j, path, "size", true);
    if (f.present("crop_size")) c.crop_size = read_side(j, path, "crop_size", false);
    if (f.present("image_mean")) c.image_mean = read_triple(j, path, "image_mean");
    if (f.present("image_std")) c.image_std = read_triple(j, path, "image_std");
    f.get("do_resize", c.do_resize);
    f.get("do_center_crop", c.do_center_crop);
    f.get("do_rescale", c.do_rescale);
    f.get("rescale_factor", c.rescale_factor);
    f.get("do_normalize", c.do_normalize);
    // The official pipeline converts to RGB when it opens the file, so
    // do_convert_rgb changes nothing; it is only checked for its type.
    bool convert_rgb = true;
    f.get("do_convert_rgb", convert_rgb);
    int resample = 3;
    f.get("resample", resample);
    if (resample != 3) fail(path, ": resample: only 3 (PIL bicubic) is supported, found ", resample);
    for (int i = 0; i < 3; ++i)
        if (c.image_std[i] == 0) fail(path, ": image_std: entry ", i, " is zero");
    return c;
}

// ---- mm_utils.process_images: image files as the model's input ----------------

// What a checkpoint folder says about its images: the CLIP settings of its
// preprocessor_config.json (without one, CLIP's mean and std at the vision
// tower's image_size, as synthetic and reference checkpoints need) and
// config.json's image_aspect_ratio (without one, pad: the official CLI's
// --image-aspect-ratio default).
struct ImagePreprocessing {
    ImageProcessorConfig processor;
    std::string aspect = "pad";
    std::size_t image_size = 448;  // the side the vision tower takes
    std::string processor_path;    // the preprocessor_config.json read; empty: none, and the sizes fit

    static ImagePreprocessing of_checkpoint(const std::string& dir, const ModelConfig& config) {
        ImagePreprocessing p;
        p.image_size = static_cast<std::size_t>(config.vision.image_size);
        p.aspect = config.image_aspect_ratio.value_or("pad");
        const std::string path = dir + "/preprocessor_config.json";
        if (std::ifstream(path).good()) {
            p.processor = ImageProcessorConfig::load(path);
            p.processor_path = path;
        } else {
            p.processor.size = p.processor.crop_size = config.vision.image_size;
        }
        return p;
    }

    // Image files -> [N, 3, S, S]; `each` sees every image after preprocessing.
    template <class T>
    xt::xtensor<T, 4> pixel_values(const std::vector<std::string>& image_files,
                                   const std::function<void(std::size_t, const ProcessedImage&)>& each = {}) const {
        const std::size_t S = image_size;
        xt::xtensor<T, 4> pixels = xt::xtensor<T, 4>::from_shape({image_files.size(), 3, S, S});
        for (std::size_t n = 0; n < image_files.size(); ++n) {
            const ProcessedImage img = process_image(load_image(image_files[n]), aspect, processor);
            const auto& pv = img.pixel_values;
            if (pv.shape(1) != S || pv.shape(2) != S)
                fail(image_files[n], ": preprocessing gives ", pv.shape(1), "x", pv.shape(2), " pixels, the model takes ",
                     S, "x", S, " (check ", processor_path, ")");
            std::copy(pv.begin(), pv.end(), pixels.begin() + std::ptrdiff_t(n * 3 * S * S));
            if (each) each(n, img);
        }
        return pixels;
    }
};

// One call: image files -> the model's input [N, 3, S, S] with the settings
// of checkpoint folder `dir` (its config.json and preprocessor_config.json).
template <class T>
xt::xtensor<T, 4> process_images(const std::vector<std::string>& image_files, const std::string& dir) {
    return ImagePreprocessing::of_checkpoint(dir, load_config(dir + "/config.json")).pixel_values<T>(image_files);
}

}  // namespace mplug_owl2
