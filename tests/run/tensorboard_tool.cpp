// Writes a run folder's TensorBoard events as a JSON script says, for tensorboard_e2e.py, which reads them
// back with TensorBoard's own readers.
//
//   tensorboard_tool SCRIPT.json      prints {"event_file": PATH} on success
//
// SCRIPT: {"dir": PATH, "resume_step": -1, "flush_every_records": 10, "exit_without_close": false,
//          "ops": [{"op": "scalar", "tag": T, "value": V, "step": S, "wall_time": W (optional)},
//                  {"op": "image", "tag": T, "png_file": PATH, "height": H, "width": W, "step": S},
//                  {"op": "row" | "eval", "step": S, "epoch": E, "values": {KEY: V or null}},  (MetricsLogger)
//                  {"op": "flush"}]}
// exit_without_close: end with _Exit after the last op, as a killed process would (no flush, no close).
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>

#include <nlohmann/json.hpp>

#include "prefdiff/run/atomic_dir.hpp"
#include "prefdiff/run/metrics.hpp"
#include "prefdiff/run/tensorboard/tensorboard_sink.hpp"
#include "prefdiff/run/tensorboard/tensorboard_writer.hpp"

using nlohmann::json;
using namespace prefdiff::run;

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: tensorboard_tool SCRIPT.json\n";
    return 2;
  }
  try {
    const json script = json::parse(read_file(argv[1]));
    const std::filesystem::path dir = script.at("dir").get<std::string>();
    TensorBoardOptions options;
    options.resume_step = script.value("resume_step", -1);
    options.flush_every_records = script.value("flush_every_records", 10);
    TensorBoardWriter tb(dir, options);
    MetricsLogger metrics(dir, MetricsOptions{true, options.resume_step, false});
    metrics.add_row_sink(tensorboard_sink(tb));
    for (const json& op : script.at("ops")) {
      const std::string kind = op.at("op");
      if (kind == "scalar") {
        std::optional<double> wall_time;
        if (op.contains("wall_time")) wall_time = op["wall_time"].get<double>();
        tb.add_scalar(op.at("tag"), op.at("value").get<double>(), op.at("step"), wall_time);
      } else if (kind == "image") {
        tb.add_image(op.at("tag"), read_file(op.at("png_file").get<std::string>()), op.at("height"), op.at("width"),
                     op.at("step"));
      } else if (kind == "row" || kind == "eval") {
        std::map<std::string, double> values;
        for (const auto& [k, v] : op.at("values").items()) values[k] = v.is_null() ? NAN : v.get<double>();
        if (kind == "row")
          metrics.write_row(op.at("step"), op.at("epoch"), values);
        else
          metrics.write_eval(op.at("step"), op.at("epoch"), values);
      } else if (kind == "flush") {
        tb.flush();
      } else {
        throw std::runtime_error("unknown op '" + kind + "'");
      }
    }
    std::cout << json{{"event_file", tb.path().string()}}.dump() << std::endl;
    if (script.value("exit_without_close", false)) std::_Exit(0);
    tb.close();
  } catch (const std::exception& e) {
    std::cerr << "tensorboard_tool: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
