// prefdiff SDK, header-only C++ layer over the tier-1 C ABI.
//
// A plugin is a short class plus one export macro:
//
//   class Dpo final : public prefdiff::sdk::Objective {
//    public:
//     static prefdiff::sdk::PluginInfo info() { ... id, version, summary, citation, schema ... }
//     Dpo(const prefdiff::sdk::Params& params, const prefdiff::sdk::Host& host);
//     void evaluate(const prefdiff::sdk::ObjectiveBatch& batch, prefdiff::sdk::ObjectiveResult& out) override;
//   };
//   PREFDIFF_EXPORT_OBJECTIVE(Dpo)
//
// Exceptions thrown by the class become status codes and messages at the boundary: throw
// prefdiff::sdk::Error(PD_ERR_INVALID_ARGUMENT, "...") for a bad parameter, anything else becomes
// PD_ERR_INTERNAL with its what().
#ifndef PREFDIFF_SDK_HPP
#define PREFDIFF_SDK_HPP

#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "prefdiff/abi.h"
#include "prefdiff/noise.h"
#include "prefdiff/objective.h"

namespace prefdiff::sdk {

// ------------------------------------------------------------------ errors

class Error : public std::runtime_error {
 public:
  Error(pd_status status, const std::string& message) : std::runtime_error(message), status_(status) {}
  pd_status status() const noexcept { return status_; }

 private:
  pd_status status_;
};

inline void write_error(pd_error* error, const char* message) noexcept {
  if (error == nullptr || error->message == nullptr || error->capacity == 0) return;
  std::snprintf(error->message, error->capacity, "%s", message);
}

// Runs `body` and turns any exception into a status code plus message: the boundary guard.
template <typename Body>
pd_status guard(pd_error* error, Body&& body) noexcept {
  try {
    body();
    return PD_OK;
  } catch (const Error& e) {
    write_error(error, e.what());
    return e.status();
  } catch (const std::bad_alloc&) {
    write_error(error, "out of memory");
    return PD_ERR_OUT_OF_MEMORY;
  } catch (const std::exception& e) {
    write_error(error, e.what());
    return PD_ERR_INTERNAL;
  } catch (...) {
    write_error(error, "unknown exception inside the plugin");
    return PD_ERR_INTERNAL;
  }
}

// A message buffer for callers of the C ABI (the host, the conformance kit, tests).
class ErrorBuffer {
 public:
  ErrorBuffer() { reset(); }
  pd_error* get() { return &error_; }
  std::string message() const { return std::string(buffer_); }
  void reset() {
    buffer_[0] = '\0';
    error_.struct_size = sizeof(pd_error);
    error_.capacity = sizeof(buffer_);
    error_.message = buffer_;
  }

 private:
  char buffer_[2048];
  pd_error error_;
};

inline const char* status_name(pd_status status) {
  switch (status) {
    case PD_OK: return "ok";
    case PD_ERR_INVALID_ARGUMENT: return "invalid argument";
    case PD_ERR_NON_FINITE: return "non-finite input";
    case PD_ERR_ABI_MISMATCH: return "ABI mismatch";
    case PD_ERR_UNSUPPORTED: return "unsupported";
    case PD_ERR_OUT_OF_MEMORY: return "out of memory";
    case PD_ERR_BUFFER_TOO_SMALL: return "buffer too small";
    case PD_ERR_IO: return "I/O error";
    case PD_ERR_INTERNAL: return "internal error";
  }
  return "unknown status";
}

// ------------------------------------------------------------------ schema

// Builder for one pd_param_spec. Strings are kept alive by the PluginInfo that owns the builder.
class ParamSpec {
 public:
  static ParamSpec real(std::string name, double default_value, std::string doc) {
    return ParamSpec(PD_PARAM_FLOAT, std::move(name), std::move(doc)).set_default(default_value);
  }
  static ParamSpec integer(std::string name, long long default_value, std::string doc) {
    return ParamSpec(PD_PARAM_INT, std::move(name), std::move(doc)).set_default(static_cast<double>(default_value));
  }
  static ParamSpec boolean(std::string name, bool default_value, std::string doc) {
    return ParamSpec(PD_PARAM_BOOL, std::move(name), std::move(doc)).set_default(default_value ? 1.0 : 0.0);
  }
  static ParamSpec string(std::string name, std::string default_value, std::string doc) {
    ParamSpec spec(PD_PARAM_STRING, std::move(name), std::move(doc));
    spec.default_string_ = std::move(default_value);
    return spec;
  }
  // A parameter without a default: absent unless the recipe sets it.
  ParamSpec& optional() { bounds_ |= PD_PARAM_OPTIONAL; return *this; }
  // A string holding a filesystem path, resolved by the host relative to the recipe that sets it.
  ParamSpec& path() { bounds_ |= PD_PARAM_PATH; return *this; }
  ParamSpec& min(double value, bool exclusive = false) {
    min_ = value;
    bounds_ |= PD_PARAM_HAS_MIN | (exclusive ? PD_PARAM_MIN_EXCLUSIVE : 0u);
    return *this;
  }
  ParamSpec& max(double value, bool exclusive = false) {
    max_ = value;
    bounds_ |= PD_PARAM_HAS_MAX | (exclusive ? PD_PARAM_MAX_EXCLUSIVE : 0u);
    return *this;
  }
  ParamSpec& choices(std::string values) { choices_ = std::move(values); return *this; }
  ParamSpec& range_note(std::string note) { range_note_ = std::move(note); return *this; }

  // The C view; valid while this object lives and is not modified.
  pd_param_spec c_spec() const {
    pd_param_spec spec{};
    spec.struct_size = sizeof(pd_param_spec);
    spec.type = type_;
    spec.name = name_.c_str();
    spec.doc = doc_.c_str();
    spec.default_number = default_number_;
    spec.default_string = type_ == PD_PARAM_STRING ? default_string_.c_str() : nullptr;
    spec.min = min_;
    spec.max = max_;
    spec.bounds = bounds_;
    spec.choices = choices_.empty() ? nullptr : choices_.c_str();
    spec.range_note = range_note_.empty() ? nullptr : range_note_.c_str();
    return spec;
  }

 private:
  ParamSpec(uint32_t type, std::string name, std::string doc) : type_(type), name_(std::move(name)), doc_(std::move(doc)) {}
  ParamSpec& set_default(double value) { default_number_ = value; return *this; }

  uint32_t type_;
  std::string name_, doc_, default_string_, choices_, range_note_;
  double default_number_ = 0.0, min_ = 0.0, max_ = 0.0;
  uint32_t bounds_ = 0;
};

// What a plugin class reports about itself through `static PluginInfo info()`.
struct PluginInfo {
  std::string id;
  std::string version;
  std::string summary;
  std::string citation;
  std::string formula_version;
  std::vector<ParamSpec> params;
  std::vector<std::string> diagnostics;  // objectives: batch-level scalar names
  // PD_CAP_* flags. Objectives also declare here which optional inputs they read: PD_CAP_REFERENCE_FREE
  // (no ref_w/ref_l: the host may skip the reference model) and PD_CAP_NEEDS_ERROR_INNER_PRODUCTS
  // (ObjectiveBatch::error_ww/error_wl/error_ll). The SDK checks the host's inputs against them.
  uint64_t capabilities = 0;
};

// ------------------------------------------------------------------ parameters and host

class Params {
 public:
  Params(const pd_param_value* values, uint32_t count) : values_(values, values + count) {}

  bool has(std::string_view name) const { return find(name) != nullptr; }
  // Non-finite numbers and fractional integers are refused here, for every plugin and every caller (the
  // host checks recipes; a direct C caller may pass anything): no plugin has to remember it.
  double number(std::string_view name) const {
    const double value = require(name).number;
    if (!std::isfinite(value))
      throw Error(PD_ERR_INVALID_ARGUMENT, "parameter '" + std::string(name) + "' = " + std::to_string(value) +
                                               " is not a finite number; HINT: give a finite value");
    return value;
  }
  long long integer(std::string_view name) const {
    const double value = require(name).number;
    if (!std::isfinite(value) || value != std::trunc(value))
      throw Error(PD_ERR_INVALID_ARGUMENT, "parameter '" + std::string(name) + "' = " + std::to_string(value) +
                                               " is not a whole number; HINT: give an integer");
    return static_cast<long long>(value);
  }
  bool boolean(std::string_view name) const { return require(name).number != 0.0; }
  std::string string(std::string_view name) const {
    const pd_param_value& v = require(name);
    return v.string != nullptr ? std::string(v.string) : std::string();
  }

 private:
  const pd_param_value* find(std::string_view name) const {
    for (const pd_param_value& v : values_)
      if (v.name != nullptr && name == v.name) return &v;
    return nullptr;
  }
  const pd_param_value& require(std::string_view name) const {
    const pd_param_value* v = find(name);
    if (v == nullptr) throw Error(PD_ERR_INVALID_ARGUMENT, "parameter '" + std::string(name) + "' was not given");
    return *v;
  }
  std::vector<pd_param_value> values_;
};

class Host {
 public:
  Host(const pd_host_services* services, std::string plugin_id) : services_(services), id_(std::move(plugin_id)) {}

  void log(pd_log_level level, const std::string& message) const {
    if (services_ != nullptr && services_->log != nullptr) services_->log(services_->context, level, id_.c_str(), message.c_str());
  }
  void metric(const std::string& name, double value) const {
    if (services_ != nullptr && services_->metric != nullptr) services_->metric(services_->context, id_.c_str(), name.c_str(), value);
  }
  // Sums `values` in place over the data-parallel group; identity on a single rank or without a host.
  void all_reduce_sum(double* values, size_t count) const {
    if (services_ == nullptr || services_->all_reduce_sum == nullptr) return;
    ErrorBuffer error;
    pd_status status = services_->all_reduce_sum(services_->context, values, count, error.get());
    if (status != PD_OK) throw Error(status, "host all-reduce failed: " + error.message());
  }
  int rank() const { return services_ != nullptr ? services_->rank : 0; }
  int world_size() const { return services_ != nullptr ? services_->world_size : 1; }

 private:
  const pd_host_services* services_;
  std::string id_;
};

// ------------------------------------------------------------------ objectives

// Read-only view of one batch (this rank's pairs).
struct ObjectiveBatch {
  size_t count;
  size_t global_count;
  const double* model_w;
  const double* model_l;
  const double* ref_w;     // null when the plugin declares PD_CAP_REFERENCE_FREE and the host skipped the reference
  const double* ref_l;
  const double* timestep;  // may be null
  long long step;
  // Per-pair Gram matrix of the error vectors e = model_pred - target, divided by the elements per image
  // (objective.h). Set only for plugins that declare PD_CAP_NEEDS_ERROR_INNER_PRODUCTS: the SDK refuses a
  // host that does not provide them, so such a plugin can read them unconditionally. Null otherwise.
  const double* error_ww = nullptr;  // <e_w, e_w>/D (= model_w)
  const double* error_wl = nullptr;  // <e_w, e_l>/D
  const double* error_ll = nullptr;  // <e_l, e_l>/D (= model_l)

  bool has_reference() const { return ref_w != nullptr && ref_l != nullptr; }
  bool has_error_inner_products() const { return error_ww != nullptr && error_wl != nullptr && error_ll != nullptr; }
};

// Per-pair outputs plus batch diagnostics, in the order of PluginInfo::diagnostics.
struct ObjectiveResult {
  double* loss;
  double* dloss_dmodel_w;
  double* dloss_dmodel_l;
  double* margin;
  double* diagnostics;
  size_t diagnostic_count;
};

class Objective {
 public:
  virtual ~Objective() = default;
  virtual void evaluate(const ObjectiveBatch& batch, ObjectiveResult& result) = 0;
  // Stateful objectives (PD_CAP_STATEFUL) override both.
  virtual std::string save_state() const { return std::string(); }
  virtual void load_state(const std::string& /*state*/) {}
};

// ------------------------------------------------------------------ noise injectors

struct NoiseBatch {
  size_t count;
  size_t dataset_size;
  const uint64_t* pair_ids;
  uint32_t metadata_count;
  const char* const* metadata_names;
  const double* const* metadata;

  // The metadata column `name`, or nullptr when the dataset does not provide it.
  const double* column(std::string_view name) const {
    for (uint32_t i = 0; i < metadata_count; ++i)
      if (metadata_names[i] != nullptr && name == metadata_names[i]) return metadata[i];
    return nullptr;
  }
  const double* require_column(std::string_view name, std::string_view plugin_id) const {
    const double* values = column(name);
    if (values == nullptr)
      throw Error(PD_ERR_INVALID_ARGUMENT, std::string(plugin_id) + " needs the per-pair metadata column '" +
                                               std::string(name) + "', which the dataset does not provide");
    return values;
  }
};

class NoiseInjector {
 public:
  virtual ~NoiseInjector() = default;
  virtual void decide(const NoiseBatch& batch, uint8_t* flip) = 0;
};

// ------------------------------------------------------------------ export machinery

namespace detail {

// Owns everything the descriptor points to; lives for the life of the library.
struct DescriptorStorage {
  PluginInfo info;
  std::vector<pd_param_spec> specs;
  std::vector<const char*> diagnostic_names;
  pd_plugin_descriptor descriptor{};

  void build(PluginInfo plugin_info, pd_kind kind, const void* functions) {
    info = std::move(plugin_info);
    specs.clear();
    for (const ParamSpec& p : info.params) specs.push_back(p.c_spec());
    diagnostic_names.clear();
    for (const std::string& d : info.diagnostics) diagnostic_names.push_back(d.c_str());
    descriptor.struct_size = sizeof(pd_plugin_descriptor);
    descriptor.abi_major = PD_ABI_MAJOR;
    descriptor.abi_minor = PD_ABI_MINOR;
    descriptor.kind = kind;
    descriptor.id = info.id.c_str();
    descriptor.version = info.version.c_str();
    descriptor.summary = info.summary.c_str();
    descriptor.citation = info.citation.c_str();
    descriptor.formula_version = info.formula_version.c_str();
    descriptor.params = specs.data();
    descriptor.param_count = static_cast<uint32_t>(specs.size());
    descriptor.capabilities = info.capabilities;
    descriptor.functions = functions;
  }
};

// pd_instance is opaque in C; in C++ it is a box holding the plugin object. A kind whose instance
// carries more (a dataset's C description) uses its own box with the same `object` and `on_created()`.
template <typename Base>
struct InstanceBox {
  std::unique_ptr<Base> object;
  void on_created() {}
};

inline void require_abi_major(uint32_t host_major) {
  if (host_major != PD_ABI_MAJOR)
    throw Error(PD_ERR_ABI_MISMATCH, "plugin speaks prefdiff ABI major " + std::to_string(PD_ABI_MAJOR) +
                                         ", host speaks " + std::to_string(host_major));
}

// What every kind's export shares: the descriptor storage of this plugin class and the instance
// lifetime (create wraps the constructor so its exceptions become a status and message).
template <typename Plugin, typename Box>
struct ExportCommon {
  static DescriptorStorage& storage() {
    static DescriptorStorage s;
    return s;
  }
  static pd_status create(const pd_host_services* services, const pd_param_value* params, uint32_t count,
                          pd_instance** instance, pd_error* error) noexcept {
    return guard(error, [&] {
      if (instance == nullptr) throw Error(PD_ERR_INVALID_ARGUMENT, "create: null instance pointer");
      auto box = std::make_unique<Box>();
      box->object = std::make_unique<Plugin>(Params(params, count), Host(services, storage().info.id));
      box->on_created();
      *instance = reinterpret_cast<pd_instance*>(box.release());
    });
  }
  static void destroy(pd_instance* instance) noexcept { delete reinterpret_cast<Box*>(instance); }
};

inline bool finite_all(const double* values, size_t count) {
  if (values == nullptr) return true;
  for (size_t i = 0; i < count; ++i)
    if (!std::isfinite(values[i])) return false;
  return true;
}

template <typename Plugin>
struct ObjectiveExport : ExportCommon<Plugin, InstanceBox<Objective>> {
  using Box = InstanceBox<Objective>;
  using Common = ExportCommon<Plugin, Box>;
  using Common::storage;
  static pd_status evaluate(pd_instance* instance, const pd_objective_inputs* in, pd_objective_outputs* out,
                            pd_error* error) noexcept {
    return guard(error, [&] {
      if (instance == nullptr || in == nullptr || out == nullptr)
        throw Error(PD_ERR_INVALID_ARGUMENT, "evaluate: null instance, inputs or outputs");
      const std::string& id = storage().info.id;
      const uint64_t capabilities = storage().info.capabilities;
      const bool reference_free = (capabilities & PD_CAP_REFERENCE_FREE) != 0;
      const bool needs_products = (capabilities & PD_CAP_NEEDS_ERROR_INNER_PRODUCTS) != 0;
      const size_t n = static_cast<size_t>(in->count);
      if (n > 0 && (in->model_w == nullptr || in->model_l == nullptr))
        throw Error(PD_ERR_INVALID_ARGUMENT, "evaluate: null input vector (model_w or model_l)");
      if (n > 0 && (in->ref_w == nullptr) != (in->ref_l == nullptr))
        throw Error(PD_ERR_INVALID_ARGUMENT, "evaluate: only one of ref_w and ref_l is null; pass both or neither");
      if (n > 0 && in->ref_w == nullptr && !reference_free)
        throw Error(PD_ERR_INVALID_ARGUMENT, id + " needs the reference model's errors ref_w and ref_l, but the host "
                                                 "passed none. HINT: only objectives that declare "
                                                 "PD_CAP_REFERENCE_FREE may be called without a reference");
      const double* products[3] = {nullptr, nullptr, nullptr};
      if (needs_products) {
        if (!PD_HAS_FIELD(in, pd_objective_inputs, error_ll))
          throw Error(PD_ERR_UNSUPPORTED,
                      id + " needs the per-pair error inner products of prefdiff ABI 1.1 (pd_objective_inputs."
                           "error_ww/error_wl/error_ll), but the host passed the inputs of an older ABI (struct_size " +
                          std::to_string(in->struct_size) + " bytes, 1.1 has " +
                          std::to_string(sizeof(pd_objective_inputs)) + "). HINT: use a prefdiff host of ABI 1.1 or later");
        products[0] = in->error_ww;
        products[1] = in->error_wl;
        products[2] = in->error_ll;
        if (n > 0 && (products[0] == nullptr || products[1] == nullptr || products[2] == nullptr))
          throw Error(PD_ERR_INVALID_ARGUMENT,
                      id + " declares PD_CAP_NEEDS_ERROR_INNER_PRODUCTS but the host left error_ww/error_wl/error_ll "
                           "null. HINT: the host must compute <e_w,e_w>/D, <e_w,e_l>/D, <e_l,e_l>/D per pair for it");
      }
      if (n > 0 && (out->loss == nullptr || out->dloss_dmodel_w == nullptr || out->dloss_dmodel_l == nullptr ||
                    out->margin == nullptr))
        throw Error(PD_ERR_INVALID_ARGUMENT, "evaluate: null output vector");
      const char* names[] = {"model_w", "model_l", "ref_w", "ref_l", "timestep", "error_ww", "error_wl", "error_ll"};
      const double* vectors[] = {in->model_w, in->model_l, in->ref_w, in->ref_l, in->timestep,
                                 products[0], products[1], products[2]};
      for (int v = 0; v < 8; ++v)
        if (!finite_all(vectors[v], n))
          throw Error(PD_ERR_NON_FINITE, std::string("input '") + names[v] + "' holds a NaN or Inf");
      const size_t diagnostics = storage().info.diagnostics.size();
      if (diagnostics > 0 && (out->diagnostics == nullptr || out->diagnostic_capacity < diagnostics))
        throw Error(PD_ERR_BUFFER_TOO_SMALL, "evaluate: diagnostics buffer holds " +
                                                 std::to_string(out->diagnostic_capacity) + " values, " +
                                                 std::to_string(diagnostics) + " needed");
      ObjectiveBatch batch{n,
                           in->global_count != 0 ? static_cast<size_t>(in->global_count) : n,
                           in->model_w, in->model_l, in->ref_w, in->ref_l, in->timestep,
                           static_cast<long long>(in->step), products[0], products[1], products[2]};
      ObjectiveResult result{out->loss, out->dloss_dmodel_w, out->dloss_dmodel_l, out->margin, out->diagnostics,
                             diagnostics};
      reinterpret_cast<Box*>(instance)->object->evaluate(batch, result);
    });
  }
  static pd_status save_state(pd_instance* instance, void* buffer, size_t* size, pd_error* error) noexcept {
    return guard(error, [&] {
      std::string state = reinterpret_cast<Box*>(instance)->object->save_state();
      if (buffer == nullptr || *size < state.size()) {
        *size = state.size();
        if (buffer != nullptr) throw Error(PD_ERR_BUFFER_TOO_SMALL, "state buffer too small");
        return;
      }
      std::memcpy(buffer, state.data(), state.size());
      *size = state.size();
    });
  }
  static pd_status load_state(pd_instance* instance, const void* buffer, size_t size, pd_error* error) noexcept {
    return guard(error, [&] {
      reinterpret_cast<Box*>(instance)->object->load_state(std::string(static_cast<const char*>(buffer), size));
    });
  }
  static pd_status entry(uint32_t host_major, uint32_t host_minor, const pd_host_services* /*services*/,
                         const pd_plugin_descriptor** descriptor, pd_error* error) noexcept {
    return guard(error, [&] {
      require_abi_major(host_major);
      static pd_objective_functions functions{};
      static bool built = false;
      if (!built) {
        PluginInfo info = Plugin::info();
        const bool stateful = (info.capabilities & PD_CAP_STATEFUL) != 0;
        storage().build(std::move(info), PD_KIND_OBJECTIVE, &functions);
        functions.struct_size = sizeof(pd_objective_functions);
        functions.diagnostic_count = static_cast<uint32_t>(storage().diagnostic_names.size());
        functions.diagnostic_names = storage().diagnostic_names.data();
        functions.create = &Common::create;
        functions.destroy = &Common::destroy;
        functions.evaluate = &evaluate;
        functions.save_state = stateful ? &save_state : nullptr;
        functions.load_state = stateful ? &load_state : nullptr;
        built = true;
      }
      // A 1.0 host cannot pass the inner products: say so at load time rather than at the first step.
      if ((storage().info.capabilities & PD_CAP_NEEDS_ERROR_INNER_PRODUCTS) != 0 && host_minor < 1)
        throw Error(PD_ERR_UNSUPPORTED, storage().info.id + " needs the per-pair error inner products of prefdiff "
                                                            "ABI 1.1, but the host speaks ABI " +
                                            std::to_string(host_major) + "." + std::to_string(host_minor) +
                                            ". HINT: upgrade prefdiff to a host of ABI 1.1 or later");
      *descriptor = &storage().descriptor;
    });
  }
};

template <typename Plugin>
struct NoiseExport : ExportCommon<Plugin, InstanceBox<NoiseInjector>> {
  using Box = InstanceBox<NoiseInjector>;
  using Common = ExportCommon<Plugin, Box>;
  using Common::storage;
  static pd_status decide(pd_instance* instance, const pd_noise_inputs* in, pd_noise_outputs* out,
                          pd_error* error) noexcept {
    return guard(error, [&] {
      if (instance == nullptr || in == nullptr || out == nullptr || (in->count > 0 && (in->pair_ids == nullptr || out->flip == nullptr)))
        throw Error(PD_ERR_INVALID_ARGUMENT, "decide: null instance, inputs or outputs");
      NoiseBatch batch{static_cast<size_t>(in->count), static_cast<size_t>(in->dataset_size), in->pair_ids,
                       in->metadata_count, in->metadata_names, in->metadata};
      reinterpret_cast<Box*>(instance)->object->decide(batch, out->flip);
    });
  }
  static pd_status entry(uint32_t host_major, uint32_t /*host_minor*/, const pd_host_services* /*services*/,
                         const pd_plugin_descriptor** descriptor, pd_error* error) noexcept {
    return guard(error, [&] {
      require_abi_major(host_major);
      static pd_noise_functions functions{};
      static bool built = false;
      if (!built) {
        storage().build(Plugin::info(), PD_KIND_NOISE_INJECTOR, &functions);
        functions.struct_size = sizeof(pd_noise_functions);
        functions.create = &Common::create;
        functions.destroy = &Common::destroy;
        functions.decide = &decide;
        built = true;
      }
      *descriptor = &storage().descriptor;
    });
  }
};

}  // namespace detail

// A deterministic uniform number in [0, 1) from (seed, key, stream): splitmix64 finalisers. Noise
// injectors use it so a pair's fate depends only on (seed, pair id), never on call order.
inline uint64_t mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}
inline double hash_uniform(uint64_t seed, uint64_t key, uint64_t stream = 0) {
  const uint64_t h = mix64(mix64(mix64(seed) ^ key) ^ (stream * 0xD1B54A32D192ED03ull));
  return static_cast<double>(h >> 11) * 0x1.0p-53;
}

}  // namespace prefdiff::sdk

// One export macro per kind: defines the library's single exported entry point.
#define PREFDIFF_EXPORT_OBJECTIVE(PluginClass)                                                              \
  extern "C" PD_EXPORT pd_status prefdiff_plugin_entry(uint32_t host_major, uint32_t host_minor,            \
                                                       const pd_host_services* host,                        \
                                                       const pd_plugin_descriptor** descriptor,             \
                                                       pd_error* error) {                                   \
    return ::prefdiff::sdk::detail::ObjectiveExport<PluginClass>::entry(host_major, host_minor, host,      \
                                                                         descriptor, error);               \
  }

#define PREFDIFF_EXPORT_NOISE_INJECTOR(PluginClass)                                                         \
  extern "C" PD_EXPORT pd_status prefdiff_plugin_entry(uint32_t host_major, uint32_t host_minor,            \
                                                       const pd_host_services* host,                        \
                                                       const pd_plugin_descriptor** descriptor,             \
                                                       pd_error* error) {                                   \
    return ::prefdiff::sdk::detail::NoiseExport<PluginClass>::entry(host_major, host_minor, host,          \
                                                                     descriptor, error);                   \
  }

#endif  // PREFDIFF_SDK_HPP
