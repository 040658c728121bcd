// The chat template of the release: conv_mplug_owl2 in the official
// conversation.py. Roles "USER" and "ASSISTANT"; separator style TWO_NO_SYS,
// so the template's system text never reaches the prompt; message i is
// followed by " " when i is even and by "</s>" when i is odd; an open turn
// (no text yet) ends the prompt as "ROLE:". A single turn with an image, as
// the official CLI and README build it:
//   USER: <|image|>Describe the image. ASSISTANT:
// and the next turn after the reply "A cat.":
//   USER: <|image|>Describe the image. ASSISTANT: A cat.</s>USER: And its colour? ASSISTANT:
// The CLI stores as the reply tokenizer.decode(new ids).strip() with special
// tokens kept, so a reply that ended with the end-of-sequence token reads
// "A cat.</s>" and the history then holds "A cat.</s></s>USER: ...".
// Generation stops at the text "</s>" (stop_string()) or the EOS id.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "tokenizer.hpp"

namespace mplug_owl2 {

class Conversation {
public:
    static constexpr const char* kUser = "USER";
    static constexpr const char* kAssistant = "ASSISTANT";
    static constexpr const char* kSep = " ";
    static constexpr const char* kSep2 = "</s>";

    struct Message {
        std::string role;
        std::optional<std::string> text;  // nullopt: the turn still to be generated
    };

    static std::string stop_string() { return kSep2; }

    void append(const std::string& role, std::optional<std::string> text) {
        messages_.push_back({role, std::move(text)});
    }

    // One user turn as the official CLI adds it: the image markers (on the
    // turn that brings the images) before the text, then an open assistant turn.
    void add_user_turn(const std::string& text, int images = 0) {
        if (images < 0) fail("conversation: negative image count ", images);
        std::string t;
        for (int k = 0; k < images; ++k) t += kImageToken;
        append(kUser, t + text);
        append(kAssistant, std::nullopt);
    }

    // Fills the open assistant turn with the reply.
    void set_reply(const std::string& text) {
        if (messages_.empty() || messages_.back().role != kAssistant || messages_.back().text)
            fail("conversation: no open assistant turn to fill");
        messages_.back().text = text;
    }

    // get_prompt() of separator style TWO_NO_SYS. An empty text counts as no
    // text, as Python's truth test does.
    std::string prompt() const {
        std::string out;
        for (std::size_t i = 0; i < messages_.size(); ++i) {
            const Message& m = messages_[i];
            if (m.text && !m.text->empty()) out += m.role + ": " + *m.text + (i % 2 == 0 ? kSep : kSep2);
            else out += m.role + ":";
        }
        return out;
    }

    const std::vector<Message>& messages() const { return messages_; }

private:
    std::vector<Message> messages_;
};

}  // namespace mplug_owl2
