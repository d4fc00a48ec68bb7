// Issue 20: NaN or Inf in the training data surfaced as a non-finite loss with a learning-rate hint. The
// batch check names the tensor, the pair (data set index and pair id) and the command that finds its shard.
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include <c10/util/Half.h>
#include <gtest/gtest.h>

#include "prefdiff/train/batch.hpp"

namespace {

using prefdiff::data::HostTensor;
using prefdiff::data::PairBatch;

template <typename T>
HostTensor tensor(const std::string& name, pd_dtype dtype, size_t rows, size_t per_row) {
  HostTensor t;
  t.name = name;
  t.dtype = dtype;
  t.shape = {static_cast<int64_t>(rows), static_cast<int64_t>(per_row)};
  t.row_bytes = per_row * sizeof(T);
  t.data.resize(rows * t.row_bytes);
  T* v = t.as<T>();
  for (size_t i = 0; i < rows * per_row; ++i) v[i] = static_cast<T>(0.25f * static_cast<float>(i % 7) - 0.5f);
  return t;
}

PairBatch batch_of_three() {
  PairBatch b;
  b.indices = {40, 41, 42};
  b.pair_ids = {9001, 9002, 9003};
  b.tensors.push_back(tensor<float>("latent_w", PD_DTYPE_F32, 3, 16));
  b.tensors.push_back(tensor<c10::Half>("prompt_embeds", PD_DTYPE_F16, 3, 8));
  HostTensor ids;  // integers are never checked
  ids.name = "time_ids";
  ids.dtype = PD_DTYPE_I64;
  ids.shape = {3, 2};
  ids.row_bytes = 2 * sizeof(int64_t);
  ids.data.assign(3 * ids.row_bytes, 0xff);
  b.tensors.push_back(ids);
  return b;
}

std::string error_of(const PairBatch& b) {
  try {
    prefdiff::check_finite(b);
  } catch (const prefdiff::NonFiniteDataError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(BatchChecks, AFiniteBatchPasses) { EXPECT_EQ(error_of(batch_of_three()), ""); }

TEST(BatchChecks, NanInALatentNamesTheTensorThePairAndTheCommand) {
  PairBatch b = batch_of_three();
  b.tensors[0].as<float>()[1 * 16 + 5] = std::numeric_limits<float>::quiet_NaN();  // row 1
  const std::string msg = error_of(b);
  EXPECT_NE(msg.find("'latent_w'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("data set index 41"), std::string::npos) << msg;
  EXPECT_NE(msg.find("pair_id 9002"), std::string::npos) << msg;
  EXPECT_NE(msg.find("prefdiff data validate"), std::string::npos) << msg;
  EXPECT_EQ(msg.find("optim.lr"), std::string::npos) << "a data fault is not a learning-rate problem: " << msg;
}

TEST(BatchChecks, InfInHalfPrecisionEmbeddingsIsFoundInItsRow) {
  PairBatch b = batch_of_three();
  b.tensors[1].as<c10::Half>()[2 * 8 + 7] = c10::Half(std::numeric_limits<float>::infinity());  // row 2, last value
  const std::string msg = error_of(b);
  EXPECT_NE(msg.find("'prompt_embeds'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("data set index 42"), std::string::npos) << msg;
  EXPECT_NE(msg.find("pair_id 9003"), std::string::npos) << msg;
}
