// Config binding: each knob is declared once, and the JSON file reader, the `--set key=value`
// command-line overrides, the printer (`edgedistill config`) and the key reference
// (`edgedistill config --keys`, docs/config.md) all come from that one declaration.
//
// A config is a struct with default member values and a `visit` template:
//
//   struct ScheduleConfig {
//     double lr = 3e-4;
//     std::string kind = "cosine";
//     template <class V> void visit(V& v) {
//       v.field("lr", lr, "peak learning rate");
//       v.choice("kind", kind, {"cosine", "constant"}, "learning-rate schedule");
//     }
//     void validate(const std::string& at) const;  // optional: checks across keys
//   };
//
// Field types: bool, int, int64_t, double, std::string, std::filesystem::path, nested config
// structs, and std::vector of any of these. `visit` may branch on a field declared before (e.g.
// only declare the "mlp" section when arch == "mlp"); binding assigns in declaration order, so the
// branch sees the new value.
//
// Precedence: defaults < config file < --set, applied in that order. Rules:
// - An unknown key is an error naming the key path and the nearest valid key.
// - A value of the wrong type is an error naming the key path and the expected type.
// - A string where a nested config is expected is a path to a JSON file holding that section,
//   relative to the file that names it (or to the working directory for --set).
// - Relative paths (std::filesystem::path fields) are resolved against the same directory, and
//   kept absolute, so a saved config.json means the same thing wherever it is read.
#pragma once

#include <cstdint>
#include <filesystem>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace edgedistill::core {

namespace fs = std::filesystem;
using ordered_json = nlohmann::ordered_json;

// ---------------------------------------------------------------------------------------------
// Detection of config structs.

template <class T, class = void>
struct is_config : std::false_type {};

// Probes `visit` with a visitor that accepts anything.
struct ProbeVisitor {
  template <class F>
  void field(const char*, F&, const char*) {}
  void choice(const char*, std::string&, std::initializer_list<const char*>, const char*) {}
};

template <class T>
struct is_config<T, std::void_t<decltype(std::declval<T&>().visit(std::declval<ProbeVisitor&>()))>>
    : std::true_type {};

template <class T, class = void>
struct has_validate : std::false_type {};
template <class T>
struct has_validate<
    T, std::void_t<decltype(std::declval<const T&>().validate(std::declval<const std::string&>()))>>
    : std::true_type {};

// A list of config sections (std::vector<Config>).
template <class T>
struct is_config_vector : std::false_type {};
template <class T>
struct is_config_vector<std::vector<T>> : is_config<T> {};

// Joins a key path: key_path("train", "lr") == "train.lr"; key_path("", "lr") == "lr".
std::string key_path(std::string_view parent, std::string_view key);

// Throws ConfigError("<at>: <message>"); for validate() implementations.
[[noreturn]] void config_fail(const std::string& at, const std::string& message);

// Edit distance, for "did you mean" suggestions.
size_t edit_distance(std::string_view a, std::string_view b);
// The candidate nearest to `wrong`, or empty when none is plausibly meant.
std::string nearest_name(std::string_view wrong, const std::vector<std::string>& candidates);

// Where a value came from: for messages and for resolving relative paths.
struct BindContext {
  std::string path;    // key path, e.g. "train.lr"
  fs::path base_dir;   // absolute directory relative paths are resolved against
  std::string source;  // "configs/x.json" or "--set"
};

// ---------------------------------------------------------------------------------------------
// Per-type conversion: JSON <-> value, command-line text -> value, type name.

std::string json_kind(const nlohmann::json& value);  // "a string \"x\"", "the number 3", ...
[[noreturn]] void type_fail(const BindContext& at, std::string_view expected,
                            const std::string& found);

template <class T, class = void>
struct Converter;

template <>
struct Converter<bool> {
  static std::string type_name() { return "boolean"; }
  static ordered_json to_json(bool v) { return v; }
  static void from_json(const nlohmann::json& j, bool& v, const BindContext& at);
  static void from_text(std::string_view text, bool& v, const BindContext& at);
};

template <>
struct Converter<int> {
  static std::string type_name() { return "integer"; }
  static ordered_json to_json(int v) { return v; }
  static void from_json(const nlohmann::json& j, int& v, const BindContext& at);
  static void from_text(std::string_view text, int& v, const BindContext& at);
};

template <>
struct Converter<int64_t> {
  static std::string type_name() { return "integer"; }
  static ordered_json to_json(int64_t v) { return v; }
  static void from_json(const nlohmann::json& j, int64_t& v, const BindContext& at);
  static void from_text(std::string_view text, int64_t& v, const BindContext& at);
};

template <>
struct Converter<double> {
  static std::string type_name() { return "number"; }
  static ordered_json to_json(double v) { return v; }
  static void from_json(const nlohmann::json& j, double& v, const BindContext& at);
  static void from_text(std::string_view text, double& v, const BindContext& at);
};

template <>
struct Converter<std::string> {
  static std::string type_name() { return "string"; }
  static ordered_json to_json(const std::string& v) { return v; }
  static void from_json(const nlohmann::json& j, std::string& v, const BindContext& at);
  static void from_text(std::string_view text, std::string& v, const BindContext& at);
};

template <>
struct Converter<fs::path> {
  static std::string type_name() { return "path"; }
  static ordered_json to_json(const fs::path& v) { return v.string(); }
  static void from_json(const nlohmann::json& j, fs::path& v, const BindContext& at);
  static void from_text(std::string_view text, fs::path& v, const BindContext& at);
};

template <class Config>
void bind_json(const nlohmann::json& j, Config& config, const BindContext& at);
template <class Config>
ordered_json to_json(const Config& config);

// A nested config section: an object, or a string naming a JSON file that holds it.
template <class Config>
struct Converter<Config, std::enable_if_t<is_config<Config>::value>> {
  static std::string type_name() { return "object"; }
  static ordered_json to_json(const Config& v) { return core::to_json(v); }
  static void from_json(const nlohmann::json& j, Config& v, const BindContext& at);
  static void from_text(std::string_view text, Config& v, const BindContext& at);
};

// Loads the JSON file a string-valued section names. Returns the JSON and its context.
nlohmann::json load_included_section(const std::string& file, const BindContext& at,
                                     BindContext& included);

template <class Config>
void Converter<Config, std::enable_if_t<is_config<Config>::value>>::from_json(
    const nlohmann::json& j, Config& v, const BindContext& at) {
  if (j.is_string()) {
    BindContext included;
    const nlohmann::json section = load_included_section(j.get<std::string>(), at, included);
    bind_json(section, v, included);
    return;
  }
  if (!j.is_object()) type_fail(at, "an object (or a path to a JSON file)", json_kind(j));
  bind_json(j, v, at);
}

template <class Config>
void Converter<Config, std::enable_if_t<is_config<Config>::value>>::from_text(
    std::string_view text, Config& v, const BindContext& at) {
  const size_t first = text.find_first_not_of(" \t");
  if (first != std::string_view::npos && text[first] == '{') {
    nlohmann::json parsed;
    try {
      parsed = nlohmann::json::parse(text);
    } catch (const nlohmann::json::parse_error& e) {
      throw ConfigError(str(at.source, ": ", at.path, ": the value is not valid JSON: ", e.what()));
    }
    from_json(parsed, v, at);
    return;
  }
  from_json(nlohmann::json(std::string(text)), v, at);
}

template <class T>
struct Converter<std::vector<T>> {
  static std::string type_name() { return "array of " + Converter<T>::type_name(); }
  static ordered_json to_json(const std::vector<T>& v) {
    ordered_json out = ordered_json::array();
    for (const auto& item : v) out.push_back(Converter<T>::to_json(item));
    return out;
  }
  static void from_json(const nlohmann::json& j, std::vector<T>& v, const BindContext& at) {
    if (!j.is_array()) type_fail(at, type_name(), json_kind(j));
    std::vector<T> items(j.size());
    for (size_t i = 0; i < j.size(); ++i) {
      BindContext element = at;
      element.path = str(at.path, "[", i, "]");
      Converter<T>::from_json(j[i], items[i], element);
    }
    v = std::move(items);
  }
  // "[...]" is parsed as JSON; otherwise a comma-separated list: --set model.hidden=1200,1200.
  static void from_text(std::string_view text, std::vector<T>& v, const BindContext& at) {
    const size_t first = text.find_first_not_of(" \t");
    if (first != std::string_view::npos && text[first] == '[') {
      nlohmann::json parsed;
      try {
        parsed = nlohmann::json::parse(text);
      } catch (const nlohmann::json::parse_error& e) {
        throw ConfigError(
            str(at.source, ": ", at.path, ": the value is not a valid JSON array: ", e.what()));
      }
      from_json(parsed, v, at);
      return;
    }
    std::vector<T> items;
    if (first != std::string_view::npos) {
      size_t start = 0;
      while (true) {
        const size_t comma = text.find(',', start);
        BindContext element = at;
        element.path = str(at.path, "[", items.size(), "]");
        items.emplace_back();
        Converter<T>::from_text(text.substr(start, comma - start), items.back(), element);
        if (comma == std::string_view::npos) break;
        start = comma + 1;
      }
    }
    v = std::move(items);
  }
};

// ---------------------------------------------------------------------------------------------
// Visitors.

// Writes a config as ordered JSON (declaration order).
class JsonWriter {
 public:
  template <class T>
  void field(const char* name, T& value, const char* /*help*/) {
    out[name] = Converter<std::decay_t<T>>::to_json(value);
  }
  void choice(const char* name, std::string& value, std::initializer_list<const char*>,
              const char*) {
    out[name] = value;
  }
  ordered_json out = ordered_json::object();
};

template <class Config>
ordered_json to_json(const Config& config) {
  JsonWriter writer;
  const_cast<Config&>(config).visit(writer);  // JsonWriter never modifies the visited fields
  return writer.out;
}

// Assigns the keys present in a JSON object and reports keys no field claimed.
class JsonBinder {
 public:
  JsonBinder(const nlohmann::json& object, const BindContext& at) : object_(object), at_(at) {}

  template <class T>
  void field(const char* name, T& value, const char* /*help*/) {
    names_.emplace_back(name);
    const auto it = object_.find(name);
    if (it == object_.end()) return;
    Converter<std::decay_t<T>>::from_json(*it, value, child(name));
  }
  void choice(const char* name, std::string& value, std::initializer_list<const char*> choices,
              const char* help);
  // Throws for the first key in the object that no field declared.
  void reject_unknown_keys() const;

 private:
  BindContext child(const char* name) const;

  const nlohmann::json& object_;
  BindContext at_;
  std::vector<std::string> names_;
};

template <class Config>
void bind_json(const nlohmann::json& j, Config& config, const BindContext& at) {
  if (!j.is_object()) type_fail(at, "an object", json_kind(j));
  JsonBinder binder(j, at);
  config.visit(binder);
  binder.reject_unknown_keys();
}

// Checks a choice value; the error lists the choices and the nearest one.
void check_choice(const std::string& value, std::initializer_list<const char*> choices,
                  const BindContext& at);

// Applies one `key.path=value` override. Walks the declared fields component by component; a
// numeric component indexes a vector of sections (data.sources.0.kind=text).
class PathSetter {
 public:
  PathSetter(std::vector<std::string> components, size_t depth, std::string_view text,
             const BindContext& at)
      : components_(std::move(components)), depth_(depth), text_(text), at_(at) {}

  template <class T>
  void field(const char* name, T& value, const char* /*help*/) {
    names_.emplace_back(name);
    if (found_ || components_[depth_] != name) return;
    found_ = true;
    BindContext here = at_;
    here.path = key_path(at_.path, name);
    descend(value, here);
  }
  void choice(const char* name, std::string& value, std::initializer_list<const char*> choices,
              const char* help);
  // Throws when no field matched the current component.
  void require_found() const;

 private:
  template <class T>
  void descend(T& value, const BindContext& here) {
    using V = std::decay_t<T>;
    const bool last = depth_ + 1 == components_.size();
    if (last) {
      Converter<V>::from_text(text_, value, here);
    } else if constexpr (is_config<V>::value) {
      PathSetter inner(components_, depth_ + 1, text_, here);
      value.visit(inner);
      inner.require_found();
    } else if constexpr (is_config_vector<V>::value) {
      const std::string& index_text = components_[depth_ + 1];
      const size_t index = parse_index(index_text, value.size(), here);
      BindContext element = here;
      element.path = str(here.path, ".", index);
      if (depth_ + 2 == components_.size()) {
        Converter<typename V::value_type>::from_text(text_, value[index], element);
      } else {
        PathSetter inner(components_, depth_ + 2, text_, element);
        value[index].visit(inner);
        inner.require_found();
      }
    } else {
      throw ConfigError(str("--set ", join_components(), ": '", here.path, "' is a ",
                            Converter<V>::type_name(), " and has no sub-keys"));
    }
  }
  static size_t parse_index(const std::string& text, size_t size, const BindContext& at);
  std::string join_components() const;

  std::vector<std::string> components_;
  size_t depth_;
  std::string_view text_;
  BindContext at_;
  std::vector<std::string> names_;
  bool found_ = false;
};

// Parses "a.b.c=value" into components and value text; errors name the argument.
std::pair<std::vector<std::string>, std::string> parse_override(std::string_view assignment);

template <class Config>
void apply_override(Config& config, std::string_view assignment) {
  auto [components, text] = parse_override(assignment);
  BindContext at{"", fs::current_path(), "--set"};
  PathSetter setter(components, 0, text, at);
  config.visit(setter);
  setter.require_found();
}

// Runs every validate(at) in the tree, outermost first.
class Validator {
 public:
  explicit Validator(std::string at) : at_(std::move(at)) {}
  template <class T>
  void field(const char* name, T& value, const char* /*help*/) {
    using V = std::decay_t<T>;
    if constexpr (is_config<V>::value) {
      validate_config(value, key_path(at_, name));
    } else if constexpr (is_config_vector<V>::value) {
      for (size_t i = 0; i < value.size(); ++i) {
        validate_config(value[i], str(key_path(at_, name), "[", i, "]"));
      }
    }
  }
  void choice(const char*, std::string&, std::initializer_list<const char*>, const char*) {}

  template <class Config>
  static void validate_config(Config& config, const std::string& at) {
    if constexpr (has_validate<Config>::value) config.validate(at);
    Validator inner(at);
    config.visit(inner);
  }

 private:
  std::string at_;
};

// Reads a config file (JSON), with errors naming the file.
nlohmann::json read_config_json(const fs::path& file);

// Defaults < file < overrides, then validation. `file` may be empty (defaults only).
template <class Config>
Config load_config(const fs::path& file, const std::vector<std::string>& overrides) {
  Config config{};
  if (!file.empty()) {
    const fs::path absolute = fs::absolute(file);
    BindContext at{"", absolute.parent_path(), file.string()};
    bind_json(read_config_json(file), config, at);
  }
  for (const auto& assignment : overrides) apply_override(config, assignment);
  Validator::validate_config(config, "");
  return config;
}

// Rebinds a config saved by to_json (a run's config.json) and validates it.
template <class Config>
Config config_from_saved_json(const nlohmann::json& saved, const fs::path& file) {
  Config config{};
  bind_json(saved, config, BindContext{"", fs::absolute(file).parent_path(), file.string()});
  Validator::validate_config(config, "");
  return config;
}

// ---------------------------------------------------------------------------------------------
// Key reference.

struct KeyDoc {
  std::string path;           // "train.lr", "data.sources[].kind"
  std::string type;           // "number", "one of cosine|constant", ...
  std::string default_value;  // JSON text
  std::string help;
  std::string condition;  // "" or "when model.arch = mlp"
};

// Lists every key of a config, including the sections that only exist for other values of a
// choice (e.g. the keys of model.mlp when model.arch is "llama").
class KeyLister {
 public:
  KeyLister(std::string prefix, std::string condition, std::vector<KeyDoc>& out)
      : prefix_(std::move(prefix)), condition_(std::move(condition)), out_(out) {}

  template <class T>
  void field(const char* name, T& value, const char* help) {
    using V = std::decay_t<T>;
    const std::string path = key_path(prefix_, name);
    if constexpr (is_config<V>::value) {
      list_config(value, path, condition_, out_);
    } else if constexpr (is_config_vector<V>::value) {
      typename V::value_type element{};
      list_config(element, path + "[]", condition_, out_);
    } else {
      add({path, Converter<V>::type_name(), Converter<V>::to_json(value).dump(), help, condition_});
    }
  }
  void choice(const char* name, std::string& value, std::initializer_list<const char*> choices,
              const char* help);

  template <class Config>
  static void list_config(const Config& config, const std::string& prefix,
                          const std::string& condition, std::vector<KeyDoc>& out);

  // The choices seen in the last pass: name -> alternatives.
  std::vector<std::pair<std::string, std::vector<std::string>>> choices_seen;

 private:
  void add(KeyDoc doc);

  std::string prefix_;
  std::string condition_;
  std::vector<KeyDoc>& out_;
};

// Sets one choice field, for listing the keys of its other alternatives.
class ChoiceForcer {
 public:
  ChoiceForcer(std::string name, std::string value)
      : name_(std::move(name)), value_(std::move(value)) {}
  template <class T>
  void field(const char*, T&, const char*) {}
  void choice(const char* name, std::string& value, std::initializer_list<const char*>,
              const char*) {
    if (name_ == name) value = value_;
  }

 private:
  std::string name_, value_;
};

template <class Config>
void KeyLister::list_config(const Config& config, const std::string& prefix,
                            const std::string& condition, std::vector<KeyDoc>& out) {
  Config copy = config;
  KeyLister lister(prefix, condition, out);
  copy.visit(lister);
  // Keys that appear only under another value of a choice at this level.
  for (const auto& [name, alternatives] : lister.choices_seen) {
    for (const auto& alternative : alternatives) {
      Config other = config;
      ChoiceForcer forcer(name, alternative);
      other.visit(forcer);
      KeyLister other_lister(prefix,
                             (condition.empty() ? "" : condition + ", ") +
                                 str("when ", key_path(prefix, name), " = ", alternative),
                             out);
      other.visit(other_lister);
    }
  }
}

template <class Config>
std::vector<KeyDoc> list_keys(const std::string& prefix = "") {
  std::vector<KeyDoc> out;
  KeyLister::list_config(Config{}, prefix, "", out);
  return out;
}

}  // namespace edgedistill::core
