// `prefdiff data ...`: import, inspect and validate pair shards. The prefdiff main calls add_cli(app);
// commands report problems on stderr and exit non-zero (CLI::RuntimeError) on any failure.
#ifndef PREFDIFF_DATA_CLI_HPP
#define PREFDIFF_DATA_CLI_HPP

#include <CLI/CLI.hpp>

namespace prefdiff::data {

// Registers the `data` subcommand and its `import FORMAT`, `inspect SHARD`, `validate SHARD...` commands.
void add_cli(CLI::App& app);

}  // namespace prefdiff::data

#endif  // PREFDIFF_DATA_CLI_HPP
