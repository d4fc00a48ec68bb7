// The rule for names that become folder names and are written into other languages' files: run names
// (run.name), sweep names and sweep variant names. One rule for all of them, checked before any folder is
// made, so that a name can neither leave its parent folder, nor pass for a temporary of the crash-safe
// writes (`.<name>.tmp-<pid>-<n>`, see atomic_dir.hpp), nor carry quotes, backticks, `$`, newlines or NUL
// into gnuplot scripts, Markdown tables, CSV files and Slurm scripts (docs/recipes.md, "Run names").
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace prefdiff::run {

// At most this many bytes: the temporary sibling `.<name>.tmp-<pid>-<n>` and `<name>.log` must still fit
// the 255-byte limit of a file name on common file systems.
inline constexpr std::size_t kMaxNameLength = 128;

// "" when `name` follows the rule: 1 to kMaxNameLength characters from A-Z a-z 0-9 . _ + -, the first a
// letter, a digit or '_'. Otherwise what is wrong, naming the first bad character and its position, and
// what is allowed, e.g. "has '`' at position 2, which is not allowed (use only ...)".
std::string name_problem(std::string_view name);

// Throws RunError ("run.name 'x' ...: <problem>. HINT: ...") when the name breaks the rule. Called where
// the run folder is created (RunDirectory::open).
void validate_run_name(std::string_view name);

// The text with ASCII control characters shown as escapes (\n, \r, \t, \0, \xHH), for quoting a hostile
// name in a message, a comment or a label without breaking the line, the terminal or the log.
std::string printable(std::string_view text);

}  // namespace prefdiff::run
