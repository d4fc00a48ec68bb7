// Puts a model in eval mode for a scope and gives it back its training flag, also on an exception.
#pragma once

#include "prefdiff/backbone.hpp"

namespace prefdiff::toy::detail {

class EvalMode {
 public:
  explicit EvalMode(Backbone& model) : model_(model), was_training_(model.module().is_training()) { model_.train(false); }
  ~EvalMode() { model_.train(was_training_); }
  EvalMode(const EvalMode&) = delete;
  EvalMode& operator=(const EvalMode&) = delete;

 private:
  Backbone& model_;
  bool was_training_;
};

}  // namespace prefdiff::toy::detail
