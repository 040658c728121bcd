// The benchmark readers: VLMEvalKit TSV files (quoted cells, images given by
// the index of another row, image_path lists, pandas' missing cells, VQA
// answer lists), the JSONL manifest, bad rows refused with their line
// numbers, and the benchmark named by a file name.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>

#include "mplug_owl2/eval/manifest_reader.hpp"
#include "mplug_owl2/eval/tsv_reader.hpp"

using namespace mplug_owl2;
using namespace mplug_owl2::eval;
namespace fs = std::filesystem;

namespace {

std::string write_data(const std::string& name, const std::string& text) {
    const fs::path dir = fs::path(MPLUG_OWL2_TEST_TMP) / "eval_inputs";
    fs::create_directories(dir);
    const fs::path p = dir / name;
    std::ofstream(p, std::ios::binary) << text;
    return p.string();
}

std::string error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

const std::string kImage(80, 'A');  // 80 base64 characters: 60 zero bytes, longer than an index reference

}  // namespace

TEST_CASE("base64 decodes with and without padding") {
    CHECK(decode_base64("aGVsbG8=", "t") == "hello");
    CHECK(decode_base64("aGVsbG8h", "t") == "hello!");
    CHECK(decode_base64("aGk=\n", "t") == "hi");
    CHECK(decode_base64(kImage, "t") == std::string(60, '\0'));
    CHECK(error_of([] { decode_base64("a$==", "cell"); }).find("cell: not base64") != std::string::npos);
}

TEST_CASE("Python string lists are read as lists") {
    CHECK(python_string_list("['a', \"b c\", 'it\\'s']") == std::vector<std::string>{"a", "b c", "it's"});
    CHECK(python_string_list("[]") == std::vector<std::string>{});
    CHECK(!python_string_list("a, b"));
    CHECK(!python_string_list("['a' 'b']"));
}

TEST_CASE("VLMEvalKit TSV: quoted cells and images named by another row's index") {
    // line 1 header; line 2 row 0 (the image); lines 3-4 row 1 (a quoted
    // question over two lines, image = row 0); line 5 row 2 (image = row 1,
    // which by then holds row 0's image, as VLMEvalKit resolves in order).
    const std::string tsv = "index\timage\tquestion\tanswer\tcategory\thint\tA\tB\tC\tD\r\n"
                            "10\t" + kImage + "\tWhat is it?\tA\tcat1\tnan\tcat\tdog\tNone\t\r\n"
                            "11\t10\t\"Say \"\"hi\"\"\nplease\"\tB\tcat2\tA hint\tx\ty\tz\tw\n"
                            "12\t11\tThird?\tC\tcat2\t\tp\tq\tr\t\n";
    const auto s = read_tsv(write_data("mmbench_small.tsv", tsv), Benchmark::Mmbench);
    REQUIRE(s.size() == 3);
    CHECK(s[0].id == "10");
    CHECK(s[0].line == 2);
    CHECK(s[0].order == 0);
    CHECK(s[0].image_key == "10");
    REQUIRE(s[0].image_base64);
    CHECK(*s[0].image_base64 == kImage);
    CHECK(s[0].hint.empty());  // "nan" is missing to pandas
    // "None" and "" are missing to pandas: options A and B only
    CHECK(s[0].choices == std::vector<std::pair<std::string, std::string>>{{"A", "cat"}, {"B", "dog"}});
    CHECK(s[0].answer == "A");
    CHECK(s[0].category == "cat1");
    CHECK(s[1].question == "Say \"hi\"\nplease");
    CHECK(s[1].line == 3);
    CHECK(s[1].hint == "A hint");
    CHECK(s[1].image_key == "10");
    CHECK(s[1].image_base64 == s[0].image_base64);  // shared, not copied
    CHECK(s[1].choices.size() == 4);
    CHECK(s[2].line == 5);
    CHECK(s[2].image_key == "11");
    CHECK(s[2].image_base64 == s[0].image_base64);
    CHECK(s[2].images() == 1);
}

TEST_CASE("VLMEvalKit TSV: image_path lists and VQA answer lists") {
    const std::string tsv = "index\timage_path\tquestion\tanswer\n"
                            "1\t['a.jpg', 'b.jpg']\tHow many?\t['two', '2', 'two']\n"
                            "2\tc.jpg\tWhat?\tcat\n";
    const std::string path = write_data("textvqa_small.tsv", tsv);
    const auto s = read_tsv(path, Benchmark::Vqa);
    REQUIRE(s.size() == 2);
    const std::string dir = fs::path(path).parent_path().string();
    CHECK(s[0].image_key == "['a.jpg', 'b.jpg']");
    CHECK(s[0].image_paths == std::vector<std::string>{dir + "/a.jpg", dir + "/b.jpg"});
    CHECK(s[0].images() == 2);
    CHECK(s[0].answer == nlohmann::json::array({"two", "2", "two"}));
    CHECK(s[0].category.empty());
    CHECK(s[1].image_paths == std::vector<std::string>{dir + "/c.jpg"});
    CHECK(s[1].answer == "cat");
}

TEST_CASE("VLMEvalKit TSV: bad rows are refused with their line numbers") {
    const std::string tsv = "index\timage\tquestion\tanswer\n"
                            "1\t" + kImage + "\tok?\tyes\n"
                            "2\t1\tshort row\n"                // line 3: 3 cells
                            "3\t1\t\tno\n"                     // line 4: no question
                            "1\t1\tagain?\tno\n"               // line 5: index 1 again
                            "5\t9\tno such row?\tyes\n";       // line 6: image names no row
    const std::string e = error_of([&] { read_tsv(write_data("mme_bad.tsv", tsv), Benchmark::Mme); });
    CHECK(e.find("mme_bad.tsv: 4 bad rows (the file is refused)") != std::string::npos);
    CHECK(e.find("line 3: 3 cells, the header names 4") != std::string::npos);
    CHECK(e.find("line 4: no question") != std::string::npos);
    CHECK(e.find("line 5: index 1 already used on line 2") != std::string::npos);
    CHECK(e.find("line 6: the image cell \"9\" names no row holding an image") != std::string::npos);
    CHECK(error_of([&] { read_tsv(write_data("no_image.tsv", "index\tquestion\n1\tq\n"), Benchmark::Mme); })
              .find("no column \"image\" or \"image_path\"") != std::string::npos);
    CHECK(error_of([&] { read_tsv(write_data("open_quote.tsv", "index\tquestion\n1\t\"q\n"), Benchmark::TextMcq); })
              .find("line 2: a quoted cell is never closed") != std::string::npos);
    // a multiple-choice row needs two options
    CHECK(error_of([&] {
              read_tsv(write_data("mcq_one.tsv", "index\tquestion\tA\n1\tq\tonly\n"), Benchmark::TextMcq);
          }).find("line 2: a multiple-choice question needs 2 or more options in the columns A..H, found 1") != std::string::npos);
}

TEST_CASE("JSONL manifest: paths, choices and answers") {
    const std::string jsonl =
        "{\"id\": 7, \"image\": \"img/1.jpg\", \"question\": \"Is it red?\", \"answer\": \"yes\", \"category\": \"color\"}\n"
        "\n"
        "{\"id\": \"q2\", \"image\": [\"a.png\", \"/abs/b.png\"], \"question\": \"Which?\", \"choices\": [\"x\", \"y\", \"z\"], "
        "\"answer\": 2, \"hint\": \"look\"}\n"
        "{\"id\": \"q3\", \"image\": \"c.png\", \"question\": \"Which?\", \"choices\": {\"A\": \"p\", \"B\": \"q\"}, \"answer\": \"B\"}\n";
    const std::string path = write_data("manifest.jsonl", jsonl);
    const std::string dir = fs::path(path).parent_path().string();
    const auto yn = read_manifest(path, Benchmark::Vqa);  // not multiple choice: line 1 needs no choices
    REQUIRE(yn.size() == 3);
    CHECK(yn[0].id == "7");
    CHECK(yn[0].line == 1);
    CHECK(yn[0].image_key == "img/1.jpg");
    CHECK(yn[0].image_paths == std::vector<std::string>{dir + "/img/1.jpg"});
    CHECK(yn[0].category == "color");
    CHECK(yn[1].line == 3);  // the blank line 2 is skipped
    CHECK(yn[1].order == 1);
    CHECK(yn[1].image_key == "a.png,/abs/b.png");
    CHECK(yn[1].image_paths == std::vector<std::string>{dir + "/a.png", "/abs/b.png"});
    CHECK(yn[1].choices == std::vector<std::pair<std::string, std::string>>{{"A", "x"}, {"B", "y"}, {"C", "z"}});
    CHECK(yn[1].answer == "C");  // position 2 -> letter C
    CHECK(yn[1].hint == "look");
    CHECK(yn[2].choices == std::vector<std::pair<std::string, std::string>>{{"A", "p"}, {"B", "q"}});
    CHECK(yn[2].answer == "B");
}

TEST_CASE("JSONL manifest: bad lines are refused with their line numbers") {
    const std::string jsonl = "{\"id\": 1, \"image\": \"a.jpg\", \"question\": \"q\", \"answer\": \"yes\"}\n"
                              "not json\n"
                              "{\"id\": 1, \"image\": \"a.jpg\", \"question\": \"q\"}\n"
                              "{\"id\": 3, \"question\": \"q\"}\n"
                              "{\"id\": 4, \"image\": \"a.jpg\", \"question\": 5}\n";
    const std::string e = error_of([&] { read_manifest(write_data("bad.jsonl", jsonl), Benchmark::Pope); });
    CHECK(e.find("bad.jsonl: 4 bad rows (the file is refused)") != std::string::npos);
    CHECK(e.find("line 2: not JSON") != std::string::npos);
    CHECK(e.find("line 3: id 1 already used on line 1") != std::string::npos);
    CHECK(e.find("line 4: no \"image\"") != std::string::npos);
    CHECK(e.find("line 5: \"question\" is not a string") != std::string::npos);
    // text-mcq needs no image, but choices
    const auto t = read_manifest(
        write_data("mmlu_small.jsonl", "{\"id\": 1, \"question\": \"2+2?\", \"choices\": [\"3\", \"4\"], \"answer\": \"B\"}\n"),
        Benchmark::TextMcq);
    REQUIRE(t.size() == 1);
    CHECK(t[0].images() == 0);
    CHECK(error_of([&] {
              read_manifest(write_data("mcq_nochoice.jsonl", "{\"id\": 1, \"question\": \"q\"}\n"), Benchmark::TextMcq);
          }).find("line 1: a multiple-choice question needs \"choices\"") != std::string::npos);
}

TEST_CASE("the benchmark from its name or the data file's name") {
    CHECK(benchmark_from_name("text-mcq", "--benchmark") == Benchmark::TextMcq);
    CHECK(benchmark_name(Benchmark::Scienceqa) == "scienceqa");
    CHECK(error_of([] { benchmark_from_name("gqa", "--benchmark"); })
              .find("--benchmark: unknown benchmark \"gqa\", expected one of mme, pope, vqa, mmbench, scienceqa, mcq, "
                    "text-mcq") != std::string::npos);
    CHECK(benchmark_from_file_name("/data/MMBench_DEV_EN.tsv") == Benchmark::Mmbench);
    CHECK(benchmark_from_file_name("CCBench.tsv") == Benchmark::Mmbench);
    CHECK(benchmark_from_file_name("MME.tsv") == Benchmark::Mme);
    CHECK(benchmark_from_file_name("coco_pope_random.jsonl") == Benchmark::Pope);
    CHECK(benchmark_from_file_name("TextVQA_VAL.tsv") == Benchmark::Vqa);
    CHECK(benchmark_from_file_name("ScienceQA_TEST.tsv") == Benchmark::Scienceqa);
    CHECK(benchmark_from_file_name("mmlu_test.jsonl") == Benchmark::TextMcq);
    CHECK(error_of([] { benchmark_from_file_name("questions.tsv"); }).find("give --benchmark") != std::string::npos);
    CHECK(error_of([] { read_benchmark("x.csv", Benchmark::Vqa); }).find("unknown data format \".csv\"") !=
          std::string::npos);
}
