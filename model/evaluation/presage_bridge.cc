// Presage predictions for text buffers, one query per line, for story-repl's keystroke evaluation.
//
// Usage: presage_bridge CONFIG.xml
//
// Each line on stdin is one query, "N<TAB>buffer": how many predictions are wanted, and the
// text typed so far with backslash, newline and tab written as \\, \n and \t. For each line
// the program writes one line on stdout, flushed at once: the (at most N) predictions Presage
// makes for that buffer (completions of the word being typed, or next words after a space),
// most likely first, as "word<TAB>probability" pairs joined by tabs; an empty line when
// Presage has none. (N sets Presage's SUGGESTIONS; the candidates its predictors consider
// are set by MAX_PARTIAL_PREDICTION_SIZE in CONFIG.xml.) A line "!<message>" reports an error with that query, and the program
// goes on.
//
// Presage reads the buffer through its callback as the past stream (nothing after the
// cursor). Which predictors run, their database and how many suggestions come back are set
// in CONFIG.xml; story-repl writes one that uses only a smoothed n-gram database built with
// text2ngram from the model's training text, with online learning off.
#include <presage.h>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace {

class Buffer : public PresageCallback {
 public:
  std::string past;
  std::string get_past_stream() const override { return past; }
  std::string get_future_stream() const override { return std::string(); }
};

std::string unescape(const std::string& line) {
  std::string out;
  out.reserve(line.size());
  for (std::string::size_type i = 0; i < line.size(); ++i) {
    char c = line[i];
    if (c == '\\' && i + 1 < line.size()) {
      char n = line[++i];
      out += n == 'n' ? '\n' : n == 't' ? '\t' : n;
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: presage_bridge CONFIG.xml" << std::endl;
    return 2;
  }
  std::ios::sync_with_stdio(false);
  Buffer buffer;
  Presage* presage = nullptr;
  try {
    presage = new Presage(&buffer, argv[1]);
  } catch (PresageException& e) {
    std::cerr << "presage: " << e.what() << std::endl;
    return 1;
  }
  std::string line;
  std::string wanted;
  std::vector<std::string> no_filter;
  while (std::getline(std::cin, line)) {
    std::string::size_type tab = line.find('\t');
    std::string count = tab == std::string::npos ? std::string("10") : line.substr(0, tab);
    buffer.past = unescape(tab == std::string::npos ? line : line.substr(tab + 1));
    try {
      if (count != wanted) {
        presage->config("Presage.Selector.SUGGESTIONS", count);
        wanted = count;
      }
      // The prediction with probabilities (no filter: every word that fits the prefix).
      std::multimap<double, std::string> scored = presage->predict(no_filter);
      std::vector<std::pair<double, std::string>> words(scored.rbegin(), scored.rend());
      std::stable_sort(words.begin(), words.end(),
                       [](const std::pair<double, std::string>& a, const std::pair<double, std::string>& b) {
                         return a.first > b.first;
                       });
      std::string out;
      for (std::vector<std::pair<double, std::string>>::size_type i = 0; i < words.size(); ++i) {
        char num[32];
        std::snprintf(num, sizeof num, "%.6g", words[i].first);
        if (i) out += '\t';
        out += words[i].second;
        out += '\t';
        out += num;
      }
      std::cout << out << '\n';
    } catch (PresageException& e) {
      std::cout << '!' << e.what() << '\n';
    }
    std::cout.flush();
  }
  delete presage;
  return 0;
}
