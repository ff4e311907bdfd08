#include "core/config.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <limits>

#include "core/files.h"

namespace edgedistill::core {

std::string key_path(std::string_view parent, std::string_view key) {
  if (parent.empty()) return std::string(key);
  return str(parent, ".", key);
}

void config_fail(const std::string& at, const std::string& message) {
  throw ConfigError(at.empty() ? message : str(at, ": ", message));
}

size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> previous(b.size() + 1), current(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) previous[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    current[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t substitution = previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      current[j] = std::min({previous[j] + 1, current[j - 1] + 1, substitution});
    }
    std::swap(previous, current);
  }
  return previous[b.size()];
}

std::string nearest_name(std::string_view wrong, const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_distance = std::numeric_limits<size_t>::max();
  for (const auto& candidate : candidates) {
    const size_t d = edit_distance(wrong, candidate);
    if (d < best_distance) {
      best_distance = d;
      best = candidate;
    }
  }
  // Plausible: a few edits, or one name contains the other ("lr" vs "min_lr").
  const size_t allowed = std::max<size_t>(2, wrong.size() / 3);
  if (best.empty()) return best;
  if (best_distance <= allowed) return best;
  for (const auto& candidate : candidates) {
    if (wrong.size() >= 3 && (candidate.find(wrong) != std::string::npos ||
                              wrong.find(candidate) != std::string_view::npos)) {
      return candidate;
    }
  }
  return "";
}

std::string json_kind(const nlohmann::json& value) {
  switch (value.type()) {
    case nlohmann::json::value_t::null:
      return "null";
    case nlohmann::json::value_t::boolean:
      return str("the boolean ", value.dump());
    case nlohmann::json::value_t::number_integer:
    case nlohmann::json::value_t::number_unsigned:
      return str("the integer ", value.dump());
    case nlohmann::json::value_t::number_float:
      return str("the number ", value.dump());
    case nlohmann::json::value_t::string:
      return str("the string ", value.dump());
    case nlohmann::json::value_t::array:
      return "an array";
    case nlohmann::json::value_t::object:
      return "an object";
    default:
      return "a value of unknown kind";
  }
}

void type_fail(const BindContext& at, std::string_view expected, const std::string& found) {
  throw ConfigError(str(at.source, ": key '", at.path, "' expects ", expected, ", found ", found));
}

namespace {

std::string quoted_text(std::string_view text) {
  return str("'", text, "'");
}

template <class Int>
void integer_from_json(const nlohmann::json& j, Int& v, const BindContext& at) {
  if (j.is_number_integer() || j.is_number_unsigned()) {
    if (j.is_number_unsigned() &&
        j.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<Int>::max())) {
      type_fail(at, "an integer in range", json_kind(j));
    }
    const int64_t value = j.get<int64_t>();
    if (value < std::numeric_limits<Int>::min() || value > std::numeric_limits<Int>::max()) {
      type_fail(at, "an integer in range", json_kind(j));
    }
    v = static_cast<Int>(value);
    return;
  }
  // 1e3 is accepted where it is exactly an integer.
  if (j.is_number_float()) {
    const double value = j.get<double>();
    if (std::isfinite(value) && value == std::floor(value) &&
        value >= static_cast<double>(std::numeric_limits<Int>::min()) &&
        value <= static_cast<double>(std::numeric_limits<Int>::max())) {
      v = static_cast<Int>(value);
      return;
    }
  }
  type_fail(at, "an integer", json_kind(j));
}

template <class Int>
void integer_from_text(std::string_view text, Int& v, const BindContext& at) {
  const std::string copy(text);
  errno = 0;
  char* end = nullptr;
  const long long value = std::strtoll(copy.c_str(), &end, 10);
  if (copy.empty() || end != copy.c_str() + copy.size() || errno == ERANGE) {
    // Allow 1e3-style integers through the JSON path.
    double number = 0;
    try {
      Converter<double>::from_text(text, number, at);
    } catch (const ConfigError&) {
      type_fail(at, "an integer", quoted_text(text));
    }
    integer_from_json(nlohmann::json(number), v, at);
    return;
  }
  integer_from_json(nlohmann::json(value), v, at);
}

fs::path resolve_path(const std::string& text, const BindContext& at) {
  if (text.empty()) return fs::path();
  fs::path path(text);
  if (path.is_relative()) path = at.base_dir / path;
  return path.lexically_normal();
}

}  // namespace

void Converter<bool>::from_json(const nlohmann::json& j, bool& v, const BindContext& at) {
  if (!j.is_boolean()) type_fail(at, "a boolean (true or false)", json_kind(j));
  v = j.get<bool>();
}

void Converter<bool>::from_text(std::string_view text, bool& v, const BindContext& at) {
  if (text == "true" || text == "1" || text == "yes" || text == "on") {
    v = true;
  } else if (text == "false" || text == "0" || text == "no" || text == "off") {
    v = false;
  } else {
    type_fail(at, "a boolean (true or false)", quoted_text(text));
  }
}

void Converter<int>::from_json(const nlohmann::json& j, int& v, const BindContext& at) {
  integer_from_json(j, v, at);
}
void Converter<int>::from_text(std::string_view text, int& v, const BindContext& at) {
  integer_from_text(text, v, at);
}
void Converter<int64_t>::from_json(const nlohmann::json& j, int64_t& v, const BindContext& at) {
  integer_from_json(j, v, at);
}
void Converter<int64_t>::from_text(std::string_view text, int64_t& v, const BindContext& at) {
  integer_from_text(text, v, at);
}

void Converter<double>::from_json(const nlohmann::json& j, double& v, const BindContext& at) {
  if (!j.is_number()) type_fail(at, "a number", json_kind(j));
  v = j.get<double>();
}

void Converter<double>::from_text(std::string_view text, double& v, const BindContext& at) {
  const std::string copy(text);
  errno = 0;
  char* end = nullptr;
  const double value = std::strtod(copy.c_str(), &end);
  if (copy.empty() || end != copy.c_str() + copy.size() || errno == ERANGE ||
      !std::isfinite(value)) {
    type_fail(at, "a number", quoted_text(text));
  }
  v = value;
}

void Converter<std::string>::from_json(const nlohmann::json& j, std::string& v,
                                       const BindContext& at) {
  if (!j.is_string()) type_fail(at, "a string", json_kind(j));
  v = j.get<std::string>();
}

void Converter<std::string>::from_text(std::string_view text, std::string& v, const BindContext&) {
  v = std::string(text);
}

void Converter<fs::path>::from_json(const nlohmann::json& j, fs::path& v, const BindContext& at) {
  if (!j.is_string()) type_fail(at, "a path (string)", json_kind(j));
  v = resolve_path(j.get<std::string>(), at);
}

void Converter<fs::path>::from_text(std::string_view text, fs::path& v, const BindContext& at) {
  v = resolve_path(std::string(text), at);
}

nlohmann::json load_included_section(const std::string& file, const BindContext& at,
                                     BindContext& included) {
  const fs::path path = resolve_path(file, at);
  if (path.empty()) type_fail(at, "an object or a path to a JSON file", "an empty string");
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) {
    throw ConfigError(str(at.source, ": key '", at.path, "' names the file '", path.string(),
                          "', which does not exist (relative paths are resolved against ",
                          at.base_dir.string(), ")"));
  }
  included = BindContext{at.path, path.parent_path(), path.string()};
  return read_config_json(path);
}

nlohmann::json read_config_json(const fs::path& file) {
  std::error_code ec;
  if (!fs::exists(file, ec)) {
    throw ConfigError(str("config file '", file.string(), "' does not exist; check the path"));
  }
  try {
    return read_json_file(file, "config file");
  } catch (const FileError& e) {
    throw ConfigError(e.what());
  }
}

void check_choice(const std::string& value, std::initializer_list<const char*> choices,
                  const BindContext& at) {
  std::vector<std::string> names(choices.begin(), choices.end());
  if (std::find(names.begin(), names.end(), value) != names.end()) return;
  std::string listed;
  for (const auto& name : names) listed += (listed.empty() ? "" : ", ") + quoted_text(name);
  std::string message =
      str(at.source, ": key '", at.path, "' must be one of ", listed, ", found '", value, "'");
  const std::string nearest = nearest_name(value, names);
  if (!nearest.empty()) message += str("; did you mean '", nearest, "'?");
  throw ConfigError(message);
}

BindContext JsonBinder::child(const char* name) const {
  BindContext at = at_;
  at.path = key_path(at_.path, name);
  return at;
}

void JsonBinder::choice(const char* name, std::string& value,
                        std::initializer_list<const char*> choices, const char* help) {
  std::string chosen = value;
  field(name, chosen, help);
  check_choice(chosen, choices, child(name));
  value = chosen;
}

namespace {

// "<origin>: unknown config key 'a.b'; did you mean 'a.c'?" (or the valid keys at that level).
[[noreturn]] void unknown_key_fail(const std::string& origin, const std::string& parent,
                                   const std::string& wrong,
                                   const std::vector<std::string>& names) {
  std::string message = str(origin, ": unknown config key '", key_path(parent, wrong), "'");
  const std::string nearest = nearest_name(wrong, names);
  if (!nearest.empty()) {
    message += str("; did you mean '", key_path(parent, nearest), "'?");
  } else {
    std::string valid;
    for (const auto& name : names) valid += (valid.empty() ? "" : ", ") + name;
    message += str("; valid keys here: ", valid);
  }
  throw ConfigError(message);
}

}  // namespace

void JsonBinder::reject_unknown_keys() const {
  for (const auto& item : object_.items()) {
    if (std::find(names_.begin(), names_.end(), item.key()) == names_.end()) {
      unknown_key_fail(at_.source, at_.path, item.key(), names_);
    }
  }
}

void PathSetter::choice(const char* name, std::string& value,
                        std::initializer_list<const char*> choices, const char* help) {
  const bool mine = !found_ && components_[depth_] == name;
  std::string chosen = value;
  field(name, chosen, help);
  if (!mine) return;
  BindContext here = at_;
  here.path = key_path(at_.path, name);
  check_choice(chosen, choices, here);
  value = chosen;
}

void PathSetter::require_found() const {
  if (!found_)
    unknown_key_fail(str("--set ", join_components()), at_.path, components_[depth_], names_);
}

size_t PathSetter::parse_index(const std::string& text, size_t size, const BindContext& at) {
  char* end = nullptr;
  const unsigned long long index = std::strtoull(text.c_str(), &end, 10);
  if (text.empty() || end != text.c_str() + text.size() || index >= size) {
    throw ConfigError(str("--set: '", at.path, "' is a list of ", size,
                          " sections; expected an index from 0 to ", size == 0 ? 0 : size - 1,
                          ", found '", text, "'"));
  }
  return static_cast<size_t>(index);
}

std::string PathSetter::join_components() const {
  std::string joined;
  for (const auto& component : components_) joined += (joined.empty() ? "" : ".") + component;
  return joined;
}

std::pair<std::vector<std::string>, std::string> parse_override(std::string_view assignment) {
  const size_t equals = assignment.find('=');
  if (equals == std::string_view::npos || equals == 0) {
    throw ConfigError(str("--set '", assignment, "': expected key.path=value, e.g. train.lr=1e-3"));
  }
  const std::string_view key = assignment.substr(0, equals);
  std::vector<std::string> components;
  size_t start = 0;
  while (true) {
    const size_t dot = key.find('.', start);
    const std::string_view component = key.substr(start, dot - start);
    if (component.empty()) {
      throw ConfigError(str("--set '", assignment, "': empty component in key path '", key, "'"));
    }
    // "losses[0]" is the same as "losses.0": the form error messages and JSON paths use.
    const size_t bracket = component.find('[');
    if (bracket != std::string_view::npos && bracket > 0 && component.back() == ']') {
      components.emplace_back(component.substr(0, bracket));
      components.emplace_back(component.substr(bracket + 1, component.size() - bracket - 2));
    } else {
      components.emplace_back(component);
    }
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  return {components, std::string(assignment.substr(equals + 1))};
}

void KeyLister::choice(const char* name, std::string& value,
                       std::initializer_list<const char*> choices, const char* help) {
  std::string names;
  std::vector<std::string> alternatives;
  for (const char* choice : choices) {
    names += (names.empty() ? "" : "|") + std::string(choice);
    if (value != choice) alternatives.emplace_back(choice);
  }
  const std::string type = "one of " + names;
  add({key_path(prefix_, name), type, ordered_json(value).dump(), help, condition_});
  choices_seen.emplace_back(name, alternatives);
}

void KeyLister::add(KeyDoc doc) {
  for (const auto& existing : out_) {
    if (existing.path == doc.path) return;
  }
  out_.push_back(std::move(doc));
}

}  // namespace edgedistill::core
