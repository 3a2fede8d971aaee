// A small JSON reader/writer (RFC 8259) for the files gridlock exchanges
// with the Hugging Face ecosystem: config.json, tokenizer.json, the
// safetensors header, model.safetensors.index.json, metrics.
//
// Objects keep their key order (so what we write diffs cleanly) and lookup
// is linear: fine for configs and headers; iterate items() for big maps.
// Integer literals (no fraction or exponent) that fit int64 are kept exact.
// Parse errors name the source, line and column; lookups of a missing key
// or a wrong type name the key path ("config.json: key 'hidden_size' ...").
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace gl {

class Json {
 public:
  enum class Type : uint8_t { NUL, BOOL, INT, DOUBLE, STRING, ARRAY, OBJECT };
  using Items = std::vector<std::pair<std::string, Json>>;

  Json() = default;  // null
  Json(std::nullptr_t) {}
  Json(bool b) : type_(Type::BOOL), int_(b) {}
  Json(int v) : type_(Type::INT), int_(v) {}
  Json(int64_t v) : type_(Type::INT), int_(v) {}
  Json(uint64_t v) : type_(Type::INT), int_(int64_t(v)) {}
  Json(double v) : type_(Type::DOUBLE), double_(v) {}
  Json(const char* s) : type_(Type::STRING), string_(s) {}
  Json(std::string s) : type_(Type::STRING), string_(std::move(s)) {}
  static Json array() { Json j; j.type_ = Type::ARRAY; return j; }
  static Json object() { Json j; j.type_ = Type::OBJECT; return j; }

  // `source` names the text in error messages (usually a file path).
  static Json parse(std::string_view text, const std::string& source = "<json>");
  static Json parse_file(const std::string& path);
  std::string dump(int indent = -1) const;  // indent < 0: compact

  Type type() const { return type_; }
  const char* type_name() const;
  bool is_null() const { return type_ == Type::NUL; }
  bool is_bool() const { return type_ == Type::BOOL; }
  bool is_int() const { return type_ == Type::INT; }
  bool is_number() const { return type_ == Type::INT || type_ == Type::DOUBLE; }
  bool is_string() const { return type_ == Type::STRING; }
  bool is_array() const { return type_ == Type::ARRAY; }
  bool is_object() const { return type_ == Type::OBJECT; }

  // Typed access; each throws naming `what` (a key path) on a type mismatch.
  bool as_bool(const std::string& what = "value") const;
  int64_t as_int(const std::string& what = "value") const;  // exact integers only
  double as_double(const std::string& what = "value") const;  // any number
  const std::string& as_string(const std::string& what = "value") const;
  const std::vector<Json>& as_array(const std::string& what = "value") const;
  const Items& items(const std::string& what = "value") const;  // object entries in order

  size_t size() const;  // array or object length
  const Json* find(const std::string& key) const;  // nullptr if absent (or not an object)
  bool contains(const std::string& key) const { return find(key) != nullptr; }
  // Throws "<what>: missing key 'key'" if absent.
  const Json& at(const std::string& key, const std::string& what = "object") const;
  const Json& operator[](size_t i) const;

  void push_back(Json v);               // arrays
  Json& set(const std::string& key, Json v);  // objects: replace or append

 private:
  Type type_ = Type::NUL;
  int64_t int_ = 0;
  double double_ = 0;
  std::string string_;
  std::vector<Json> array_;
  Items object_;
  void dump_to(std::string& out, int indent, int depth) const;
};

}  // namespace gl
