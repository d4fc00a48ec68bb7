// RunDirectory: a fresh folder is never reused, resume is checked against the checkpoint's recipe, the
// folder is locked while in use.
#include <csignal>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>

#include "prefdiff/run/run_directory.hpp"
#include "run_test_util.hpp"

namespace fs = std::filesystem;
using namespace prefdiff::run;
using prefdiff::run::test::names_in;
using prefdiff::run::test::TempDir;
using nlohmann::json;

namespace {

RunInfo info(int batch_size = 4, int steps = 2000) {
  RunInfo i;
  i.recipe = {{"run", {{"name", "exp"}, {"output_dir", "runs"}}},
              {"train", {{"steps", steps}, {"batch_size", batch_size}}},
              {"log", {{"every", 10}}},
              {"objective", json::array({{{"id", "dpo"}, {"beta", 5000}}})}};
  i.recipe_toml = "[train]\nsteps = " + std::to_string(steps) + "\nbatch_size = " + std::to_string(batch_size) + "\n";
  i.overrides = {"train.steps=" + std::to_string(steps), "log.every=10"};
  i.metadata = {{"plugins", {{"dpo", {{"version", "1.0.0"}, {"formula_version", 1}}}}},
                {"source_revision", "abc123"},
                {"command_line", "prefdiff train r.toml"}};
  return i;
}

RunOptions options(const TempDir& tmp, std::string resume = "") {
  RunOptions o;
  o.output_dir = tmp / "runs";
  o.name = "exp";
  o.resume = std::move(resume);
  return o;
}

void save_checkpoint(RunDirectory& run, std::int64_t step) {
  AtomicDirectory dir = run.checkpoints().begin(step, run.checkpoint_meta());
  dir.write_file("trainer_state.json", "{}");
  dir.commit();
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const RunError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a RunError";
  return "";
}

}  // namespace

TEST(RunDirectory, FreshRunWritesRecipeOverridesAndMetadata) {
  TempDir tmp;
  RunDirectory run = RunDirectory::open(options(tmp), info());
  EXPECT_EQ(run.path(), tmp / "runs" / "exp");
  EXPECT_FALSE(run.resuming());
  EXPECT_EQ(run.resume_step(), -1);
  EXPECT_EQ(read_file(run.path() / "recipe.toml"), info().recipe_toml);
  EXPECT_EQ(json::parse(read_file(run.path() / "recipe.json")), info().recipe);
  EXPECT_EQ(read_file(run.path() / "overrides.txt"), "train.steps=2000\nlog.every=10\n");
  json meta = run.metadata();
  EXPECT_EQ(meta["source_revision"], "abc123");
  EXPECT_EQ(meta["plugins"]["dpo"]["formula_version"], 1);
  EXPECT_TRUE(meta["host"].is_string());
  EXPECT_EQ(meta["start_time"].get<std::string>().size(), 25u) << meta["start_time"];  // 2025-01-31T14:03:12+01:00
  EXPECT_EQ(names_in(tmp / "runs"), std::vector<std::string>{"exp"});

  run.update_metadata({{"final_step", 2000}});
  EXPECT_EQ(run.metadata()["final_step"], 2000);
  EXPECT_EQ(run.metadata()["source_revision"], "abc123");
}

TEST(RunDirectory, ExistingFolderIsNeverReusedForAFreshStart) {
  TempDir tmp;
  {
    RunDirectory run = RunDirectory::open(options(tmp), info());
    save_checkpoint(run, 100);
  }
  std::string msg = error_of([&] { RunDirectory::open(options(tmp), info()); });
  EXPECT_NE(msg.find((tmp / "runs" / "exp").string() + "' already exists"), std::string::npos) << msg;
  EXPECT_NE(msg.find("--resume latest"), std::string::npos) << msg;
  EXPECT_NE(msg.find("run.name"), std::string::npos) << msg;
  EXPECT_NE(msg.find("started 20"), std::string::npos) << msg;
}

// Issue 20: a run that failed before its first checkpoint was sent to --resume latest, which answered "start
// without --resume": both messages now say to delete the folder (or pick another name), never to resume.
TEST(RunDirectory, ARunWithoutACheckpointIsNotSentToResume) {
  TempDir tmp;
  { RunDirectory run = RunDirectory::open(options(tmp), info()); }
  const std::string fresh = error_of([&] { RunDirectory::open(options(tmp), info()); });
  EXPECT_NE(fresh.find("holds no complete checkpoint"), std::string::npos) << fresh;
  EXPECT_NE(fresh.find("delete that folder"), std::string::npos) << fresh;
  EXPECT_EQ(fresh.find("--resume"), std::string::npos) << "must not advise resuming: " << fresh;
  try {
    RunDirectory::open(options(tmp, "latest"), info());
    ADD_FAILURE() << "expected a CheckpointError";
  } catch (const CheckpointError& e) {
    const std::string resumed = e.what();
    EXPECT_NE(resumed.find("delete its folder '" + (tmp / "runs" / "exp").string() + "'"), std::string::npos) << resumed;
  }
}

TEST(RunDirectory, ResumeLatestNeedsTheFolderAndACheckpoint) {
  TempDir tmp;
  fs::create_directories(tmp / "runs" / "other-run");
  std::string msg = error_of([&] { RunDirectory::open(options(tmp, "latest"), info()); });
  EXPECT_NE(msg.find((tmp / "runs" / "exp").string() + "' does not exist"), std::string::npos) << msg;
  EXPECT_NE(msg.find("other-run"), std::string::npos) << "lists the runs that exist: " << msg;

  { RunDirectory run = RunDirectory::open(options(tmp), info()); }
  EXPECT_THROW(RunDirectory::open(options(tmp, "latest"), info()), CheckpointError);
}

TEST(RunDirectory, ResumeLatestContinuesAndRecordsTheChange) {
  TempDir tmp;
  {
    RunDirectory run = RunDirectory::open(options(tmp), info());
    save_checkpoint(run, 100);
    save_checkpoint(run, 200);
  }
  // More steps and other logging are fine on resume.
  RunInfo more = info(4, 5000);
  more.recipe["log"]["every"] = 50;
  RunDirectory run = RunDirectory::open(options(tmp, "latest"), more);
  ASSERT_TRUE(run.resuming());
  EXPECT_EQ(run.resume_step(), 200);
  EXPECT_EQ(run.resume_checkpoint()->path, tmp / "runs" / "exp" / "checkpoints" / "step-00000200");
  ASSERT_EQ(run.resume_changes().size(), 2u);
  EXPECT_EQ(run.resume_changes()[0].str(), "log.every: 10 -> 50");
  EXPECT_EQ(run.resume_changes()[1].str(), "train.steps: 2000 -> 5000");

  json meta = run.metadata();
  EXPECT_EQ(meta["source_revision"], "abc123");  // the first start is kept
  ASSERT_EQ(meta["resumes"].size(), 1u);
  EXPECT_EQ(meta["resumes"][0]["step"], 200);
  EXPECT_EQ(meta["resumes"][0]["recipe_changes"].size(), 2u);
  EXPECT_EQ(json::parse(read_file(run.path() / "recipe.json"))["train"]["steps"], 5000);
  EXPECT_EQ(read_file(run.path() / "recipe.toml"), more.recipe_toml);

  // Checkpoints from now on carry the current recipe.
  EXPECT_EQ(run.checkpoint_meta()["recipe"]["train"]["steps"], 5000);
}

TEST(RunDirectory, ResumeUnderADifferentRecipeIsRefusedWithTheKeys) {
  TempDir tmp;
  {
    RunDirectory run = RunDirectory::open(options(tmp), info());
    save_checkpoint(run, 100);
  }
  std::string before = read_file(tmp / "runs" / "exp" / "run.json");
  RunInfo other = info(8);
  other.recipe["objective"][0]["beta"] = 2500;
  std::string msg = error_of([&] { RunDirectory::open(options(tmp, "latest"), other); });
  EXPECT_NE(msg.find("step-00000100' was written under a different recipe"), std::string::npos) << msg;
  EXPECT_NE(msg.find("train.batch_size: 4 -> 8"), std::string::npos) << msg;
  EXPECT_NE(msg.find("objective[0].beta: 5000 -> 2500"), std::string::npos) << msg;
  EXPECT_NE(msg.find("HINT"), std::string::npos) << msg;
  EXPECT_EQ(read_file(tmp / "runs" / "exp" / "run.json"), before) << "a refused resume must change nothing";

  // The list of keys allowed to differ is the caller's.
  RunOptions lenient = options(tmp, "latest");
  lenient.resume_may_differ = {"train.batch_size", "objective[*].beta"};
  RunDirectory run = RunDirectory::open(lenient, other);
  EXPECT_EQ(run.resume_step(), 100);
}

TEST(RunDirectory, ResumeFromAPathIntoANewFolder) {
  TempDir tmp;
  {
    RunDirectory run = RunDirectory::open(options(tmp), info());
    save_checkpoint(run, 300);
  }
  RunOptions o = options(tmp, (tmp / "runs" / "exp" / "checkpoints" / "step-00000300").string());
  o.name = "exp-continued";
  RunInfo i = info(4, 6000);
  i.recipe["run"]["name"] = "exp-continued";
  RunDirectory run = RunDirectory::open(o, i);
  EXPECT_EQ(run.path(), tmp / "runs" / "exp-continued");
  EXPECT_EQ(run.resume_step(), 300);
  json meta = run.metadata();
  EXPECT_EQ(meta["resumed_from"]["step"], 300);
  EXPECT_EQ(meta["resumed_from"]["checkpoint"], (tmp / "runs" / "exp" / "checkpoints" / "step-00000300").string());
  EXPECT_TRUE(fs::exists(run.path() / "recipe.toml"));
}

TEST(RunDirectory, LockedWhileInUse) {
  TempDir tmp;
  {
    RunDirectory first = RunDirectory::open(options(tmp), info());
    save_checkpoint(first, 100);
    std::string msg = error_of([&] { RunDirectory::open(options(tmp, "latest"), info()); });
    EXPECT_NE(msg.find("is in use by another process (pid " + std::to_string(::getpid())), std::string::npos) << msg;
  }
  EXPECT_EQ(RunDirectory::open(options(tmp, "latest"), info()).resume_step(), 100);
}

TEST(RunDirectory, AKilledHolderReleasesTheFolderAndItsTemporariesAreCleaned) {
  TempDir tmp;
  {
    RunDirectory run = RunDirectory::open(options(tmp), info());
    save_checkpoint(run, 100);
  }
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  pid_t child = ::fork();
  if (child == 0) {
    RunDirectory run = RunDirectory::open(options(tmp, "latest"), info());
    AtomicDirectory half = run.checkpoints().begin(200, run.checkpoint_meta());  // killed mid-save
    half.write_file("trainer_state.json", "{}");
    ssize_t n = ::write(fds[1], "1", 1);
    (void)n;
    ::pause();
    ::_exit(0);
  }
  ::close(fds[1]);
  char c;
  ASSERT_EQ(::read(fds[0], &c, 1), 1);
  std::string msg = error_of([&] { RunDirectory::open(options(tmp, "latest"), info()); });
  EXPECT_NE(msg.find("in use by another process (pid " + std::to_string(child)), std::string::npos) << msg;

  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  EXPECT_EQ(names_in(tmp / "runs" / "exp" / "checkpoints").size(), 2u) << "the half-written save is left over";
  RunDirectory run = RunDirectory::open(options(tmp, "latest"), info());
  EXPECT_EQ(run.resume_step(), 100);
  EXPECT_EQ(names_in(run.checkpoints().dir()), std::vector<std::string>{"step-00000100"});
  EXPECT_EQ(run.metadata()["resumes"].size(), 2u);
}

TEST(RunDirectory, RefusesNamesThatAreNotFolderNames) {
  TempDir tmp;
  for (const char* bad : {"", ".", "..", "a/b"}) {
    RunOptions o = options(tmp);
    o.name = bad;
    EXPECT_THROW(RunDirectory::open(o, info()), RunError) << bad;
  }
}

// Issue 20: run.name=".victim.tmp-999999-0" trained, and a later run named "victim" in the same output folder
// deleted that run as its own stale temporary.
TEST(RunDirectory, ANameInTheTemporaryPatternIsRefusedAndSuchAFolderIsNeverDeleted) {
  TempDir tmp;
  RunOptions o = options(tmp);
  o.name = ".victim.tmp-999999-0";
  const std::string msg = error_of([&] { RunDirectory::open(o, info()); });
  EXPECT_NE(msg.find("has '.' at position 1"), std::string::npos) << msg;
  EXPECT_FALSE(fs::exists(tmp / "runs" / o.name));

  // Such a folder made some other way (an older prefdiff, by hand) holds someone's data: a run named
  // "victim" must not take it for a temporary of its own, whatever the pid in its name.
  const pid_t gone = ::fork();  // a pid that certainly has no process any more
  if (gone == 0) ::_exit(0);
  ::waitpid(gone, nullptr, 0);
  for (const std::string& name : {std::string(".victim.tmp-999999-0"), ".victim.tmp-" + std::to_string(gone) + "-0"}) {
    fs::create_directories(tmp / "runs" / name / "checkpoints");
    std::ofstream(tmp / "runs" / name / "run.json") << "{}";
  }
  o.name = "victim";
  { RunDirectory run = RunDirectory::open(o, info()); }
  EXPECT_TRUE(fs::exists(tmp / "runs" / ".victim.tmp-999999-0" / "run.json"));
  EXPECT_TRUE(fs::exists(tmp / "runs" / (".victim.tmp-" + std::to_string(gone) + "-0") / "run.json"));
  EXPECT_TRUE(fs::exists(tmp / "runs" / "victim" / "run.json"));
}

// Issue 20: a 300-character name failed with "File name too long. HINT: check that the folder is writable".
TEST(RunDirectory, ATooLongNameIsRefusedWithItsLength) {
  TempDir tmp;
  RunOptions o = options(tmp);
  o.name = std::string(300, 'r');
  const std::string msg = error_of([&] { RunDirectory::open(o, info()); });
  EXPECT_NE(msg.find("is 300 characters long; at most 128"), std::string::npos) << msg;
  EXPECT_EQ(msg.find("writable"), std::string::npos) << msg;
  EXPECT_FALSE(fs::exists(tmp / "runs"));
}
