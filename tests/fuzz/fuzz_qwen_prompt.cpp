// libFuzzer target: arbitrary text through Qwen's prompt splitter and
// tokenizer (tests/fixtures/qwen_tokenizer) never crashes; every id is an
// image marker, a special token or a rank of the vocabulary; decoding the
// text's ids and encoding the result again gives the same ids (the decoded
// text is the NFC text, which NFC leaves as it is).
#include <cstdint>
#include <cstdlib>
#include <string>

#include "mplug_owl2/io/qwen_tokenizer.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static const mplug_owl2::QwenTokenizer tok(std::string(MPLUG_OWL2_FIXTURE_DIR) + "/qwen_tokenizer");
    const std::string text(reinterpret_cast<const char*>(data), size);
    try {
        for (std::int64_t id : tok.encode_prompt(text))
            if (id != mplug_owl2::kImageTokenIndex && !tok.is_special(id)) (void)tok.piece(id);
        const auto ids = tok.encode(text);
        if (tok.encode(tok.decode(ids, false)) != ids) std::abort();
    } catch (const mplug_owl2::Error& e) {
        if (std::string(e.what()).find("not valid UTF-8") == std::string::npos) std::abort();
    }
    return 0;
}
