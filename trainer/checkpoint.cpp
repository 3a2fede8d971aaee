// Training checkpoints; see checkpoint.h for the layout and the atomicity argument.
#include "trainer/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "core/json.h"
#include "core/safetensors.h"

namespace fs = std::filesystem;

namespace gl {

namespace {

constexpr const char* kPrefix = "step-";

// Flushes a file (or directory) to stable storage, so that the rename that
// publishes a checkpoint never points at data still in the page cache.
void fsync_path(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  GL_CHECK(fd >= 0, "checkpoint: cannot open ", path, " to sync it");
  const int rc = ::fsync(fd);
  ::close(fd);
  GL_CHECK(rc == 0, "checkpoint: fsync of ", path, " failed");
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  GL_CHECK(f.good(), "checkpoint: cannot write ", path);
  f << text;
  f.close();
  GL_CHECK(f.good(), "checkpoint: error writing ", path);
}

// step-XXXXXXXX -> step, or -1 for any other name.
int64_t step_of(const std::string& name) {
  if (name.rfind(kPrefix, 0) != 0 || name.size() == 5) return -1;
  int64_t s = 0;
  for (size_t i = 5; i < name.size(); ++i) {
    if (name[i] < '0' || name[i] > '9') return -1;
    s = s * 10 + (name[i] - '0');
  }
  return s;
}

// Removes a checkpoint directory without a window where it is half gone:
// rename (atomic) to a .tmp-* name, then delete.
void retire(const fs::path& dir, const fs::path& doomed) {
  std::error_code ec;
  fs::remove_all(doomed, ec);
  fs::rename(dir, doomed, ec);
  GL_CHECK(!ec, "checkpoint: cannot rename ", dir.string(), " to ", doomed.string(), ": ", ec.message());
  fs::remove_all(doomed);
}

int64_t json_int(const Json& j, const char* key, const std::string& file) {
  return j.at(key, file).as_int(file + ": " + key);
}

}  // namespace

std::string checkpoint_dir_name(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%s%08lld", kPrefix, (long long)step);
  return buf;
}

std::vector<std::string> list_checkpoints(const std::string& run_dir) {
  std::vector<std::pair<int64_t, std::string>> found;
  const fs::path root = fs::path(run_dir) / "checkpoints";
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return {};
  for (const auto& e : fs::directory_iterator(root)) {
    const int64_t s = step_of(e.path().filename().string());
    // trainer_state.json is written last inside the temporary directory, but
    // the rename makes the whole directory appear at once; checking for it
    // still guards against a directory someone assembled by hand.
    if (s >= 0 && fs::exists(e.path() / "trainer_state.json")) found.emplace_back(s, e.path().string());
  }
  std::sort(found.begin(), found.end());
  std::vector<std::string> out;
  for (auto& f : found) out.push_back(f.second);
  return out;
}

std::optional<std::string> latest_checkpoint(const std::string& run_dir) {
  const std::vector<std::string> all = list_checkpoints(run_dir);
  if (all.empty()) return std::nullopt;
  return all.back();
}

namespace {

std::string write_checkpoint(const fs::path& root, const std::string& run_dir, const LanguageModel& model,
                             const NamedTensors& optimizer_state, const TrainerState& state,
                             const std::string& recipe_yaml, int64_t keep_last, const std::string& tokenizer_json,
                             const std::function<void(const char*, const std::string&)>& fault) {
  if (fault) fault("begin", root.string());
  fs::create_directories(root);
  // Leftovers of a save that crashed: never complete, safe to remove.
  for (const auto& e : fs::directory_iterator(root))
    if (e.path().filename().string().rfind(".tmp-", 0) == 0) fs::remove_all(e.path());

  const std::string name = checkpoint_dir_name(state.step);
  const fs::path tmp = root / (".tmp-" + name + "-" + std::to_string(::getpid()));
  const fs::path dst = root / name;
  fs::create_directories(tmp);
  save_hf_model(model, tmp.string());
  if (fault) fault("midway", (tmp / "optimizer.safetensors").string());
  save_safetensors((tmp / "optimizer.safetensors").string(), optimizer_state,
                   {{"format", "gridlock-optimizer-state"}});
  write_text((tmp / "recipe.resolved.yaml").string(), recipe_yaml);
  if (!tokenizer_json.empty()) fs::copy_file(tokenizer_json, tmp / "tokenizer.json");
  Json j = Json::object();
  j.set("format", "gridlock-trainer-state");
  j.set("version", 1);
  j.set("step", state.step);
  j.set("tokens", state.tokens);
  j.set("global_batch", state.global_batch);
  j.set("world_size", state.world_size);
  j.set("seed", state.seed);
  j.set("skipped_steps", state.skipped_steps);
  j.set("elapsed_s", state.elapsed_s);
  j.set("lr_scale", state.lr_scale);
  j.set("rollbacks", state.rollbacks);
  Json recent = Json::array();
  for (double x : state.recent_losses) recent.push_back(x);  // %.17g: round-trips exactly
  j.set("recent_losses", recent);
  if (state.loss_scale.scale > 0) {
    j.set("loss_scale", state.loss_scale.scale);
    j.set("loss_scale_good_steps", state.loss_scale.good_steps);
  }
  j.set("rng", "philox keyed by (seed, step): no state beyond the step");
  write_text((tmp / "trainer_state.json").string(), j.dump(2) + "\n");
  for (const auto& e : fs::directory_iterator(tmp)) fsync_path(e.path().string());
  fsync_path(tmp.string());

  std::error_code ec;
  // Saving the same step twice (e.g. a resumed run that stops where it
  // started) replaces the old copy; it holds the same bytes. The old copy
  // is renamed away before it is deleted (as are checkpoints beyond
  // keep_last): a kill during a recursive delete would otherwise leave a
  // half-deleted step-* directory that still looks complete. A .tmp-*
  // name is never listed and the next save removes it.
  if (fs::exists(dst)) retire(dst, root / (".tmp-old-" + name + "-" + std::to_string(::getpid())));
  fs::rename(tmp, dst, ec);
  GL_CHECK(!ec, "checkpoint: cannot rename ", tmp.string(), " to ", dst.string(), ": ", ec.message());
  fsync_path(root.string());

  if (keep_last > 0) {
    const std::vector<std::string> all = list_checkpoints(run_dir);
    for (size_t i = 0; i + size_t(keep_last) < all.size(); ++i)
      retire(all[i], root / (".tmp-del-" + fs::path(all[i]).filename().string() + "-" + std::to_string(::getpid())));
  }
  return dst.string();
}

}  // namespace

std::string save_checkpoint(const std::string& run_dir, const LanguageModel& model,
                            const NamedTensors& optimizer_state, const TrainerState& state,
                            const std::string& recipe_yaml, int64_t keep_last,
                            const std::string& tokenizer_json,
                            const std::function<void(const char*, const std::string&)>& fault) {
  const fs::path root = fs::path(run_dir) / "checkpoints";
  try {
    return write_checkpoint(root, run_dir, model, optimizer_state, state, recipe_yaml, keep_last,
                            tokenizer_json, fault);
  } catch (const std::exception& e) {
    // Never leave a half-written directory behind when we can help it; a
    // crash (no unwinding) leaves it to the next save, which removes it.
    std::error_code ec;
    const fs::path tmp = root / (".tmp-" + checkpoint_dir_name(state.step) + "-" + std::to_string(::getpid()));
    fs::remove_all(tmp, ec);
    std::string what = e.what();
    while (!what.empty() && what.back() == '\n') what.pop_back();
    for (char& c : what)
      if (c == '\n') c = ' ';  // one line
    GL_CHECK(false, "checkpoint: cannot save step ", state.step, " under ", root.string(), ": ", what,
             "; the previous checkpoint is intact: ", latest_checkpoint(run_dir).value_or("(none yet)"));
  }
  return {};
}

CheckpointContents load_checkpoint(const std::string& dir) {
  CheckpointContents c;
  const std::string sfile = (fs::path(dir) / "trainer_state.json").string();
  const Json j = Json::parse_file(sfile);
  GL_CHECK(j.is_object() && j.contains("format") && j.at("format").is_string() &&
               j.at("format").as_string() == "gridlock-trainer-state",
           sfile, ": not a gridlock trainer state (missing \"format\": \"gridlock-trainer-state\")");
  GL_CHECK(json_int(j, "version", sfile) == 1, sfile, ": unsupported version ", json_int(j, "version", sfile));
  c.state.step = json_int(j, "step", sfile);
  c.state.tokens = json_int(j, "tokens", sfile);
  c.state.global_batch = json_int(j, "global_batch", sfile);
  c.state.world_size = json_int(j, "world_size", sfile);
  c.state.seed = json_int(j, "seed", sfile);
  c.state.skipped_steps = json_int(j, "skipped_steps", sfile);
  c.state.elapsed_s = j.at("elapsed_s", sfile).as_double(sfile + ": elapsed_s");
  if (j.contains("lr_scale")) c.state.lr_scale = j.at("lr_scale", sfile).as_double(sfile + ": lr_scale");
  if (j.contains("rollbacks")) c.state.rollbacks = json_int(j, "rollbacks", sfile);
  if (j.contains("recent_losses"))
    for (const Json& x : j.at("recent_losses").as_array(sfile + ": recent_losses"))
      c.state.recent_losses.push_back(x.as_double(sfile + ": recent_losses"));
  if (j.contains("loss_scale")) {
    c.state.loss_scale.scale = j.at("loss_scale", sfile).as_double(sfile + ": loss_scale");
    c.state.loss_scale.good_steps = json_int(j, "loss_scale_good_steps", sfile);
    check_loss_scale(c.state.loss_scale, sfile.c_str());
  }
  GL_CHECK(c.state.lr_scale > 0 && c.state.rollbacks >= 0, sfile, ": lr_scale or rollbacks out of range");
  GL_CHECK(c.state.step >= 0 && c.state.global_batch > 0 && c.state.world_size > 0, sfile,
           ": step, global_batch or world_size out of range");

  const std::string ofile = (fs::path(dir) / "optimizer.safetensors").string();
  const SafetensorsFile f = SafetensorsFile::open(ofile);
  for (const SafetensorsEntry& e : f.entries()) c.optimizer_state.emplace_back(e.name, f.load(e.name));
  return c;
}

}  // namespace gl
