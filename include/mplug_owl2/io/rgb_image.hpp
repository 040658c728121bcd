// An 8-bit RGB image: what every decoder hands to preprocessing, the form
// PIL's Image.convert("RGB") gives the official pipeline.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "../core/error.hpp"

namespace mplug_owl2 {

struct RgbImage {
    std::size_t width = 0, height = 0;
    std::vector<std::uint8_t> pixels;  // [height, width, 3], row-major RGB

    const std::uint8_t* row(std::size_t y) const { return pixels.data() + y * width * 3; }
    std::uint8_t* row(std::size_t y) { return pixels.data() + y * width * 3; }
};

// Refuses an image without pixels or with more than `max_pixels`.
inline void check_image_size(std::size_t width, std::size_t height, std::size_t max_pixels, const std::string& name) {
    if (width == 0 || height == 0) fail(name, ": image has no pixels (", width, "x", height, ")");
    if (width > max_pixels / height)
        fail(name, ": image of ", width, "x", height, " pixels exceeds the limit of ", max_pixels, " pixels");
}

// Checks the size a file claims, then allocates: the only way decoders
// create their output, so a hostile header never reaches an allocation.
inline RgbImage allocate_rgb(std::size_t width, std::size_t height, std::size_t max_pixels,
                             const std::string& name) {
    check_image_size(width, height, max_pixels, name);
    RgbImage img;
    img.width = width;
    img.height = height;
    img.pixels.assign(width * height * 3, 0);
    return img;
}

}  // namespace mplug_owl2
