// CheckpointStore: names, the completion marker, resolve for --resume (loud when missing), pruning.
#include <csignal>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <thread>

#include "prefdiff/run/checkpoint_store.hpp"
#include "run_test_util.hpp"

namespace fs = std::filesystem;
using namespace prefdiff::run;
using prefdiff::run::test::names_in;
using prefdiff::run::test::TempDir;

namespace {

void save(const CheckpointStore& store, std::int64_t step, nlohmann::json meta = nlohmann::json::object()) {
  AtomicDirectory dir = store.begin(step, std::move(meta));
  dir.write_file("unet/diffusion_pytorch_model.safetensors", std::string(100 + step, 'w'));
  dir.write_file("unet/config.json", "{}");
  dir.write_file("trainer_state.json", "{\"step\": " + std::to_string(step) + "}");
  dir.commit();
}

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const CheckpointError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a CheckpointError";
  return "";
}

}  // namespace

TEST(CheckpointStore, Names) {
  EXPECT_EQ(CheckpointStore::name_for(0), "step-00000000");
  EXPECT_EQ(CheckpointStore::name_for(123), "step-00000123");
  EXPECT_EQ(CheckpointStore::name_for(123456789), "step-123456789");
  EXPECT_THROW(CheckpointStore::name_for(-1), RunError);
}

TEST(CheckpointStore, CommitListLatestResolve) {
  TempDir tmp;
  CheckpointStore store(tmp / "checkpoints");
  EXPECT_TRUE(store.list().empty());
  EXPECT_FALSE(store.latest().has_value());
  for (std::int64_t s : {300, 100, 200}) save(store, s, {{"recipe", {{"train", {{"steps", 1000}}}}}});

  std::vector<CheckpointInfo> all = store.list();
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].step, 100);
  EXPECT_EQ(all[2].step, 300);
  for (const CheckpointInfo& c : all) EXPECT_TRUE(c.complete) << c.problem;
  ASSERT_TRUE(store.latest().has_value());
  EXPECT_EQ(store.latest()->step, 300);

  CheckpointInfo latest = store.resolve("latest");
  EXPECT_EQ(latest.path, tmp / "checkpoints" / "step-00000300");
  EXPECT_EQ(latest.meta()["recipe"]["train"]["steps"], 1000);
  // The marker lists every file with its size, itself excluded.
  const nlohmann::json& files = latest.marker["files"];
  EXPECT_EQ(files.size(), 3u);
  EXPECT_EQ(files["unet/diffusion_pytorch_model.safetensors"], 400);
  EXPECT_FALSE(files.contains(kCheckpointMarker));
  EXPECT_EQ(latest.marker["format"], kCheckpointFormat);

  CheckpointInfo by_path = store.resolve((tmp / "checkpoints" / "step-00000100").string());
  EXPECT_EQ(by_path.step, 100);
}

TEST(CheckpointStore, LatestWithoutAnyCheckpointIsAnErrorNotAFreshStart) {
  TempDir tmp;
  CheckpointStore store(tmp / "checkpoints");
  std::string msg = message_of([&] { store.resolve("latest"); });
  EXPECT_NE(msg.find((tmp / "checkpoints").string()), std::string::npos) << msg;
  EXPECT_NE(msg.find("does not exist"), std::string::npos) << msg;
  EXPECT_NE(msg.find("HINT"), std::string::npos) << msg;

  fs::create_directories(tmp / "checkpoints");
  msg = message_of([&] { store.resolve("latest"); });
  EXPECT_NE(msg.find("folder is empty"), std::string::npos) << msg;
  EXPECT_NE(message_of([&] { store.resolve(""); }).find("latest"), std::string::npos);
}

TEST(CheckpointStore, MissingPathSaysWhatExists) {
  TempDir tmp;
  CheckpointStore store(tmp / "checkpoints");
  save(store, 100);
  save(store, 200);
  std::string wanted = (tmp / "checkpoints" / "step-00000150").string();
  std::string msg = message_of([&] { store.resolve(wanted); });
  EXPECT_NE(msg.find(wanted), std::string::npos) << msg;
  EXPECT_NE(msg.find("step-00000100, step-00000200"), std::string::npos) << msg;
}

TEST(CheckpointStore, FolderWithoutMarkerIsRefused) {
  TempDir tmp;
  CheckpointStore store(tmp / "checkpoints");
  save(store, 100);
  // A folder with a checkpoint's name but no marker: e.g. copied by hand and interrupted.
  fs::path half = tmp / "checkpoints" / "step-00000200";
  fs::create_directories(half / "unet");
  std::ofstream(half / "unet" / "config.json") << "{}";

  std::vector<CheckpointInfo> all = store.list();
  ASSERT_EQ(all.size(), 2u);
  EXPECT_FALSE(all[1].complete);
  EXPECT_NE(all[1].problem.find(kCheckpointMarker), std::string::npos);
  EXPECT_EQ(store.latest()->step, 100);

  std::string msg = message_of([&] { store.resolve(half.string()); });
  EXPECT_NE(msg.find("not a complete checkpoint"), std::string::npos) << msg;
  EXPECT_NE(msg.find(kCheckpointMarker), std::string::npos) << msg;
  EXPECT_NE(msg.find("step-00000100"), std::string::npos) << "should point at the newest complete one: " << msg;

  // "latest" does not quietly fall back to an older checkpoint either.
  msg = message_of([&] { store.resolve("latest"); });
  EXPECT_NE(msg.find("step-00000200' is incomplete"), std::string::npos) << msg;
  EXPECT_NE(msg.find("--resume " + (tmp / "checkpoints" / "step-00000100").string()), std::string::npos) << msg;
}

TEST(CheckpointStore, TruncatedOrMissingFilesAreDetected) {
  TempDir tmp;
  CheckpointStore store(tmp / "checkpoints");
  save(store, 100);
  save(store, 200);
  fs::path weights = tmp / "checkpoints" / "step-00000200" / "unet" / "diffusion_pytorch_model.safetensors";
  fs::resize_file(weights, 10);
  CheckpointInfo info = CheckpointStore::inspect(weights.parent_path().parent_path());
  EXPECT_FALSE(info.complete);
  EXPECT_NE(info.problem.find("unet/diffusion_pytorch_model.safetensors"), std::string::npos) << info.problem;
  EXPECT_NE(info.problem.find("300"), std::string::npos) << info.problem;

  fs::remove(tmp / "checkpoints" / "step-00000100" / "trainer_state.json");
  info = CheckpointStore::inspect(tmp / "checkpoints" / "step-00000100");
  EXPECT_FALSE(info.complete);
  EXPECT_NE(info.problem.find("'trainer_state.json' is missing"), std::string::npos) << info.problem;
}

TEST(CheckpointStore, MarkerFromAnotherStepOrFormatIsRefused) {
  TempDir tmp;
  CheckpointStore store(tmp / "checkpoints");
  save(store, 100);
  fs::rename(tmp / "checkpoints" / "step-00000100", tmp / "checkpoints" / "step-00000900");
  EXPECT_NE(CheckpointStore::inspect(tmp / "checkpoints" / "step-00000900").problem.find("step 900"),
            std::string::npos);
  std::ofstream(tmp / "checkpoints" / "step-00000900" / kCheckpointMarker) << "{\"format\": \"other\"}";
  EXPECT_FALSE(CheckpointStore::inspect(tmp / "checkpoints" / "step-00000900").complete);
  std::ofstream(tmp / "checkpoints" / "step-00000900" / kCheckpointMarker) << "{not json";
  EXPECT_NE(CheckpointStore::inspect(tmp / "checkpoints" / "step-00000900").problem.find("unreadable"),
            std::string::npos);
}

TEST(CheckpointStore, UncommittedCheckpointNeverAppears) {
  TempDir tmp;
  CheckpointStore store(tmp / "checkpoints");
  save(store, 100);
  {
    AtomicDirectory dir = store.begin(200);
    dir.write_file("unet/config.json", "{}");
  }
  EXPECT_EQ(store.list().size(), 1u);
  EXPECT_EQ(store.resolve("latest").step, 100);
  EXPECT_EQ(names_in(tmp / "checkpoints"), std::vector<std::string>{"step-00000100"});
}

TEST(CheckpointStore, SameStepTwiceIsRefused) {
  TempDir tmp;
  CheckpointStore store(tmp / "checkpoints");
  save(store, 100);
  EXPECT_THROW(save(store, 100), RunError);
  EXPECT_TRUE(store.resolve("latest").complete);
}

TEST(CheckpointStore, RunFolderGivenInsteadOfACheckpoint) {
  TempDir tmp;
  CheckpointStore store(tmp / "run" / "checkpoints");
  save(store, 100);
  std::string msg = message_of([&] { store.resolve((tmp / "run").string()); });
  EXPECT_NE(msg.find("is a run folder"), std::string::npos) << msg;
  EXPECT_NE(msg.find("step-00000100"), std::string::npos) << msg;
}

TEST(CheckpointStore, PruneKeepsTheNewestComplete) {
  TempDir tmp;
  CheckpointStore store(tmp / "checkpoints");
  for (std::int64_t s = 100; s <= 500; s += 100) save(store, s);
  fs::create_directories(tmp / "checkpoints" / "step-00000600");  // incomplete and newer: not touched
  fs::create_directories(tmp / "checkpoints" / "step-00000050");  // incomplete and older: removed
  std::vector<fs::path> removed = store.prune(2);
  EXPECT_EQ(removed.size(), 4u);
  EXPECT_EQ(names_in(tmp / "checkpoints"),
            (std::vector<std::string>{"step-00000400", "step-00000500", "step-00000600"}));
  EXPECT_TRUE(store.prune(2).empty());
  EXPECT_TRUE(store.prune(5).empty());
  EXPECT_THROW(store.prune(0), RunError);
}

TEST(CheckpointStore, SigkillDuringSaveAndPruneLeavesOnlyCompleteCheckpoints) {
  TempDir tmp;
  CheckpointStore store(tmp / "checkpoints");
  for (int round = 0; round < 4; ++round) {
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    std::int64_t first = (round + 1) * 1000000;
    pid_t child = ::fork();
    if (child == 0) {
      ::close(fds[0]);
      for (std::int64_t step = first;; ++step) {
        AtomicDirectory dir = store.begin(step);
        dir.write_file("unet/diffusion_pytorch_model.safetensors", std::string(200000, 'w'));
        dir.write_file("optimizer.bin", std::string(100000, 'o'));
        dir.commit();
        store.prune(2);
        if (step == first) {
          ssize_t n = ::write(fds[1], "1", 1);
          (void)n;
        }
      }
    }
    ::close(fds[1]);
    char c;
    ASSERT_EQ(::read(fds[0], &c, 1), 1);
    ::close(fds[0]);
    std::this_thread::sleep_for(std::chrono::milliseconds(5 + 10 * round));
    ::kill(child, SIGKILL);
    ::waitpid(child, nullptr, 0);

    std::vector<CheckpointInfo> all = store.list();
    ASSERT_FALSE(all.empty());
    for (const CheckpointInfo& ckpt : all) EXPECT_TRUE(ckpt.complete) << ckpt.path << ": " << ckpt.problem;
    EXPECT_GE(store.resolve("latest").step, first);
    // A run cleans its checkpoints under the run folder's lock (RunDirectory), where every temporary is
    // stale; without it a kill between a temporary's mkdir and its owner marker would leave an unprovable one.
    remove_stale_temporaries(store.dir(), /*folder_is_locked=*/true);
    for (const std::string& name : names_in(store.dir())) EXPECT_EQ(name.rfind("step-", 0), 0u) << name;
  }
}
