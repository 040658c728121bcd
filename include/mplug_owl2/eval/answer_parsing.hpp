// Reading a model's answer as the official scoring tools read it.
// - MME (eval_tool, calculation.py, as in evaluate_mme.py): lower-cased; "yes"
//   or "no" as is, else "yes" if its first 4 characters hold "yes", else "no"
//   if they hold "no", else "other" (always wrong).
// - POPE (the POPE authors' evaluate.py, LLaVA's eval_pope.py): the text up to
//   the first '.', commas removed, split at spaces; "no" when a word is
//   "No", "no" or "not", else "yes".
// - VQA (the VQA challenge's vqaEval.py as mPLUG-Owl2 ships it in
//   evaluate/vqa_eval.py): see vqa_normalize_answer() and vqa_accuracy().
// - Multiple choice (VLMEvalKit's exact-matching step, can_infer in
//   vlmeval/utils/matching_util.py): see option_letter().
// Case and whitespace follow ASCII; the official tools use Python's Unicode
// rules, which agree on every character these rules look at.
#pragma once

#include <algorithm>
#include <cctype>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace mplug_owl2::eval {

inline std::string ascii_lower(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
    return s;
}

// Python's str.split(): runs of whitespace separate, none at the ends.
inline std::vector<std::string> split_words(const std::string& s) {
    std::vector<std::string> out;
    std::string w;
    for (const char c : s) {
        if (std::isspace(static_cast<unsigned char>(c))) {
            if (!w.empty()) out.push_back(std::move(w));
            w.clear();
        } else {
            w += c;
        }
    }
    if (!w.empty()) out.push_back(std::move(w));
    return out;
}

inline std::string replace_all(std::string s, const std::string& from, const std::string& to) {
    for (std::size_t at = 0; (at = s.find(from, at)) != std::string::npos; at += to.size()) s.replace(at, from.size(), to);
    return s;
}

// The first n characters (UTF-8 code points) of s, as Python's s[:n].
inline std::string first_characters(const std::string& s, std::size_t n) {
    std::size_t i = 0;
    for (std::size_t k = 0; k < n && i < s.size(); ++k)
        for (++i; i < s.size() && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80;) ++i;
    return s.substr(0, i);
}

// "yes", "no" or "other".
inline std::string mme_label(const std::string& prediction) {
    const std::string p = ascii_lower(prediction);
    if (p == "yes" || p == "no") return p;
    const std::string prefix = first_characters(p, 4);
    if (prefix.find("yes") != std::string::npos) return "yes";
    if (prefix.find("no") != std::string::npos) return "no";
    return "other";
}

// true: yes, false: no.
inline bool pope_says_yes(const std::string& prediction) {
    std::string text = prediction.substr(0, prediction.find('.'));
    text = replace_all(text, ",", "");
    std::size_t start = 0;
    for (;;) {  // Python's split(' '): every single space separates
        const std::size_t end = text.find(' ', start);
        const std::string word = text.substr(start, end - start);
        if (word == "No" || word == "no" || word == "not") return false;
        if (end == std::string::npos) return true;
        start = end + 1;
    }
}

// ---- VQA ------------------------------------------------------------------------------

// processPunctuation: each of ; / [ ] " { } ( ) = + \ _ - > < @ ` , ? ! is
// removed when the original text has it next to a space or holds a comma
// between digits, and replaced by a space otherwise; then every '.' not
// followed by a digit is removed, at most 32 of them (the official call
// passes re.UNICODE, 32, where re.sub takes its count).
inline std::string vqa_process_punctuation(const std::string& in) {
    static const std::string punct = ";/[]\"{}()=+\\_->,<@`?!";
    bool digit_comma_digit = false;
    for (std::size_t i = 1; i + 1 < in.size(); ++i)
        if (in[i] == ',' && std::isdigit(static_cast<unsigned char>(in[i - 1])) &&
            std::isdigit(static_cast<unsigned char>(in[i + 1])))
            digit_comma_digit = true;
    std::string out = in;
    for (const char p : punct) {
        const std::string ps(1, p);
        const bool removed = in.find(ps + " ") != std::string::npos || in.find(" " + ps) != std::string::npos ||
                             digit_comma_digit;
        out = replace_all(out, ps, removed ? "" : " ");
    }
    std::string stripped;
    std::size_t periods = 0;
    for (std::size_t i = 0; i < out.size(); ++i) {
        const bool digit_next = i + 1 < out.size() && std::isdigit(static_cast<unsigned char>(out[i + 1]));
        if (out[i] == '.' && !digit_next && periods < 32) {
            ++periods;
            continue;
        }
        stripped += out[i];
    }
    return stripped;
}

// processDigitArticle: lower-cased words; number words "none".."ten" as
// digits; the articles a, an, the dropped; contractions written without
// their apostrophe restored ("dont" -> "don't"); joined by single spaces.
inline std::string vqa_process_digit_article(const std::string& in) {
    static const std::map<std::string, std::string> numbers = {
        {"none", "0"}, {"zero", "0"}, {"one", "1"}, {"two", "2"},   {"three", "3"}, {"four", "4"},
        {"five", "5"}, {"six", "6"},  {"seven", "7"}, {"eight", "8"}, {"nine", "9"},  {"ten", "10"}};
    static const std::set<std::string> articles = {"a", "an", "the"};
    // vqa_eval.py's table; its keys with capitals ("Im", "Ive", "Id've")
    // never match a lower-cased word, here as there.
    static const std::map<std::string, std::string> contractions = {
        {"aint", "ain't"}, {"arent", "aren't"}, {"cant", "can't"}, {"couldve", "could've"}, {"couldnt", "couldn't"},
        {"couldn'tve", "couldn't've"}, {"couldnt've", "couldn't've"}, {"didnt", "didn't"}, {"doesnt", "doesn't"},
        {"dont", "don't"}, {"hadnt", "hadn't"}, {"hadnt've", "hadn't've"}, {"hadn'tve", "hadn't've"},
        {"hasnt", "hasn't"}, {"havent", "haven't"}, {"hed", "he'd"}, {"hed've", "he'd've"}, {"he'dve", "he'd've"},
        {"hes", "he's"}, {"howd", "how'd"}, {"howll", "how'll"}, {"hows", "how's"}, {"Id've", "I'd've"},
        {"I'dve", "I'd've"}, {"Im", "I'm"}, {"Ive", "I've"}, {"isnt", "isn't"}, {"itd", "it'd"},
        {"itd've", "it'd've"}, {"it'dve", "it'd've"}, {"itll", "it'll"}, {"let's", "let's"}, {"maam", "ma'am"},
        {"mightnt", "mightn't"}, {"mightnt've", "mightn't've"}, {"mightn'tve", "mightn't've"},
        {"mightve", "might've"}, {"mustnt", "mustn't"}, {"mustve", "must've"}, {"neednt", "needn't"},
        {"notve", "not've"}, {"oclock", "o'clock"}, {"oughtnt", "oughtn't"}, {"ow's'at", "'ow's'at"},
        {"'ows'at", "'ow's'at"}, {"'ow'sat", "'ow's'at"}, {"shant", "shan't"}, {"shed've", "she'd've"},
        {"she'dve", "she'd've"}, {"she's", "she's"}, {"shouldve", "should've"}, {"shouldnt", "shouldn't"},
        {"shouldnt've", "shouldn't've"}, {"shouldn'tve", "shouldn't've"}, {"somebody'd", "somebodyd"},
        {"somebodyd've", "somebody'd've"}, {"somebody'dve", "somebody'd've"}, {"somebodyll", "somebody'll"},
        {"somebodys", "somebody's"}, {"someoned", "someone'd"}, {"someoned've", "someone'd've"},
        {"someone'dve", "someone'd've"}, {"someonell", "someone'll"}, {"someones", "someone's"},
        {"somethingd", "something'd"}, {"somethingd've", "something'd've"}, {"something'dve", "something'd've"},
        {"somethingll", "something'll"}, {"thats", "that's"}, {"thered", "there'd"}, {"thered've", "there'd've"},
        {"there'dve", "there'd've"}, {"therere", "there're"}, {"theres", "there's"}, {"theyd", "they'd"},
        {"theyd've", "they'd've"}, {"they'dve", "they'd've"}, {"theyll", "they'll"}, {"theyre", "they're"},
        {"theyve", "they've"}, {"twas", "'twas"}, {"wasnt", "wasn't"}, {"wed've", "we'd've"},
        {"we'dve", "we'd've"}, {"weve", "we've"}, {"werent", "weren't"}, {"whatll", "what'll"},
        {"whatre", "what're"}, {"whats", "what's"}, {"whatve", "what've"}, {"whens", "when's"},
        {"whered", "where'd"}, {"wheres", "where's"}, {"whereve", "where've"}, {"whod", "who'd"},
        {"whod've", "who'd've"}, {"who'dve", "who'd've"}, {"wholl", "who'll"}, {"whos", "who's"},
        {"whove", "who've"}, {"whyll", "why'll"}, {"whyre", "why're"}, {"whys", "why's"}, {"wont", "won't"},
        {"wouldve", "would've"}, {"wouldnt", "wouldn't"}, {"wouldnt've", "wouldn't've"},
        {"wouldn'tve", "wouldn't've"}, {"yall", "y'all"}, {"yall'll", "y'all'll"}, {"y'allll", "y'all'll"},
        {"yall'd've", "y'all'd've"}, {"y'alld've", "y'all'd've"}, {"y'all'dve", "y'all'd've"}, {"youd", "you'd"},
        {"youd've", "you'd've"}, {"you'dve", "you'd've"}, {"youll", "you'll"}, {"youre", "you're"},
        {"youve", "you've"}};
    std::string out;
    for (std::string w : split_words(ascii_lower(in))) {
        if (const auto n = numbers.find(w); n != numbers.end()) w = n->second;
        if (articles.count(w)) continue;
        if (const auto c = contractions.find(w); c != contractions.end()) w = c->second;
        out += (out.empty() ? "" : " ") + w;
    }
    return out;
}

// The prediction as vqaEval compares it: line breaks and tabs as spaces,
// stripped, then punctuation, then digits and articles.
inline std::string vqa_normalize_answer(const std::string& prediction) {
    std::string p = replace_all(replace_all(prediction, "\n", " "), "\t", " ");
    const auto first = p.find_first_not_of(" \t\n\r\f\v");
    const auto last = p.find_last_not_of(" \t\n\r\f\v");
    p = first == std::string::npos ? "" : p.substr(first, last - first + 1);
    return vqa_process_digit_article(vqa_process_punctuation(p));
}

// VQA accuracy of one question, in [0, 1]: for each human answer left out in
// turn, min(1, (number of the other humans who gave the prediction) / 3),
// averaged over the n answers (10 in VQAv2: the 10 subsets of 9). The human
// answers pass through processPunctuation only, and only when they are not
// all equal, as in vqaEval. With a single answer (no other human to agree)
// the accuracy is 1 for an equal normalised answer, else 0.
inline double vqa_accuracy(const std::string& prediction, std::vector<std::string> humans) {
    const std::string res = vqa_normalize_answer(prediction);
    if (humans.empty()) return 0;
    if (humans.size() == 1) return res == vqa_normalize_answer(humans[0]) ? 1.0 : 0.0;
    if (std::set<std::string>(humans.begin(), humans.end()).size() > 1)
        for (auto& h : humans) h = vqa_process_punctuation(h);
    double sum = 0;
    for (std::size_t left_out = 0; left_out < humans.size(); ++left_out) {
        std::size_t matching = 0;
        for (std::size_t k = 0; k < humans.size(); ++k)
            if (k != left_out && humans[k] == res) ++matching;
        sum += std::min(1.0, static_cast<double>(matching) / 3.0);
    }
    return sum / static_cast<double>(humans.size());
}

// ---- multiple choice --------------------------------------------------------------------

// can_infer(answer, choices): the option letter a prediction names, "Z" for
// a refusal, "" when none can be inferred.
// 1. can_infer_option (not for an API failure message): a refusal phrase -> "Z"; else the characters
//    .()[],:;!*#{} become spaces, the text is split into words, and exactly
//    one word equal to an option letter gives that letter; no letter but a
//    word "Z" gives "Z".
// 2. else can_infer_text: the one option whose text (lower-cased) occurs in
//    the lower-cased prediction.
inline std::string option_letter(const std::string& prediction,
                                 const std::vector<std::pair<std::string, std::string>>& choices) {
    // 1. can_infer_option (skipped for an API failure message)
    if (prediction.find("Failed to obtain answer via API") == std::string::npos) {
        for (const char* refusal : {"Sorry, I can't help with images of people yet.", "I can't process this file.",
                                    "I'm sorry, but without the image provided", "Cannot determine the answer"})
            if (prediction.find(refusal) != std::string::npos) return "Z";
        std::string spaced = prediction;
        for (char& c : spaced)
            if (std::string(".()[],:;!*#{}").find(c) != std::string::npos) c = ' ';
        const std::vector<std::string> words = split_words(spaced);
        const auto has = [&](const std::string& w) { return std::find(words.begin(), words.end(), w) != words.end(); };
        std::string named;
        std::size_t count = 0;
        for (const auto& [letter, text] : choices)
            if (has(letter)) {
                ++count;
                if (named.empty()) named = letter;
            }
        if (count == 1) return named;
        if (count == 0 && has("Z")) return "Z";
    }
    // 2. can_infer_text
    const std::string lower = ascii_lower(prediction);
    std::string found;
    std::size_t found_count = 0;
    for (const auto& [letter, text] : choices)
        if (lower.find(ascii_lower(text)) != std::string::npos) {
            ++found_count;
            found = letter;
        }
    return found_count == 1 ? found : "";
}

}  // namespace mplug_owl2::eval
