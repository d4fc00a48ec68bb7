// "Did you mean ...?" suggestions for unknown keys, sections and plugin ids (standard library only).
#pragma once

#include <string>
#include <vector>

namespace prefdiff {

// Levenshtein distance between two ASCII strings (case-sensitive).
size_t edit_distance(const std::string& a, const std::string& b);

// The closest candidate to `word` if it is close enough to be a plausible typo, else "".
std::string closest_match(const std::string& word, const std::vector<std::string>& candidates);

// "; did you mean 'x'?" or "" — ready to append to an error message.
std::string did_you_mean(const std::string& word, const std::vector<std::string>& candidates);

}  // namespace prefdiff
