// edgedistill run: generate text from a GGUF model with the runtime (no LibTorch involved).
#include <chrono>
#include <cstdio>
#include <memory>

#include "cli/command.h"
#include "cli/runtime_model.h"
#include "core/error.h"
#include "core/log.h"
#include "core/threads.h"
#include "core/timing.h"
#include "runtime/llama_session.h"
#include "runtime/sampler.h"

namespace edgedistill::cli {
namespace {

using core::seconds_since;

struct RunOptions {
  std::string model;
  std::string prompt;
  int64_t tokens = 64;
  int threads = 0;
  int64_t context = 0;
  runtime::SamplerOptions sampler{0.8f, 40, 0.95f, 1234};
  bool stats = true;
};

int run_generate(const RunOptions& options) {
  const runtime::LlamaModel model(runtime_model_path(options.model, "--model"));
  runtime::ThreadPool pool(core::resolve_thread_count(options.threads));
  const tok::Vocab& vocab = model.vocab();
  std::vector<int32_t> prompt = vocab.encode(options.prompt);
  if (vocab.add_bos()) prompt.insert(prompt.begin(), vocab.bos_id());
  // Generation needs a first token: BOS, or for families without one (Qwen2) the end-of-text
  // token that separates their documents.
  if (prompt.empty() && (vocab.bos_id() >= 0 || vocab.eos_id() >= 0)) {
    prompt.push_back(vocab.bos_id() >= 0 ? vocab.bos_id() : vocab.eos_id());
  }
  if (prompt.empty()) {
    throw InputError(str(options.model, " has no BOS or EOS token to start from; give a --prompt"));
  }
  const int64_t context =
      options.context > 0 ? options.context
                          : std::min<int64_t>(model.hparams().context_length,
                                              static_cast<int64_t>(prompt.size()) + options.tokens);
  runtime::LlamaSession session(model, pool, context, 64);
  runtime::Sampler sampler(options.sampler);

  std::printf("%s", options.prompt.c_str());
  std::fflush(stdout);
  auto start = std::chrono::steady_clock::now();
  const float* logits = session.forward(prompt.data(), static_cast<int64_t>(prompt.size()));
  const double prefill_s = seconds_since(start);
  start = std::chrono::steady_clock::now();
  int64_t generated = 0;
  const int32_t vocab_size = vocab.size();
  while (generated < options.tokens) {
    const int32_t token = sampler.sample(logits, vocab_size);
    if (token == vocab.eos_id()) break;
    std::printf("%s", vocab.piece(token).c_str());
    std::fflush(stdout);
    ++generated;
    if (generated == options.tokens || session.position() >= session.context()) break;
    logits = session.decode(token);
  }
  const double decode_s = seconds_since(start);
  std::printf("\n");
  std::fflush(stdout);  // the text's last line before the statistics on stderr
  if (options.stats) {
    core::info("run: ", prompt.size(), " prompt tokens at ",
               static_cast<int64_t>(prompt.size() / prefill_s), " tokens/s; ", generated,
               " generated at ", generated > 0 ? static_cast<int64_t>(generated / decode_s) : 0,
               " tokens/s; ", pool.size(), " threads, kernels ", runtime::runtime_kernels().isa);
  }
  return 0;
}

}  // namespace

void add_run_command(CLI::App& app, int& exit_code) {
  auto options = std::make_shared<RunOptions>();
  auto* command =
      app.add_subcommand("run", "Generate text from a GGUF model with edgedistill's runtime");
  command
      ->add_option("-m,--model", options->model,
                   "GGUF file, or a checkpoint, run or Hugging Face folder (exported once to f16 "
                   "in the cache)")
      ->required();
  command->add_option("-p,--prompt", options->prompt, "the text to continue")->required();
  command->add_option("-n,--tokens", options->tokens, "tokens to generate (stops early at EOS)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  command->add_option("--temp", options->sampler.temperature, "sampling temperature; 0: greedy")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  command->add_option("--top-k", options->sampler.top_k, "keep the k most likely tokens; 0: all")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  command->add_option("--top-p", options->sampler.top_p, "nucleus sampling mass; 1: off")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  command->add_option("--seed", options->sampler.seed, "sampling seed")->capture_default_str();
  command->add_option("-t,--threads", options->threads, "CPU threads (default: all cores)")
      ->check(CLI::NonNegativeNumber);
  command
      ->add_option("-c,--ctx", options->context,
                   "context positions (default: prompt + tokens, at most the model's)")
      ->check(CLI::NonNegativeNumber);
  command->callback([options, &exit_code] { exit_code = run_generate(*options); });
}

}  // namespace edgedistill::cli
