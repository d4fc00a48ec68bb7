// prefdiff-data-tool: the `data` commands on their own, registered by prefdiff::data::add_cli exactly as the
// prefdiff main registers them; used by the end-to-end tests and the data benchmark.
#include <CLI/CLI.hpp>

#include "prefdiff/data/cli.hpp"

int main(int argc, char** argv) {
  CLI::App app{"prefdiff data tool"};
  app.require_subcommand(1);
  prefdiff::data::add_cli(app);
  CLI11_PARSE(app, argc, argv);
  return 0;
}
