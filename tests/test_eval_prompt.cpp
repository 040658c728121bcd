// The prompts of each benchmark, character for character as the official
// evaluation scripts build them (mplug_owl2/evaluate/evaluate_mme.py,
// evaluate_vqa.py, evaluate_mmbench.py), and their generation limits.
#include <catch2/catch.hpp>

#include <memory>

#include "mplug_owl2/eval/prompt.hpp"

using namespace mplug_owl2::eval;

namespace {

Sample sample(Benchmark b, const std::string& question, int images = 1) {
    Sample s;
    s.benchmark = b;
    s.question = question;
    for (int k = 0; k < images; ++k) s.image_paths.push_back("img" + std::to_string(k) + ".jpg");
    return s;
}

}  // namespace

TEST_CASE("MME and POPE prompts drop Please answer yes or no and ask for a short answer") {
    // evaluate_mme.py: prompt.format(question).replace('Please answer yes or no.', '')
    const Prompt p = build_prompt(sample(Benchmark::Mme, "Is there a dog in this image? Please answer yes or no."));
    CHECK(p.text ==
          "USER: <|image|>Is there a dog in this image? \nAnswer the question using a single word or phrase. ASSISTANT: ");
    CHECK(p.max_new_tokens == 10);
    CHECK(p.min_new_tokens == 1);
    CHECK(p.square_images);
    CHECK(build_prompt(sample(Benchmark::Pope, "Is there a cat in the image?")).text ==
          "USER: <|image|>Is there a cat in the image?\nAnswer the question using a single word or phrase. ASSISTANT: ");
}

TEST_CASE("VQA prompts put the suffix after a space") {
    CHECK(build_prompt(sample(Benchmark::Vqa, "What color is the bus?")).text ==
          "USER: <|image|>What color is the bus? Answer the question using a single word or phrase. ASSISTANT: ");
    CHECK(build_prompt(sample(Benchmark::Vqa, "Same?", 2)).text ==
          "USER: <|image|><|image|>Same? Answer the question using a single word or phrase. ASSISTANT: ");
}

TEST_CASE("multiple-choice prompts list hint question and options") {
    Sample s = sample(Benchmark::Mmbench, "What animal is this?");
    s.choices = {{"A", "cat"}, {"B", "dog"}, {"C", "bird"}};
    // evaluate_mmbench.py: hint 'N/A' when there is none; U+2019 in "option’s"
    CHECK(build_prompt(s).text == "USER: <|image|>N/A\nWhat animal is this?\nA. cat\nB. dog\nC. bird\n"
                                  "Answer with the option\xE2\x80\x99s letter from the given choices directly. ASSISTANT: ");
    s.hint = "It purrs.";
    s.benchmark = Benchmark::Scienceqa;
    CHECK(build_prompt(s).text == "USER: <|image|>It purrs.\nWhat animal is this?\nA. cat\nB. dog\nC. bird\n"
                                  "Answer with the option\xE2\x80\x99s letter from the given choices directly. ASSISTANT: ");
    CHECK(build_prompt(s).max_new_tokens == 10);
}

TEST_CASE("text-only multiple choice has no image marker and no empty hint") {
    Sample s = sample(Benchmark::TextMcq, "2 + 2 = ?", 0);
    s.choices = {{"A", "3"}, {"B", "4"}};
    CHECK(build_prompt(s).text ==
          "USER: 2 + 2 = ?\nA. 3\nB. 4\nAnswer with the option\xE2\x80\x99s letter from the given choices directly. ASSISTANT: ");
    s.hint = "Arithmetic.";
    CHECK(build_prompt(s).text == "USER: Arithmetic.\n2 + 2 = ?\nA. 3\nB. 4\nAnswer with the option\xE2\x80\x99s letter "
                                  "from the given choices directly. ASSISTANT: ");
}

TEST_CASE("a TSV image counts as one image marker") {
    Sample s = sample(Benchmark::Vqa, "Why?", 0);
    s.image_base64 = std::make_shared<const std::string>(std::string(80, 'A'));
    CHECK(build_prompt(s).text == "USER: <|image|>Why? Answer the question using a single word or phrase. ASSISTANT: ");
}
