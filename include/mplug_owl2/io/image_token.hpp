// constants.py: the image marker in prompts and the id that stands for it,
// shared by the tokenizer (which puts the id in) and the model (which splices
// the image's rows there).
#pragma once

#include <cstdint>

namespace mplug_owl2 {

inline constexpr const char* kImageToken = "<|image|>";
inline constexpr std::int64_t kImageTokenIndex = -200;

}  // namespace mplug_owl2
