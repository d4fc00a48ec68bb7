#pragma once
// Decoding many images on worker threads while handing the results over in input order, for importers.
//   for_each_in_order(n, threads, work, consume): work(i) runs on `threads` workers (any order); consume(i,
//   result) runs on the calling thread for i = 0, 1, 2, ... At most `window` results wait in memory
//   (default 4 per thread), so a million-image import stays bounded. An exception from work or consume
//   stops the workers and is rethrown to the caller.
// decode_images is the plain case: a list of files to DecodeResults (decode errors are values).

#include <condition_variable>
#include <cstddef>
#include <exception>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "image/decode.hpp"

namespace prefdiff::image {

template <class Result>
void for_each_in_order(size_t count, int threads, const std::function<Result(size_t)>& work,
                       const std::function<void(size_t, Result&&)>& consume, size_t window = 0) {
  if (threads < 1) threads = 1;
  if (window == 0) window = 4 * static_cast<size_t>(threads);
  std::mutex mutex;
  std::condition_variable ready, space;
  std::map<size_t, Result> done;  // finished, not yet consumed
  size_t next_claim = 0, next_consume = 0;
  std::exception_ptr failure;
  bool stop = false;

  auto worker = [&] {
    while (true) {
      size_t index;
      {
        std::unique_lock<std::mutex> lock(mutex);
        // Do not run further ahead of the consumer than the window.
        space.wait(lock, [&] { return stop || next_claim >= count || next_claim < next_consume + window; });
        if (stop || next_claim >= count) return;
        index = next_claim++;
      }
      try {
        Result result = work(index);
        std::lock_guard<std::mutex> lock(mutex);
        done.emplace(index, std::move(result));
      } catch (...) {
        std::lock_guard<std::mutex> lock(mutex);
        if (!failure) failure = std::current_exception();
        stop = true;
        space.notify_all();
      }
      ready.notify_one();
    }
  };

  std::vector<std::thread> pool;
  const size_t n_threads = std::min(static_cast<size_t>(threads), count);
  for (size_t t = 0; t < n_threads; ++t) pool.emplace_back(worker);
  try {
    while (next_consume < count) {
      std::optional<Result> item;
      {
        std::unique_lock<std::mutex> lock(mutex);
        ready.wait(lock, [&] { return failure || done.count(next_consume); });
        if (failure) break;
        auto it = done.find(next_consume);
        item.emplace(std::move(it->second));
        done.erase(it);
      }
      consume(next_consume, std::move(*item));
      std::lock_guard<std::mutex> lock(mutex);
      ++next_consume;
      space.notify_all();
    }
  } catch (...) {
    std::lock_guard<std::mutex> lock(mutex);
    if (!failure) failure = std::current_exception();
    stop = true;
    space.notify_all();
  }
  {
    std::lock_guard<std::mutex> lock(mutex);
    stop = true;
    space.notify_all();
  }
  for (std::thread& t : pool) t.join();
  if (failure) std::rethrow_exception(failure);
}

// Decodes every file on `threads` workers; results in input order.
std::vector<DecodeResult> decode_images(const std::vector<std::filesystem::path>& paths, int threads,
                                        const DecodeOptions& options = {});

}  // namespace prefdiff::image
