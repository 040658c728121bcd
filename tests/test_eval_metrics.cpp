// The official metrics on small hand-made sets, each value computed by hand
// in the comments: MME (its yes/no reading, acc and acc+ with the questions
// of an image paired, perception and cognition), POPE, VQA (the answer
// normalisation of vqa_eval.py and the leave-one-out accuracy), VLMEvalKit's
// letter reading, MMBench's CircularEval grouping, ScienceQA accuracy.
#include <catch2/catch.hpp>

#include "mplug_owl2/eval/metrics.hpp"

using namespace mplug_owl2;
using namespace mplug_owl2::eval;
using Catch::Detail::Approx;

namespace {

Scored line(const std::string& benchmark, const std::string& id, const std::string& category, const Json& answer,
            const std::string& prediction, const std::string& image = "", const Json& choices = nullptr,
            const std::string& ablation = "official") {
    Scored s;
    s.where = "test:" + id;
    s.line.id = id;
    s.line.benchmark = benchmark;
    s.line.category = category;
    s.line.answer = answer;
    s.line.prediction = prediction;
    s.line.image = image;
    s.line.choices = choices;
    s.line.ablation = ablation;
    return s;
}

std::string error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

}  // namespace

TEST_CASE("MME reads yes and no from the first four characters") {
    CHECK(mme_label("Yes") == "yes");
    CHECK(mme_label("no") == "no");
    CHECK(mme_label("No, there is not.") == "no");  // prefix "no, "
    CHECK(mme_label("Yesterday") == "yes");         // prefix "yest"
    CHECK(mme_label("Nope") == "no");               // prefix "nope"
    CHECK(mme_label("not sure") == "no");           // prefix "not "
    CHECK(mme_label("I think yes") == "other");     // prefix "i th"
    CHECK(mme_label("There is") == "other");
    CHECK(mme_label("\xC3\xA9yes") == "yes");  // "éyes": four characters, five bytes
}

TEST_CASE("MME acc and acc+ pair the two questions of each image") {
    const std::vector<Scored> lines = {
        // existence: image i1 both right; image i2 one wrong
        line("mme", "1", "existence", "Yes", "Yes", "i1"), line("mme", "2", "existence", "No", "No, there is not.", "i1"),
        line("mme", "3", "existence", "Yes", "yes", "i2"), line("mme", "4", "existence", "No", "Yes", "i2"),
        // code_reasoning: "There is" is "other" (wrong), "no" right
        line("mme", "5", "code_reasoning", "Yes", "There is", "c1"), line("mme", "6", "code_reasoning", "No", "no", "c1")};
    const Json s = score(lines)["mme"]["official"];
    // existence: 3 of 4 right -> acc 75; 1 of 2 images fully right -> acc+ 50; score 125
    CHECK(s["existence/acc"].get<double>() == Approx(75.0));
    CHECK(s["existence/acc_plus"].get<double>() == Approx(50.0));
    CHECK(s["existence/score"].get<double>() == Approx(125.0));
    // code_reasoning: 1 of 2 -> 50; no image fully right -> 0; score 50
    CHECK(s["code_reasoning/acc"].get<double>() == Approx(50.0));
    CHECK(s["code_reasoning/acc_plus"].get<double>() == Approx(0.0));
    // perception = existence's 125; cognition = code_reasoning's 50; total 175
    CHECK(s["perception"].get<double>() == Approx(125.0));
    CHECK(s["cognition"].get<double>() == Approx(50.0));
    CHECK(s["total"].get<double>() == Approx(175.0));
    CHECK(s["n"] == 6);
    CHECK(error_of([] { score({line("mme", "1", "count", "maybe", "yes", "i")}); })
              .find("test:1: an MME answer is yes or no, found \"maybe\"") != std::string::npos);
    CHECK(error_of([] { score({line("mme", "1", "count", "yes", "yes")}); }).find("no \"image\"") != std::string::npos);
}

TEST_CASE("POPE reads the first sentence and counts against yes") {
    CHECK(pope_says_yes("Yes, there is a dog."));
    CHECK_FALSE(pope_says_yes("No."));
    CHECK_FALSE(pope_says_yes("There is not a cat."));
    CHECK(pope_says_yes("I see one. No doubt"));  // only the first sentence counts
    CHECK(pope_says_yes("Nope"));                 // not the word "no"
    CHECK_FALSE(pope_says_yes("no,"));            // commas removed first
    const std::vector<Scored> lines = {
        line("pope", "1", "random", "yes", "Yes, there is a dog."),  // TP
        line("pope", "2", "random", "yes", "No."),                   // FN
        line("pope", "3", "random", "no", "There is not a cat."),    // TN
        line("pope", "4", "adversarial", "no", "Yes"),               // FP
        line("pope", "5", "adversarial", "No", "no"),                // TN
        line("pope", "6", "adversarial", "Yes", "I see one. No doubt")};  // TP
    const Json s = score(lines)["pope"]["official"];
    // all: TP 2, FN 1, TN 2, FP 1 -> acc 4/6, precision 2/3, recall 2/3, f1 2/3, yes ratio 3/6
    CHECK(s["accuracy"].get<double>() == Approx(4.0 / 6));
    CHECK(s["precision"].get<double>() == Approx(2.0 / 3));
    CHECK(s["recall"].get<double>() == Approx(2.0 / 3));
    CHECK(s["f1"].get<double>() == Approx(2.0 / 3));
    CHECK(s["yes_ratio"].get<double>() == Approx(0.5));
    // random: TP 1, FN 1, TN 1 -> acc 2/3, precision 1, recall 1/2, f1 2·1·0.5/1.5 = 2/3, yes 1/3
    CHECK(s["random/accuracy"].get<double>() == Approx(2.0 / 3));
    CHECK(s["random/precision"].get<double>() == Approx(1.0));
    CHECK(s["random/recall"].get<double>() == Approx(0.5));
    CHECK(s["random/f1"].get<double>() == Approx(2.0 / 3));
    CHECK(s["random/yes_ratio"].get<double>() == Approx(1.0 / 3));
    // adversarial: FP 1, TN 1, TP 1 -> precision 1/2, recall 1, yes 2/3
    CHECK(s["adversarial/precision"].get<double>() == Approx(0.5));
    CHECK(s["adversarial/recall"].get<double>() == Approx(1.0));
    CHECK(s["adversarial/yes_ratio"].get<double>() == Approx(2.0 / 3));
    CHECK(s["adversarial/n"] == 3);
    // nothing predicted yes and no positive label: the ratios are 0, not NaN
    const Json z = score({line("pope", "1", "c", "no", "no")})["pope"]["official"];
    CHECK(z["precision"].get<double>() == 0.0);
    CHECK(z["recall"].get<double>() == 0.0);
    CHECK(z["f1"].get<double>() == 0.0);
    CHECK(z["accuracy"].get<double>() == 1.0);
}

TEST_CASE("VQA answer normalisation as vqa_eval.py does it") {
    CHECK(vqa_normalize_answer("Two dogs.") == "2 dogs");     // final period, number word
    CHECK(vqa_normalize_answer("the cat") == "cat");          // article
    CHECK(vqa_normalize_answer("an apple") == "apple");
    CHECK(vqa_normalize_answer("dont know") == "don't know"); // contraction
    CHECK(vqa_normalize_answer("3.5") == "3.5");              // a period before a digit stays
    CHECK(vqa_normalize_answer("1,000") == "1000");           // comma between digits: punctuation removed
    CHECK(vqa_normalize_answer("yes, it is") == "yes it is"); // ", " present: removed
    CHECK(vqa_normalize_answer("black/white") == "black white");  // alone: becomes a space
    CHECK(vqa_normalize_answer("hot-dog") == "hot dog");
    CHECK(vqa_normalize_answer("hot - dog") == "hot dog");    // " -" present: removed, spaces collapse
    CHECK(vqa_normalize_answer("a man's hat") == "man's hat");  // the apostrophe is not punctuation here
    CHECK(vqa_normalize_answer("None") == "0");
    CHECK(vqa_normalize_answer(" Yes\n") == "yes");
    CHECK(vqa_normalize_answer("e.g. Cats") == "eg cats");
    CHECK(vqa_normalize_answer("(red)") == "red");
    // re.sub's count is given re.UNICODE = 32: of 33 periods one is left
    CHECK(vqa_normalize_answer(std::string(33, '.') + "x") == ".x");
}

TEST_CASE("VQA accuracy averages min of matches over 3 across the leave-one-out subsets") {
    const std::vector<std::string> two_eight = {"dog", "dog", "cat", "cat", "cat", "cat", "cat", "cat", "cat", "cat"};
    // "dog": leaving out a dog (2 ways) leaves 1 match -> 1/3; a cat (8 ways) leaves 2 -> 2/3;
    // (2·1/3 + 8·2/3)/10 = 0.6
    CHECK(vqa_accuracy("Dog.", two_eight) == Approx(0.6));
    // "cat": 7 or 8 matches -> 1 in every subset
    CHECK(vqa_accuracy("cat", two_eight) == Approx(1.0));
    // 3 of 10 say dog: (3·2/3 + 7·1)/10 = 0.9
    const std::vector<std::string> three_seven = {"dog", "dog", "dog", "cat", "cat", "cat", "cat", "cat", "cat", "cat"};
    CHECK(vqa_accuracy("dog", three_seven) == Approx(0.9));
    CHECK(vqa_accuracy("bird", three_seven) == 0.0);
    // the human answers get only processPunctuation, and only when they differ
    CHECK(vqa_accuracy("hot-dog", std::vector<std::string>(10, "hot-dog")) == 0.0);
    std::vector<std::string> nine_one(9, "hot-dog");
    nine_one.push_back("hotdog");
    CHECK(vqa_accuracy("hot-dog", nine_one) == Approx(1.0));
    CHECK(vqa_accuracy("two", std::vector<std::string>(10, "two")) == 0.0);  // the prediction becomes "2"
    // one answer only: exact match after normalisation
    CHECK(vqa_accuracy("Cat.", {"cat"}) == 1.0);
    // per category and overall, in percent: a = (0.6 + 1)/2 = 80; b = 90; all = (0.6 + 1 + 0.9)/3
    const std::vector<Scored> lines = {line("vqa", "1", "a", two_eight, "dog"), line("vqa", "2", "a", two_eight, "cat"),
                                       line("vqa", "3", "b", three_seven, "dog")};
    const Json s = score(lines)["vqa"]["official"];
    CHECK(s["a/accuracy"].get<double>() == Approx(80.0));
    CHECK(s["b/accuracy"].get<double>() == Approx(90.0));
    CHECK(s["accuracy"].get<double>() == Approx(250.0 / 3));
    // the human answers as a TSV's Python list in a string: 3 of 10 say dog -> 90
    const Json listed = score({line("vqa", "1", "", "['dog', 'dog', 'dog', 'cat', 'cat', 'cat', 'cat', 'cat', 'cat', 'cat']", "dog")});
    CHECK(listed["vqa"]["official"]["accuracy"].get<double>() == Approx(90.0));
}

TEST_CASE("option letters as VLMEvalKit's can_infer reads them") {
    const std::vector<std::pair<std::string, std::string>> c = {{"A", "cat"}, {"B", "dog"}, {"C", "bird"}};
    CHECK(option_letter("A", c) == "A");
    CHECK(option_letter("The answer is B.", c) == "B");
    CHECK(option_letter("(C) dog", c) == "C");          // the letter wins over the text
    CHECK(option_letter("A or B", c) == "");            // two letters, no option text
    CHECK(option_letter("I think it is a dog", c) == "B");  // no letter word: the one option text found
    CHECK(option_letter("a cat or a dog", c) == "");    // two option texts
    CHECK(option_letter("A cat and a dog", c) == "A");  // "A" is a word
    CHECK(option_letter("Cannot determine the answer", c) == "Z");
    CHECK(option_letter("Z", c) == "Z");
    CHECK(option_letter("Failed to obtain answer via API: A dog", c) == "B");  // straight to the text step
}

TEST_CASE("MMBench CircularEval groups ids modulo one million") {
    const Json ab = {{"A", "cat"}, {"B", "dog"}};
    const std::vector<Scored> lines = {
        // question 1 and its two rotations: all right
        line("mmbench", "1", "x", "A", "A", "", ab), line("mmbench", "1000001", "x", "B", "B", "", ab),
        line("mmbench", "2000001", "x", "A", "A. cat", "", ab),
        // question 2: the rotation is wrong
        line("mmbench", "2", "y", "A", "A", "", ab), line("mmbench", "1000002", "y", "B", "A", "", ab)};
    const Json s = score(lines)["mmbench"]["official"];
    // 4 of 5 rows right -> 0.8; question 1 passes, question 2 fails -> 1/2
    CHECK(s["accuracy"].get<double>() == Approx(0.8));
    CHECK(s["circular_accuracy"].get<double>() == Approx(0.5));
    CHECK(s["x/circular_accuracy"].get<double>() == Approx(1.0));
    CHECK(s["y/accuracy"].get<double>() == Approx(0.5));
    CHECK(s["y/circular_accuracy"].get<double>() == Approx(0.0));
    CHECK(s["unparsed"] == 0);
    CHECK(circular_group("3000042") == "42");
    CHECK(circular_group("q7") == "q7");
}

TEST_CASE("ScienceQA accuracy counts unparsed predictions as wrong") {
    const Json ab = {{"A", "cat"}, {"B", "dog"}};
    const std::vector<Scored> lines = {line("scienceqa", "1", "", "A", "A", "", ab),
                                       line("scienceqa", "2", "", "B", "none of them", "", ab),
                                       line("scienceqa", "3", "", "B", "It is a dog.", "", ab)};
    const Json s = score(lines)["scienceqa"]["official"];
    CHECK(s["accuracy"].get<double>() == Approx(2.0 / 3));  // 1 and 3 right
    CHECK(s["unparsed"] == 1);
    CHECK_FALSE(s.contains("circular_accuracy"));
    CHECK(error_of([] { score({line("mcq", "1", "", "A", "A")}); }).find("test:1: no \"choices\"") != std::string::npos);
}

TEST_CASE("scores are grouped by benchmark then ablation in order of appearance") {
    const Json ab = {{"A", "cat"}, {"B", "dog"}};
    const std::vector<Scored> lines = {line("mcq", "1", "", "A", "A", "", ab, "text"),
                                       line("mcq", "1", "", "A", "B", "", ab, "official"),
                                       line("pope", "1", "", "yes", "yes", "", nullptr, "official")};
    const Json s = score(lines);
    CHECK(s.dump().rfind("{\"mcq\":{\"text\":{\"accuracy\"", 0) == 0);
    CHECK(s["mcq"]["text"]["accuracy"] == 1.0);
    CHECK(s["mcq"]["official"]["accuracy"] == 0.0);
    CHECK(s["pope"]["official"]["accuracy"] == 1.0);
    CHECK(error_of([&] {
              auto twice = lines;
              twice.push_back(line("mcq", "1", "", "A", "A", "", ab, "text"));
              score(twice);
          }).find("question 1 of mcq under ablation text was already read at test:1") != std::string::npos);
    CHECK(error_of([] { score({line("gqa", "1", "", "a", "a")}); }).find("unknown benchmark \"gqa\"") !=
          std::string::npos);
}
