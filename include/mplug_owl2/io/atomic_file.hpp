// Whole files written so that no reader sees half of one: the bytes go to a
// temporary name beside the target (the target's name plus ".tmp") and are
// renamed into place when complete, as SafetensorsWriter and ZipWriter write
// theirs. When anything fails, neither the target nor the temporary file is
// left (a target that existed before is left as it was).
#pragma once

#include <fstream>
#include <sstream>
#include <string>

#include "../core/error.hpp"
#include "safetensors.hpp"

namespace mplug_owl2 {

inline void write_file_atomically(const std::string& path, const std::string& bytes) {
    write_atomically(path, [&](std::ofstream& out) { out.write(bytes.data(), static_cast<std::streamsize>(bytes.size())); });
}

// A copy of file `from` at `to`, written as above.
inline void copy_file_atomically(const std::string& from, const std::string& to) {
    std::ifstream in(from, std::ios::binary);
    if (!in) fail(from, ": cannot open for reading");
    std::ostringstream bytes;
    bytes << in.rdbuf();
    if (in.bad()) fail(from, ": read failed");
    write_file_atomically(to, bytes.str());
}

}  // namespace mplug_owl2
