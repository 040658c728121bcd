// libFuzzer target: arbitrary text as config.json parses or throws
// mplug_owl2::Error, never anything else.
#include <cstdint>
#include <string>

#include "mplug_owl2/io/config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    try {
        (void)mplug_owl2::parse_config(std::string(reinterpret_cast<const char*>(data), size));
    } catch (const mplug_owl2::Error&) {
    }
    return 0;
}
