// libFuzzer target: arbitrary bytes through the image decoder (PNG, JPEG,
// GIF, BMP, TGA, PNM, picked by signature) decode to width × height RGB
// pixels within the pixel budget, or throw mplug_owl2::Error, never anything
// else.
#include <cstdint>
#include <cstdlib>

#include "mplug_owl2/io/image.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    constexpr std::size_t kMaxPixels = std::size_t(1) << 22;  // keeps each run within the fuzzer's memory limit
    try {
        const mplug_owl2::RgbImage img = mplug_owl2::decode_image(data, size, "fuzz input", kMaxPixels);
        if (img.width == 0 || img.height == 0 || img.width * img.height > kMaxPixels ||
            img.pixels.size() != 3 * img.width * img.height)
            std::abort();
    } catch (const mplug_owl2::Error&) {
    }
    return 0;
}
