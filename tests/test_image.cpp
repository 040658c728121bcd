// Image input: decoding and the official preprocessing, pixel for pixel.
// - Every file of tests/fixtures/images/inputs (each supported format and
//   variant) decodes to exactly the bytes PIL's convert("RGB") gives, except
//   16-bit BMP, whose documented bound is one step.
// - resize_bicubic and process_image reproduce PIL / the official pipeline
//   (expected bytes from make_fixtures.py), byte for byte and bit for bit.
// - The reference cases' images (reference_outputs/tiny), the PNGs and the
//   JPEG photo, give the official resized_u8 and pixel_values exactly.
// - Malformed files and configurations fail with the file or field named.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>

#include <nlohmann/json.hpp>

#include "mplug_owl2/io/image.hpp"
#include "mplug_owl2/io/zip_archive.hpp"  // crc32, also PNG's chunk checksum
#include "mplug_owl2/model/image_processor.hpp"
#include "parity.hpp"

using namespace mplug_owl2;

namespace {

const std::string kImages = std::string(MPLUG_OWL2_FIXTURE_DIR) + "/images";
const std::string kTmp = MPLUG_OWL2_TEST_TMP;

std::vector<std::uint8_t> read_bytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    REQUIRE(in.good());
    return std::vector<std::uint8_t>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

std::vector<float> read_f32(const std::string& path) {
    const auto bytes = read_bytes(path);
    std::vector<float> v(bytes.size() / 4);
    std::memcpy(v.data(), bytes.data(), v.size() * 4);
    return v;
}

std::string write_tmp(const std::string& name, const std::vector<std::uint8_t>& bytes) {
    const std::string path = kTmp + "/" + name;
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
    return path;
}

nlohmann::json manifest() {
    std::ifstream in(kImages + "/manifest.json");
    REQUIRE(in.good());
    nlohmann::json j;
    in >> j;
    return j;
}

// Largest difference between two byte buffers of the same size, in steps.
int max_step(const std::vector<std::uint8_t>& a, const std::vector<std::uint8_t>& b) {
    REQUIRE(a.size() == b.size());
    int m = 0;
    for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(int(a[i]) - int(b[i])));
    return m;
}

std::string fnv1a64(const void* data, std::size_t n) {
    std::uint64_t h = 0xCBF29CE484222325ull;
    const auto* p = static_cast<const std::uint8_t*>(data);
    for (std::size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001B3ull;
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
    return buf;
}

// Number of float32 values that differ bitwise, and the largest |difference|.
struct FloatDiff {
    std::size_t count = 0;
    double max_abs = 0;
};
template <class A, class B>
FloatDiff float_diff(const A& ours, const B& ref, std::size_t n) {
    FloatDiff d;
    for (std::size_t i = 0; i < n; ++i) {
        const float o = ours[i], r = static_cast<float>(ref[i]);
        if (std::memcmp(&o, &r, 4) != 0) ++d.count;
        d.max_abs = std::max(d.max_abs, std::abs(double(o) - double(r)));
    }
    return d;
}

ImageProcessorConfig sized(int size, int crop) {
    ImageProcessorConfig cfg;
    cfg.size = size;
    cfg.crop_size = crop;
    return cfg;
}

std::string error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const Error& e) {
        return e.what();
    }
    return "(no error)";
}

// A 1x1 8-bit gray PNG: filter byte 0 and one pixel `value`, followed by
// `matches` deflate matches of 258 zero bytes each (0 for a correct file).
std::vector<std::uint8_t> gray_png_1x1(std::size_t matches, std::uint8_t value = 0) {
    // Deflate, fixed Huffman codes (RFC 1951 3.2.6): bits are packed from
    // the least significant; Huffman codes go most significant bit first.
    std::vector<std::uint8_t> z = {0x78, 0x01};  // zlib header: deflate, 32K window, no dictionary
    std::uint32_t acc = 0;
    int nbits = 0;
    auto bits = [&](std::uint32_t v, int n) {
        for (int i = 0; i < n; ++i) {
            acc |= ((v >> i) & 1u) << nbits;
            if (++nbits == 8) z.push_back(std::uint8_t(acc)), acc = 0, nbits = 0;
        }
    };
    auto code = [&](std::uint32_t c, int n) {
        for (int i = n - 1; i >= 0; --i) bits((c >> i) & 1u, 1);
    };
    bits(1, 1);                      // BFINAL
    bits(1, 2);                      // BTYPE 01: fixed codes
    code(0x30 + 0, 8);               // literal 0: the row's filter byte
    REQUIRE(value < 144);
    code(0x30 + value, 8);           // literal value (below 144: 8-bit codes from 0x30)
    for (std::size_t k = 0; k < matches; ++k) {
        code(0xC0 + (285 - 280), 8);  // length 258 (symbol 285, no extra bits)
        code(0, 5);                   // distance 1 (code 0)
    }
    code(0, 7);  // end of block (symbol 256)
    if (nbits) z.push_back(std::uint8_t(acc));
    // Adler-32 of the inflated bytes: 0, value, then 258 * matches copies of value.
    std::uint32_t a = 1, b = 0;
    const std::size_t total = 2 + 258 * matches;
    for (std::size_t i = 0; i < total; ++i) {
        a = (a + (i == 0 ? 0u : value)) % 65521u;
        b = (b + a) % 65521u;
    }
    for (int s = 24; s >= 0; s -= 8) z.push_back(std::uint8_t(((b << 16) | a) >> s));

    std::vector<std::uint8_t> png = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    auto chunk = [&](const char* type, const std::vector<std::uint8_t>& data) {
        for (int s = 24; s >= 0; s -= 8) png.push_back(std::uint8_t(data.size() >> s));
        std::vector<std::uint8_t> body(type, type + 4);
        body.insert(body.end(), data.begin(), data.end());
        png.insert(png.end(), body.begin(), body.end());
        const std::uint32_t crc = crc32(body.data(), body.size());
        for (int s = 24; s >= 0; s -= 8) png.push_back(std::uint8_t(crc >> s));
    };
    chunk("IHDR", {0, 0, 0, 1, 0, 0, 0, 1, 8, 0, 0, 0, 0});  // 1x1, 8 bits, gray
    chunk("IDAT", z);
    chunk("IEND", {});
    return png;
}

}  // namespace

TEST_CASE("every fixture format decodes to the bytes PIL gives", "[image][decode]") {
    const auto cases = manifest()["decode"];
    REQUIRE(cases.size() >= 50);
    for (const auto& c : cases) {
        const std::string input = c["input"];
        INFO(input << " (PIL mode " << c["pil_mode"].get<std::string>() << ")");
        const RgbImage img = load_image(kImages + "/" + input);
        REQUIRE(img.width == c["width"].get<std::size_t>());
        REQUIRE(img.height == c["height"].get<std::size_t>());
        const int step = max_step(img.pixels, read_bytes(kImages + "/" + c["expected"].get<std::string>()));
        INFO("max difference " << step << " steps");
        CHECK(step <= c["max_step_difference"].get<int>());
        if (c["max_step_difference"].get<int>() > 0) CHECK(step == c["max_step_difference"].get<int>());
    }
}

TEST_CASE("zero-length IDAT chunks decode to the pixels of the file without them", "[image][decode]") {
    // stb_image would copy such a chunk ahead of the data with memcpy(NULL, p, 0);
    // the decoder drops them first. An empty IDAT (CRC of "IDAT": 35 AF 06 1E)
    // goes before the first IDAT and another before IEND.
    for (const char* name : {"gray.png", "palette.png", "rgb_interlaced.png"}) {
        INFO(name);
        const std::vector<std::uint8_t> png = read_bytes(kImages + "/inputs/" + name);
        const std::vector<std::uint8_t> empty = {0, 0, 0, 0, 'I', 'D', 'A', 'T', 0x35, 0xAF, 0x06, 0x1E};
        auto find = [&](const char* type) {
            for (std::size_t at = 8; at + 12 <= png.size();) {
                if (std::memcmp(&png[at + 4], type, 4) == 0) return at;
                at += 12 + (std::size_t(png[at]) << 24 | std::size_t(png[at + 1]) << 16 |
                            std::size_t(png[at + 2]) << 8 | png[at + 3]);
            }
            FAIL("no " << type << " chunk");
            return std::size_t(0);
        };
        const std::size_t idat = find("IDAT"), iend = find("IEND");
        std::vector<std::uint8_t> with(png.begin(), png.begin() + std::ptrdiff_t(idat));
        with.insert(with.end(), empty.begin(), empty.end());
        with.insert(with.end(), png.begin() + std::ptrdiff_t(idat), png.begin() + std::ptrdiff_t(iend));
        with.insert(with.end(), empty.begin(), empty.end());
        with.insert(with.end(), png.begin() + std::ptrdiff_t(iend), png.end());
        const RgbImage expect = load_image(kImages + "/inputs/" + name);
        const RgbImage got = load_image(write_tmp(std::string("empty_idat_") + name, with));
        CHECK(got.width == expect.width);
        CHECK(got.height == expect.height);
        CHECK(got.pixels == expect.pixels);
    }
}

TEST_CASE("resize_bicubic equals PIL's bicubic resize byte for byte", "[image][resize]") {
    const auto cases = manifest()["resize"];
    REQUIRE(cases.size() >= 10);
    for (const auto& c : cases) {
        const std::size_t w = c["width"], h = c["height"];
        INFO(c["input"].get<std::string>() << " to " << w << "x" << h);
        const RgbImage out = resize_bicubic(load_image(kImages + "/" + c["input"].get<std::string>()), w, h);
        REQUIRE(out.width == w);
        REQUIRE(out.height == h);
        CHECK(max_step(out.pixels, read_bytes(kImages + "/" + c["expected"].get<std::string>())) == 0);
    }
}

TEST_CASE("resize_bicubic to the same size copies and refuses empty sizes", "[image][resize]") {
    const RgbImage img = load_image(kImages + "/inputs/photo_97x61.png");
    CHECK(resize_bicubic(img, img.width, img.height).pixels == img.pixels);
    CHECK_THROWS_AS(resize_bicubic(img, 0, 5), Error);
    CHECK_THROWS_AS(resize_bicubic(RgbImage{}, 5, 5), Error);
}

TEST_CASE("process_image reproduces the official preprocessing for every aspect", "[image][process]") {
    const auto cases = manifest()["process"];
    REQUIRE(cases.size() >= 60);
    std::size_t with_values = 0, at_448 = 0;
    for (const auto& c : cases) {
        const std::string aspect = c["aspect"];
        const int size = c["size"], crop = c["crop_size"];
        INFO(c["input"].get<std::string>() << ", " << aspect << ", size " << size << ", crop " << crop);
        const ProcessedImage p =
            process_image(load_image(kImages + "/" + c["input"].get<std::string>()), aspect, sized(size, crop));
        REQUIRE(p.resized.width == std::size_t(crop));
        REQUIRE(p.resized.height == std::size_t(crop));
        REQUIRE(p.pixel_values.shape(0) == 3);
        REQUIRE(p.pixel_values.shape(1) == std::size_t(crop));
        REQUIRE(p.pixel_values.shape(2) == std::size_t(crop));
        if (c.contains("fnv1a64")) {
            ++at_448;
            CHECK(fnv1a64(p.resized.pixels.data(), p.resized.pixels.size()) == c["fnv1a64"].get<std::string>());
            CHECK(fnv1a64(p.pixel_values.data(), p.pixel_values.size() * 4) ==
                  c["pixel_values_fnv1a64"].get<std::string>());
            continue;
        }
        CHECK(max_step(p.resized.pixels, read_bytes(kImages + "/" + c["expected"].get<std::string>())) == 0);
        if (c.contains("pixel_values")) {
            ++with_values;
            const auto ref = read_f32(kImages + "/" + c["pixel_values"].get<std::string>());
            REQUIRE(ref.size() == p.pixel_values.size());
            const FloatDiff d = float_diff(p.pixel_values.data(), ref.data(), ref.size());
            INFO(d.count << " values differ, max |diff| " << d.max_abs);
            CHECK(d.count == 0);
        }
    }
    CHECK(with_values == 3);
    CHECK(at_448 == 3);
}

TEST_CASE("the float32 value of every byte matches numpy's arithmetic", "[image][process]") {
    // A 256x1 image holding every byte value in every channel, neither
    // resized nor cropped: pixel_values is then the value table itself.
    RgbImage ramp;
    ramp.width = 256;
    ramp.height = 1;
    for (int u = 0; u < 256; ++u) ramp.pixels.insert(ramp.pixels.end(), 3, std::uint8_t(u));
    const auto tables = manifest()["value_tables"];  // a copy: the manifest itself is a temporary
    for (const auto& t : tables) {
        ImageProcessorConfig cfg;
        cfg.do_resize = cfg.do_center_crop = false;
        for (int c = 0; c < 3; ++c) {
            cfg.image_mean[c] = t["image_mean"][c];
            cfg.image_std[c] = t["image_std"][c];
        }
        cfg.rescale_factor = t["rescale_factor"];
        const ProcessedImage p = process_image(ramp, "square", cfg);
        const auto ref = read_f32(kImages + "/" + t["expected"].get<std::string>());
        REQUIRE(ref.size() == 3 * 256);
        const FloatDiff d = float_diff(p.pixel_values.data(), ref.data(), ref.size());
        INFO("mean " << t["image_mean"].dump() << ": " << d.count << " values differ, max |diff| " << d.max_abs);
        CHECK(d.count == 0);
    }
}

TEST_CASE("the reference cases' images give the official resized_u8 and pixel_values exactly", "[image][parity]") {
    // image_then_text: 97x61 PNG, pad; two_images: 40x90 and 64x64 PNGs,
    // resize; photo_jpeg: coffee.jpg (600x400 JPEG), pad.
    std::ifstream cfg_in(parity::tiny_dir() + "/config.json");
    const nlohmann::json model_cfg = nlohmann::json::parse(cfg_in);
    const int size = model_cfg["visual_config"]["visual_model"]["image_size"];
    std::size_t checked = 0;
    for (const std::string name : {"image_then_text", "two_images", "photo_jpeg"}) {
        const auto c = parity::tiny_case(name);
        const parity::Case ref(name);
        for (std::size_t i = 0; i < c["images"].size(); ++i) {
            const std::string file = c["images"][i];
            INFO(name << " image " << i << " (" << file << ", " << c["image_aspect_ratio"].get<std::string>() << ")");
            const ProcessedImage p = process_image(load_image(parity::tiny_dir() + "/" + file),
                                                   c["image_aspect_ratio"], sized(size, size));
            const auto u8 = ref.get("image." + std::to_string(i) + ".resized_u8");
            const auto pv = ref.get("image." + std::to_string(i) + ".pixel_values");
            REQUIRE(u8.size() == p.resized.pixels.size());
            REQUIRE(pv.size() == p.pixel_values.size());
            int step = 0;
            for (std::size_t k = 0; k < u8.size(); ++k)
                step = std::max(step, std::abs(int(p.resized.pixels[k]) - int(u8.data()[k])));
            const FloatDiff d = float_diff(p.pixel_values.data(), pv.data(), pv.size());
            INFO("resized_u8: max " << step << " steps; pixel_values: " << d.count << " differ, max |diff| " << d.max_abs);
            CHECK(step == 0);
            CHECK(d.count == 0);
            ++checked;
        }
    }
    CHECK(checked == 4);
}

TEST_CASE("the JPEG photo decodes exactly as PIL decodes it", "[image][parity][jpeg]") {
    // The measured bound of docs/preprocessing.md: libjpeg-turbo with PIL's
    // settings is 0 steps from the reference (stb_image would be up to 3).
    const auto c = parity::tiny_case("photo_jpeg");
    const parity::Case ref("photo_jpeg");
    const RgbImage img = load_image(parity::tiny_dir() + "/coffee.jpg");
    REQUIRE(img.width == 600);
    REQUIRE(img.height == 400);
    const ProcessedImage p = process_image(img, c["image_aspect_ratio"], sized(56, 56));
    const auto u8 = ref.get("image.0.resized_u8");
    int step = 0;
    for (std::size_t k = 0; k < u8.size(); ++k)
        step = std::max(step, std::abs(int(p.resized.pixels[k]) - int(u8.data()[k])));
    CHECK(step == 0);
    const auto pv = ref.get("image.0.pixel_values");
    CHECK(float_diff(p.pixel_values.data(), pv.data(), pv.size()).max_abs == 0.0);
}

TEST_CASE("pad fills with the floor of 255 times the mean and centres the image", "[image][process]") {
    RgbImage img;
    img.width = 5;
    img.height = 2;
    img.pixels.assign(5 * 2 * 3, 7);
    ImageProcessorConfig cfg;
    cfg.do_resize = cfg.do_center_crop = false;
    const ProcessedImage p = process_image(img, "pad", cfg);
    REQUIRE(p.resized.width == 5);
    REQUIRE(p.resized.height == 5);
    // Rows 0 and 3, 4 are the pad colour (122, 116, 104); rows 1 and 2 the image: offset ⌊(5 − 2)/2⌋ = 1.
    for (std::size_t y = 0; y < 5; ++y) {
        const bool inside = y == 1 || y == 2;
        CHECK(p.resized.row(y)[0] == (inside ? 7 : 122));
        CHECK(p.resized.row(y)[1] == (inside ? 7 : 116));
        CHECK(p.resized.row(y)[2] == (inside ? 7 : 104));
    }
}

TEST_CASE("malformed and hostile image files fail with the file named", "[image][errors]") {
    auto fails_with = [](const std::string& path, const std::string& what) {
        const std::string msg = error_of([&] { load_image(path); });
        INFO(msg);
        CHECK_THAT(msg, Catch::Contains(path));
        CHECK_THAT(msg, Catch::Contains(what));
    };
    SECTION("missing, empty, a folder") {
        fails_with(kTmp + "/no_such_image.png", "cannot open");
        fails_with(write_tmp("empty.png", {}), "empty file");
        fails_with(kTmp, "not a regular file");
    }
    SECTION("truncated files") {
        for (const std::string name : {"rgb.png", "photo_420.jpg", "photo_progressive.jpg", "palette.gif",
                                       "rgb.bmp", "rgb.tga", "rgb_rle.tga", "raw.ppm", "raw.pbm", "plain.pbm"}) {
            auto bytes = read_bytes(kImages + "/inputs/" + name);
            bytes.resize(bytes.size() * 2 / 3);
            const std::string path = write_tmp("truncated_" + name, bytes);
            const std::string msg = error_of([&] { load_image(path); });
            INFO(msg);
            CHECK_THAT(msg, Catch::Contains(path));
            CHECK_THAT(msg, Catch::Contains("truncated") || Catch::Contains("corrupt"));
        }
        // Only the last row's padding missing: PIL reads such a BMP, and so do we.
        auto bmp = read_bytes(kImages + "/inputs/rgb.bmp");
        bmp.resize(bmp.size() - 3);  // 23 RGB pixels = 69 bytes, padded to 72
        CHECK(load_image(write_tmp("unpadded.bmp", bmp)).pixels == read_bytes(kImages + "/expected/rgb.bmp.rgb"));
    }
    SECTION("random bytes and unsupported formats") {
        std::mt19937 g(7);
        std::vector<std::uint8_t> noise(4096);
        for (auto& b : noise) b = std::uint8_t(g() & 0xFF);
        noise[0] = 'x';  // not a signature by chance
        fails_with(write_tmp("noise.bin", noise), "not an image in a supported format");
        const std::vector<std::uint8_t> webp = {'R', 'I', 'F', 'F', 0x24, 0, 0, 0, 'W', 'E', 'B', 'P', 'V', 'P', '8', ' '};
        fails_with(write_tmp("image.webp", webp), "not an image in a supported format");
        const std::vector<std::uint8_t> tiff = {'I', 'I', 42, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
        fails_with(write_tmp("image.tif", tiff), "not an image in a supported format");
        const std::string text = "just some text, not a picture\n";
        fails_with(write_tmp("text.png", std::vector<std::uint8_t>(text.begin(), text.end())),
                   "not an image in a supported format");
        // A corrupt PNG body behind a valid signature and header.
        auto png = read_bytes(kImages + "/inputs/rgb.png");
        for (std::size_t i = 40; i < png.size() - 20; ++i) png[i] ^= 0x5A;
        fails_with(write_tmp("scrambled.png", png), "scrambled.png");
    }
    SECTION("gigantic sizes in the header are refused before any allocation") {
        // PNG: signature, then an IHDR chunk claiming 60000 x 60000 RGB.
        std::vector<std::uint8_t> png = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R',
                                         0, 0, 0xEA, 0x60, 0, 0, 0xEA, 0x60, 8, 2, 0, 0, 0, 0, 0, 0, 0};
        fails_with(write_tmp("huge.png", png), "exceeds the limit");
        // JPEG: a real file with the frame header's size patched to 60000 x 60000.
        auto jpeg = read_bytes(kImages + "/inputs/photo_444.jpg");
        std::size_t sof = 2;
        while (sof + 9 < jpeg.size() && !(jpeg[sof] == 0xFF && jpeg[sof + 1] == 0xC0)) ++sof;
        REQUIRE(sof + 9 < jpeg.size());
        jpeg[sof + 5] = jpeg[sof + 7] = 0xEA;
        jpeg[sof + 6] = jpeg[sof + 8] = 0x60;
        fails_with(write_tmp("huge.jpg", jpeg), "exceeds the limit");
        // GIF: a 65535 x 65535 logical screen.
        std::vector<std::uint8_t> gif = {'G', 'I', 'F', '8', '9', 'a', 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0,
                                         0x2C, 0, 0, 0, 0, 1, 0, 1, 0, 0, 8, 2, 0x00, 0x01, 0, 0x3B};
        fails_with(write_tmp("huge.gif", gif), "exceeds the limit");
        // BMP: a 40-byte info header claiming 60000 x 60000 at 24 bits.
        std::vector<std::uint8_t> bmp(54, 0);
        bmp[0] = 'B', bmp[1] = 'M', bmp[10] = 54, bmp[14] = 40;
        bmp[18] = 0x60, bmp[19] = 0xEA, bmp[22] = 0x60, bmp[23] = 0xEA, bmp[26] = 1, bmp[28] = 24;
        fails_with(write_tmp("huge.bmp", bmp), "exceeds the limit");
        // PNM: the header alone.
        const std::string pnm = "P6\n60000 60000\n255\n";
        fails_with(write_tmp("huge.ppm", std::vector<std::uint8_t>(pnm.begin(), pnm.end())), "exceeds the limit");
        // The sizes named in the issue, with the exact message: a PNG of 100000 x 100000 ...
        std::vector<std::uint8_t> png100k = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R',
                                             0, 0x01, 0x86, 0xA0, 0, 0x01, 0x86, 0xA0, 8, 2, 0, 0, 0, 0, 0, 0, 0};
        const std::string png_path = write_tmp("huge100k.png", png100k);
        CHECK(error_of([&] { load_image(png_path); }) ==
              png_path + ": image of 100000x100000 pixels exceeds the limit of 268435456 pixels");
        // ... and a JPEG of 65535 x 65535, past libjpeg's own limit of 65500 per side: our budget is
        // reported first, libjpeg's when the budget would allow the image.
        jpeg[sof + 5] = jpeg[sof + 6] = jpeg[sof + 7] = jpeg[sof + 8] = 0xFF;
        const std::string jpeg_path = write_tmp("huge65535.jpg", jpeg);
        CHECK(error_of([&] { load_image(jpeg_path); }) ==
              jpeg_path + ": image of 65535x65535 pixels exceeds the limit of 268435456 pixels");
        CHECK(error_of([&] { load_image(jpeg_path, std::size_t(1) << 40); }) ==
              jpeg_path + ": image of 65535x65535 pixels exceeds the limit of 65500 pixels per side of libjpeg");
    }
    SECTION("PNG data that inflates past its header's size is refused before it is held") {
        // A 1x1 8-bit gray PNG whose zlib stream inflates to 16 MiB of zeros
        // (a fixed-Huffman deflate block: one literal, then matches of 258
        // bytes at distance 1), and the same PNG with a correct 2-byte stream.
        const std::string bomb = write_tmp("bomb.png", gray_png_1x1(65536));
        CHECK(error_of([&] { load_image(bomb); }) ==
              bomb + ": corrupt image (its compressed data expands past the 1x1 pixels of its header)");
        const RgbImage ok = load_image(write_tmp("not_bomb.png", gray_png_1x1(0, 0x7F)));
        CHECK(ok.width == 1);
        CHECK(ok.pixels == std::vector<std::uint8_t>{0x7F, 0x7F, 0x7F});
    }
    SECTION("a smaller pixel budget refuses an ordinary image") {
        const std::string path = kImages + "/inputs/photo_large_420.jpg";
        const std::string msg = error_of([&] { load_image(path, 1000); });
        CHECK_THAT(msg, Catch::Contains(path));
        CHECK_THAT(msg, Catch::Contains("exceeds the limit of 1000 pixels"));
        CHECK(load_image(path, 160 * 120).width == 160);
    }
}

TEST_CASE("preprocessor_config.json is read as CLIPImageProcessor reads it", "[image][config]") {
    auto write_json = [](const std::string& name, const std::string& text) {
        return write_tmp(name, std::vector<std::uint8_t>(text.begin(), text.end()));
    };
    SECTION("the release's file") {
        const std::string path = write_json("preprocessor_config.json", R"({
          "crop_size": 448, "do_center_crop": true, "do_normalize": true, "do_resize": true,
          "feature_extractor_type": "CLIPFeatureExtractor",
          "image_mean": [0.48145466, 0.4578275, 0.40821073],
          "image_std": [0.26862954, 0.26130258, 0.27577711], "resample": 3, "size": 448})");
        const auto cfg = ImageProcessorConfig::load(path);
        CHECK(cfg.size == 448);
        CHECK(cfg.crop_size == 448);
        CHECK(cfg.image_mean[1] == 0.4578275);
        CHECK(cfg.image_std[2] == 0.27577711);
        CHECK(cfg.do_resize);
        CHECK(cfg.rescale_factor == 1.0 / 255.0);
    }
    SECTION("newer layouts and CLIPImageProcessor's defaults") {
        auto cfg = ImageProcessorConfig::load(write_json(
            "pp_dicts.json", R"({"size": {"shortest_edge": 336}, "crop_size": {"height": 320, "width": 320},
                                 "do_rescale": false, "rescale_factor": 0.5, "image_mean": 0.5})"));
        CHECK(cfg.size == 336);
        CHECK(cfg.crop_size == 320);
        CHECK_FALSE(cfg.do_rescale);
        CHECK(cfg.rescale_factor == 0.5);
        CHECK(cfg.image_mean[2] == 0.5);
        cfg = ImageProcessorConfig::load(write_json("pp_empty.json", "{}"));
        CHECK(cfg.size == 224);
        CHECK(cfg.crop_size == 224);
    }
    SECTION("unsupported values name the field") {
        auto error_for = [&](const std::string& name, const std::string& text) {
            return error_of([&] { ImageProcessorConfig::load(write_json(name, text)); });
        };
        CHECK_THAT(error_for("pp_resample.json", R"({"resample": 2})"), Catch::Contains("resample"));
        CHECK_THAT(error_for("pp_size.json", R"({"size": {"height": 448, "width": 448}})"),
                   Catch::Contains("size") && Catch::Contains("shortest_edge"));
        CHECK_THAT(error_for("pp_crop.json", R"({"crop_size": {"height": 448, "width": 400}})"),
                   Catch::Contains("crop_size"));
        CHECK_THAT(error_for("pp_mean.json", R"({"image_mean": [0.5, 0.5]})"), Catch::Contains("image_mean"));
        CHECK_THAT(error_for("pp_std.json", R"({"image_std": [0.5, 0, 0.5]})"), Catch::Contains("image_std"));
        CHECK_THAT(error_for("pp_bool.json", R"({"do_resize": "yes"})"), Catch::Contains("do_resize"));
        CHECK_THAT(error_for("pp_negative.json", R"({"size": -3})"), Catch::Contains("size"));
        CHECK_THAT(error_for("pp_broken.json", R"({"size": )"), Catch::Contains("pp_broken.json"));
        // a value nested 100000 deep is described by its size, not printed whole
        const std::string deep = "{\"image_mean\": " + std::string(100000, '[') + std::string(100000, ']') + "}";
        CHECK(error_for("pp_deep.json", deep) ==
              kTmp + "/pp_deep.json: image_mean: expected a number or 3 numbers, found an array of 1 entries");
        CHECK_THAT(error_of([&] { ImageProcessorConfig::load(kTmp + "/no_such_config.json"); }),
                   Catch::Contains("no_such_config.json"));
    }
}

TEST_CASE("process_image refuses unknown aspects and impossible crops", "[image][errors]") {
    const RgbImage img = load_image(kImages + "/inputs/photo_97x61.png");
    CHECK_THAT(error_of([&] { process_image(img, "padd", sized(56, 56)); }), Catch::Contains("padd"));
    ImageProcessorConfig cfg = sized(56, 56);
    cfg.do_resize = false;
    cfg.crop_size = 80;
    CHECK_THAT(error_of([&] { process_image(img, "square", cfg); }), Catch::Contains("crop_size 80"));
}

TEST_CASE("process_images turns image files into the model's input with the checkpoint folder's settings",
          "[image][process_images]") {
    const std::string tiny = parity::tiny_dir();
    // A copy of the tiny checkpoint's config with image_aspect_ratio set, and
    // a preprocessor_config.json beside it.
    auto checkpoint = [&](const std::string& name, const std::string& aspect, const std::string& preprocessor) {
        const std::string dir = kTmp + "/" + name;
        std::filesystem::create_directories(dir);
        std::ifstream in(tiny + "/config.json");
        nlohmann::json config = nlohmann::json::parse(in);
        config["image_aspect_ratio"] = aspect;
        std::ofstream(dir + "/config.json") << config.dump();
        std::ofstream(dir + "/preprocessor_config.json") << preprocessor;
        return dir;
    };
    const std::string clip_56 = R"({"size": {"shortest_edge": 56}, "crop_size": {"height": 56, "width": 56},
        "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711]})";

    SECTION("the tiny folder (image_size 56, no preprocessor_config.json, no aspect: pad) gives the official pixels") {
        const xt::xtensor<float, 4> p =
            process_images<float>({tiny + "/synthetic_97x61.png", tiny + "/coffee.jpg"}, tiny);
        REQUIRE(p.shape() == std::array<std::size_t, 4>{2, 3, 56, 56});
        const auto first = parity::Case("image_then_text").get("image.0.pixel_values");
        const auto second = parity::Case("photo_jpeg").get("image.0.pixel_values");
        const std::size_t n = 3 * 56 * 56;
        CHECK(float_diff(p.data(), first.data(), n).count == 0);
        CHECK(float_diff(p.data() + n, second.data(), n).count == 0);
        // double holds the same float32 values
        const xt::xtensor<double, 4> d = process_images<double>({tiny + "/synthetic_97x61.png"}, tiny);
        CHECK(std::equal(d.begin(), d.end(), p.begin()));
    }
    SECTION("config.json's image_aspect_ratio and preprocessor_config.json are read") {
        const std::string dir = checkpoint("process_images_resize", "resize", clip_56);
        const ImagePreprocessing settings = ImagePreprocessing::of_checkpoint(dir, load_config(dir + "/config.json"));
        CHECK(settings.aspect == "resize");
        CHECK(settings.image_size == 56);
        CHECK(settings.processor_path == dir + "/preprocessor_config.json");
        const xt::xtensor<float, 4> p =
            process_images<float>({tiny + "/synthetic_40x90.png", tiny + "/synthetic_64x64.png"}, dir);
        const auto ref = parity::Case("two_images").pixel_values<double>(2);
        CHECK(float_diff(p.data(), ref.data(), ref.size()).count == 0);
        // other mean and std change every value as process_image computes them
        const std::string other = checkpoint("process_images_mean", "resize",
            R"({"size": 56, "crop_size": 56, "image_mean": 0.5, "image_std": [0.25, 0.5, 1.0]})");
        const xt::xtensor<float, 4> q = process_images<float>({tiny + "/synthetic_40x90.png"}, other);
        const ProcessedImage want = process_image(load_image(tiny + "/synthetic_40x90.png"), "resize",
                                                  ImageProcessorConfig::load(other + "/preprocessor_config.json"));
        CHECK(std::equal(q.begin(), q.end(), want.pixel_values.begin()));
        CHECK(float_diff(q.data(), ref.data(), q.size()).count > 0);
    }
    SECTION("a preprocessing that does not give the model's image size is refused, naming the file") {
        const std::string dir = checkpoint("process_images_crop", "pad", R"({"size": 64, "crop_size": 64})");
        CHECK(error_of([&] { process_images<float>({tiny + "/coffee.jpg"}, dir); }) ==
              tiny + "/coffee.jpg: preprocessing gives 64x64 pixels, the model takes 56x56 (check " + dir +
                  "/preprocessor_config.json)");
    }
}
