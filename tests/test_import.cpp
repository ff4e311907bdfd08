// Models from elsewhere: Hugging Face folders and GGUF files imported as checkpoints, checked
// against an independent writer and forward pass (tests/python/hf_model.py: json + struct +
// numpy write the folder, PyTorch eager runs the Hugging Face layout), and exported back.
#include "torch_catch.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <functional>
#include <vector>

#include "convert/hf_config.h"
#include "convert/hf_export.h"
#include "convert/import_model.h"
#include "convert/rope_rows.h"
#include "core/error.h"
#include "core/files.h"
#include "data/tokenizer.h"
#include "io/gguf.h"
#include "io/gguf_quants.h"
#include "io/safetensors.h"
#include "model/checkpoint.h"
#include "model/llama.h"
#include "python_reference.h"
#include "quantize/gguf_export.h"
#include "runtime/llama_session.h"
#include "test_util.h"

using namespace edgedistill;
namespace fs = std::filesystem;

namespace {

// The bound for f32 logits of two implementations of the same model: they differ by
// summation order (~1e-6 relative after two blocks); a wrong q/k row order or RoPE pairing moves
// them by O(1) (the negative control below measures it).
constexpr double kF32LogitRelTol = 1e-4;

const std::vector<int32_t> kTokens = {5,   300, 17, 250, 99, 3, 64,  318,
                                      120, 7,   42, 200, 11, 1, 260, 90};

// Writes a Hugging Face folder with the independent writer.
void write_hf(const fs::path& dir, const std::string& arch, int seed,
              const std::vector<std::string>& options = {}) {
  std::vector<std::string> args = {"write", dir.string(), arch, std::to_string(seed)};
  args.insert(args.end(), options.begin(), options.end());
  test::run_python("hf_model.py", args);
}

// The reference logits [T * vocab] of the folder for kTokens.
std::vector<float> python_logits(const fs::path& dir) {
  return test::hf_reference_logits(dir.string(), kTokens);
}

std::vector<float> torch_logits(model::LlamaModelImpl& net) {
  torch::NoGradGuard no_grad;
  const std::vector<int64_t> ids(kTokens.begin(), kTokens.end());
  const auto logits =
      net.forward(torch::tensor(ids, torch::kInt64).unsqueeze(0)).logits.contiguous();
  return std::vector<float>(logits.data_ptr<float>(), logits.data_ptr<float>() + logits.numel());
}

std::vector<float> runtime_logits(const fs::path& gguf) {
  const runtime::LlamaModel model(gguf);
  runtime::ThreadPool pool(2);
  runtime::LlamaSession session(model, pool, 64, 64);
  const auto n = static_cast<int64_t>(kTokens.size());
  const float* logits = session.forward(kTokens.data(), n, true);
  return std::vector<float>(logits, logits + n * model.hparams().vocab_size);
}

// max |a - b| / max |b|.
double relative_error(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  double diff = 0, scale = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, std::fabs(static_cast<double>(a[i]) - b[i]));
    scale = std::max(scale, std::fabs(static_cast<double>(b[i])));
  }
  return diff / scale;
}

model::LlamaModel load_llama(const fs::path& dir) {
  auto loaded = model::load_model(dir);
  auto net = std::dynamic_pointer_cast<model::LlamaModelImpl>(loaded.module);
  REQUIRE(net != nullptr);
  net->eval();
  return model::LlamaModel(net);
}

fs::path export_f32(const fs::path& checkpoint, const fs::path& out) {
  quant::GgufExportOptions options;
  options.type = io::GgmlType::f32;
  quant::export_llama_gguf(checkpoint, options, out);
  return out;
}

struct Case {
  const char* name;
  const char* arch;
  std::vector<std::string> options;
};

// Every architecture, and every layout feature a wrong reader would get wrong.
const std::vector<Case> kCases = {
    {"llama, untied, f32", "llama", {}},
    {"llama, tied, llama3 rope scaling, bf16", "llama", {"tied=1", "rope=llama3", "dtype=bf16"}},
    {"llama, linear rope scaling, 3 shards, inv_freq buffers",
     "llama",
     {"rope=linear", "factor=2", "shards=3", "inv_freq=1", "kv_heads=4"}},
    {"llama, 1 kv head, f16", "llama", {"heads=2", "kv_heads=1", "dtype=f16", "theta=500"}},
    {"mistral", "mistral", {"layers=3"}},
    {"qwen2 (q/k/v biases), tied, 300 tokens for 320 rows",
     "qwen2",
     {"tied=1", "eps=1e-6", "tokens=300"}},
};

}  // namespace

TEST_CASE("imported Hugging Face models give the independent PyTorch forward's logits") {
  for (const Case& c : kCases) {
    DYNAMIC_SECTION(c.name) {
      test::TempDir dir;
      const fs::path hf = dir.path() / "hf", ckpt = dir.path() / "ckpt";
      write_hf(hf, c.arch, 7, c.options);
      const auto summary = convert::import_model(hf, ckpt);
      CHECK(summary.source_kind == "hf");
      const std::vector<float> expected = python_logits(hf);
      // Far from uniform: a spread of several nats across the vocabulary at every position.
      const auto [lo, hi] = std::minmax_element(expected.begin(), expected.end());
      REQUIRE(*hi - *lo > 10.0f);

      auto net = load_llama(ckpt);
      CHECK(relative_error(torch_logits(*net), expected) < kF32LogitRelTol);
      const fs::path gguf = export_f32(ckpt, dir.path() / "model.gguf");
      CHECK(relative_error(runtime_logits(gguf), expected) < kF32LogitRelTol);

      // Negative control: the q/k rows left in Hugging Face order give other logits.
      torch::NoGradGuard no_grad;
      const auto c_ = net->config();
      const auto undo_q = convert::hf_rows_from_interleaved(c_.n_heads, c_.head_dim());
      const auto undo_k = convert::hf_rows_from_interleaved(c_.n_kv_heads, c_.head_dim());
      for (auto& block : *net->blk) {
        auto* b = block->as<model::LlamaBlockImpl>();
        b->attn_q->weight.copy_(b->attn_q->weight.index_select(0, torch::tensor(undo_q)));
        b->attn_k->weight.copy_(b->attn_k->weight.index_select(0, torch::tensor(undo_k)));
      }
      CHECK(relative_error(torch_logits(*net), expected) > 100 * kF32LogitRelTol);
    }
  }
}

TEST_CASE("export --format hf gives a folder that imports back to the same model") {
  for (const Case& c : {kCases[1], kCases[5]}) {
    DYNAMIC_SECTION(c.name) {
      test::TempDir dir;
      const fs::path hf = dir.path() / "hf", ckpt = dir.path() / "ckpt", back = dir.path() / "back",
                     again = dir.path() / "again";
      write_hf(hf, c.arch, 3, c.options);
      convert::import_model(hf, ckpt);
      const auto exported = convert::export_hf(ckpt, back, "", false);
      CHECK(exported.tokenizer_files == "tokenizer.json, tokenizer_config.json");
      // The exported folder is a Hugging Face folder to the independent reader too.
      CHECK(relative_error(python_logits(back), python_logits(hf)) == 0.0);
      convert::import_model(back, again);
      const io::SafetensorsFile a(ckpt / model::kWeightsFileName),
          b(again / model::kWeightsFileName);
      REQUIRE(a.tensors().size() == b.tensors().size());
      for (const auto& view : a.tensors()) {
        const io::TensorView& other = b.at(view.name);
        INFO(view.name);
        REQUIRE(other.shape == view.shape);
        REQUIRE(other.dtype == view.dtype);
        REQUIRE(std::memcmp(other.data, view.data, view.nbytes) == 0);
      }
      CHECK(model::read_model_meta(again).config.llama.rope_scaling.type ==
            model::read_model_meta(ckpt).config.llama.rope_scaling.type);
      CHECK(data::open_tokenizer(again)->hash() == data::open_tokenizer(ckpt)->hash());
      // An existing folder is kept unless forced.
      CHECK_THROWS_AS(convert::export_hf(ckpt, back, "", false), InputError);
    }
  }
}

TEST_CASE("a GGUF file imports with its tensors dequantized and its tokenizer") {
  test::TempDir dir;
  const fs::path hf = dir.path() / "hf", ckpt = dir.path() / "ckpt";
  write_hf(hf, "qwen2", 5, {"rope=llama3"});
  convert::import_model(hf, ckpt);
  for (const io::GgmlType type : {io::GgmlType::f32, io::GgmlType::q8_0, io::GgmlType::q4_1}) {
    DYNAMIC_SECTION(io::ggml_type_traits(type).name) {
      quant::GgufExportOptions options;
      options.type = type;
      const fs::path gguf = dir.path() / str("m-", io::ggml_type_traits(type).name, ".gguf");
      quant::export_llama_gguf(ckpt, options, gguf);
      const fs::path imported = dir.path() / str("from-", io::ggml_type_traits(type).name);
      const auto summary = convert::import_model(gguf, imported);
      CHECK(summary.source_kind == "gguf");
      // Each tensor is the GGUF's, dequantized (the reference: io::dequantize_rows directly).
      const io::GgufReader file(gguf);
      const io::SafetensorsFile weights(imported / model::kWeightsFileName);
      CHECK(weights.tensors().size() + 1 == file.tensors().size());  // + rope_freqs.weight
      for (const io::GgufTensor& tensor : file.tensors()) {
        if (tensor.name == "rope_freqs.weight") continue;
        const io::TensorView& view = weights.at(tensor.name);
        std::vector<float> expected(tensor.elements()), got(tensor.elements());
        io::dequantize_rows(tensor.type, tensor.data, static_cast<int64_t>(tensor.rows()),
                            static_cast<int64_t>(tensor.dims[0]), expected.data());
        REQUIRE(view.dtype == io::Dtype::F32);
        std::memcpy(got.data(), view.data, view.nbytes);
        INFO(tensor.name);
        REQUIRE(got == expected);
      }
      const auto meta = model::read_model_meta(imported);
      CHECK(meta.config.llama.qkv_bias);
      CHECK(meta.config.llama.rope_scaling.type == "divisors");
      // The file's own vocabulary, which tokenizes as the Hugging Face tokenizer did.
      const auto tokenizer = data::open_tokenizer(imported);
      CHECK(tokenizer->hash() == data::open_tokenizer(gguf)->hash());
      for (const char* text : {"In the beginning God created the heaven and the earth.",
                               "  odd   spacing, digits 1234 and ünïcode\n"}) {
        CHECK(tokenizer->encode(text) == data::open_tokenizer(ckpt)->encode(text));
      }
      if (type == io::GgmlType::f32) {
        auto net = load_llama(imported);
        CHECK(relative_error(torch_logits(*net), python_logits(hf)) < kF32LogitRelTol);
      }
    }
  }
}

TEST_CASE("resolve_model_dir imports a source once into the cache") {
  test::TempDir dir;
  const fs::path hf = dir.path() / "SmolThing";
  write_hf(hf, "llama", 9, {});
  const fs::path first = convert::resolve_model_dir(hf, "--teacher", dir.path() / "cache");
  CHECK(first.parent_path() == dir.path() / "cache" / "models");
  CHECK(first.filename().string().rfind("SmolThing-", 0) == 0);
  const auto stamp = fs::last_write_time(first / model::kWeightsFileName);
  CHECK(convert::resolve_model_dir(hf, "--teacher", dir.path() / "cache") == first);
  CHECK(fs::last_write_time(first / model::kWeightsFileName) == stamp);
  // A checkpoint and a run resolve to themselves and their final/.
  CHECK(convert::resolve_model_dir(first, "--model", dir.path() / "cache") == first);
  fs::create_directories(dir.path() / "run");
  fs::rename(first, dir.path() / "run" / "final");
  CHECK(convert::resolve_model_dir(dir.path() / "run", "--model", dir.path() / "cache") ==
        dir.path() / "run" / "final");
  CHECK_THROWS_AS(convert::resolve_model_dir(dir.path() / "nothing", "--model", dir.path()),
                  InputError);
}

namespace {

// The import fails with an InputError whose message holds every fragment, and writes nothing.
void require_refused(const fs::path& hf, const fs::path& out,
                     const std::vector<std::string>& fragments) {
  try {
    convert::import_model(hf, out);
    FAIL("import of " << hf << " did not fail");
  } catch (const InputError& e) {
    const std::string message = e.what();
    INFO(message);
    for (const auto& fragment : fragments) CHECK(message.find(fragment) != std::string::npos);
    CHECK(message.find('\n') == std::string::npos);
  }
  CHECK_FALSE(fs::exists(out));
  for (const auto& entry : fs::directory_iterator(out.parent_path())) {
    CHECK(entry.path().filename().string().find(".tmp.") == std::string::npos);
  }
}

void edit_config(const fs::path& hf, const std::function<void(nlohmann::json&)>& edit) {
  nlohmann::json config = core::read_json_file(hf / "config.json", "config");
  edit(config);
  std::ofstream(hf / "config.json") << config.dump(2);
}

}  // namespace

TEST_CASE("sources edgedistill cannot import are refused with the file and the key") {
  test::TempDir dir;
  const fs::path out = dir.path() / "out";
  auto fresh = [&](const std::string& name, const std::vector<std::string>& options = {}) {
    const fs::path hf = dir.path() / name;
    write_hf(hf, "llama", 1, options);
    return hf;
  };
  SECTION("another architecture") {
    const fs::path hf = fresh("gemma");
    edit_config(hf, [](nlohmann::json& c) { c["architectures"] = {"GemmaForCausalLM"}; });
    require_refused(hf, out, {"config.json", "architectures", "GemmaForCausalLM"});
  }
  SECTION("an unknown rope_scaling type") {
    const fs::path hf = fresh("yarn");
    edit_config(hf, [](nlohmann::json& c) {
      c["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4}};
    });
    require_refused(hf, out, {"config.json", "rope_scaling", "yarn"});
  }
  SECTION("a sliding window") {
    const fs::path hf = fresh("window");
    edit_config(hf, [](nlohmann::json& c) { c["sliding_window"] = 16; });
    require_refused(hf, out, {"config.json", "sliding_window"});
  }
  SECTION("a wrongly typed key") {
    const fs::path hf = fresh("typed");
    edit_config(hf, [](nlohmann::json& c) { c["hidden_size"] = "64"; });
    require_refused(hf, out, {"config.json", "hidden_size", "positive integer"});
  }
  SECTION("a missing shard") {
    const fs::path hf = fresh("sharded", {"shards=2"});
    fs::remove(hf / "model-00002-of-00002.safetensors");
    require_refused(hf, out, {"model.safetensors.index.json", "model-00002-of-00002.safetensors"});
  }
  SECTION("a shape that disagrees with config.json") {
    const fs::path hf = fresh("shape");
    edit_config(hf, [](nlohmann::json& c) { c["intermediate_size"] = 128; });
    require_refused(hf, out, {"model.safetensors", "mlp.gate_proj.weight", "[96,64]", "[128,64]"});
  }
  SECTION("an unsupported dtype") {
    const fs::path hf = fresh("int8");
    // Rewrite one tensor as I8 (the rest as they are) with our own writer: this case tests the
    // importer's dtype check, not the file's layout.
    const io::SafetensorsFile original(hf / "model.safetensors");
    io::SafetensorsWriter writer;
    for (const auto& view : original.tensors()) {
      if (view.name == "model.norm.weight") {
        const std::vector<int8_t> bytes(static_cast<size_t>(view.numel()), 1);
        writer.add(view.name, io::Dtype::I8, view.shape, bytes.data(), bytes.size());
      } else {
        writer.add(view.name, view.dtype, view.shape, view.data, view.nbytes);
      }
    }
    writer.write(hf / "rewritten.safetensors");
    fs::rename(hf / "rewritten.safetensors", hf / "model.safetensors");
    require_refused(hf, out, {"model.safetensors", "model.norm.weight", "I8"});
  }
  SECTION("a tensor the architecture does not have") {
    const fs::path hf = fresh("extra", {"layers=2"});
    edit_config(hf, [](nlohmann::json& c) { c["num_hidden_layers"] = 1; });
    require_refused(hf, out, {"model.safetensors", "model.layers.1."});
  }
  SECTION("a folder without a tokenizer") {
    const fs::path hf = fresh("untokenized");
    fs::remove(hf / "tokenizer.json");
    require_refused(hf, out, {"untokenized", "tokenizer"});
  }
  SECTION("a GGUF file of another architecture") {
    io::GgufWriter writer;
    writer.set("general.architecture", io::GgufValue::string("qwen2"));
    writer.write(dir.path() / "qwen2.gguf");
    require_refused(dir.path() / "qwen2.gguf", out,
                    {"qwen2.gguf", "general.architecture", "qwen2"});
  }
  SECTION("an existing output") {
    const fs::path hf = fresh("fine");
    fs::create_directories(out);
    CHECK_THROWS_WITH(convert::import_model(hf, out), Catch::Contains("--force"));
  }
}
