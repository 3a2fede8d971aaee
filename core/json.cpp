#include "core/json.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "core/utf8.h"

namespace gl {

namespace {

constexpr int kMaxDepth = 512;  // deeper nesting is an error, not a stack overflow

class Parser {
 public:
  Parser(std::string_view text, const std::string& source) : s_(text), source_(source) {}

  Json parse_document() {
    skip_ws();
    Json v = parse_value(0);
    skip_ws();
    if (pos_ != s_.size()) fail("unexpected trailing characters");
    return v;
  }

 private:
  std::string_view s_;
  const std::string& source_;
  size_t pos_ = 0;

  [[noreturn]] void fail(const std::string& msg) const {
    size_t line = 1, col = 1;
    for (size_t i = 0; i < pos_ && i < s_.size(); ++i) {
      if (s_[i] == '\n') {
        ++line;
        col = 1;
      } else {
        ++col;
      }
    }
    GL_CHECK(false, source_, ": invalid JSON at line ", line, ", column ", col, ": ", msg);
  }

  void skip_ws() {
    while (pos_ < s_.size() &&
           (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r'))
      ++pos_;
  }

  bool consume(const char* word) {
    const size_t n = std::char_traits<char>::length(word);
    if (s_.substr(pos_, n) != word) return false;
    pos_ += n;
    return true;
  }

  Json parse_value(int depth) {
    if (pos_ >= s_.size()) fail("unexpected end of input");
    const char c = s_[pos_];
    // depth counts the enclosing containers, so a container here is nesting
    // level depth + 1: 512 levels parse, 513 do not.
    if ((c == '{' || c == '[') && depth >= kMaxDepth) fail("nesting deeper than 512 levels");
    if (c == '{') return parse_object(depth);
    if (c == '[') return parse_array(depth);
    if (c == '"') return Json(parse_string());
    if (c == '-' || (c >= '0' && c <= '9')) return parse_number();
    if (consume("true")) return Json(true);
    if (consume("false")) return Json(false);
    if (consume("null")) return Json();
    fail(std::string("unexpected character '") + c + "'");
  }

  Json parse_object(int depth) {
    ++pos_;  // '{'
    Json obj = Json::object();
    skip_ws();
    if (pos_ < s_.size() && s_[pos_] == '}') {
      ++pos_;
      return obj;
    }
    while (true) {
      skip_ws();
      if (pos_ >= s_.size() || s_[pos_] != '"') fail("expected a string key");
      std::string key = parse_string();
      if (obj.contains(key)) fail("duplicate key '" + key + "'");
      skip_ws();
      if (pos_ >= s_.size() || s_[pos_] != ':') fail("expected ':' after key '" + key + "'");
      ++pos_;
      skip_ws();
      obj.set(key, parse_value(depth + 1));
      skip_ws();
      if (pos_ < s_.size() && s_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (pos_ < s_.size() && s_[pos_] == '}') {
        ++pos_;
        return obj;
      }
      fail("expected ',' or '}' in object");
    }
  }

  Json parse_array(int depth) {
    ++pos_;  // '['
    Json arr = Json::array();
    skip_ws();
    if (pos_ < s_.size() && s_[pos_] == ']') {
      ++pos_;
      return arr;
    }
    while (true) {
      skip_ws();
      arr.push_back(parse_value(depth + 1));
      skip_ws();
      if (pos_ < s_.size() && s_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (pos_ < s_.size() && s_[pos_] == ']') {
        ++pos_;
        return arr;
      }
      fail("expected ',' or ']' in array");
    }
  }

  unsigned parse_hex4() {
    if (pos_ + 4 > s_.size()) fail("truncated \\u escape");
    unsigned v = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = s_[pos_++];
      v <<= 4;
      if (c >= '0' && c <= '9') v |= unsigned(c - '0');
      else if (c >= 'a' && c <= 'f') v |= unsigned(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') v |= unsigned(c - 'A' + 10);
      else fail("bad hex digit in \\u escape");
    }
    return v;
  }

  std::string parse_string() {
    ++pos_;  // opening quote
    std::string out;
    while (true) {
      if (pos_ >= s_.size()) fail("unterminated string");
      const char c = s_[pos_++];
      if (c == '"') return out;
      if (static_cast<unsigned char>(c) < 0x20) fail("control character in string");
      if (c != '\\') {
        out += c;
        continue;
      }
      if (pos_ >= s_.size()) fail("unterminated escape");
      const char e = s_[pos_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          unsigned cp = parse_hex4();
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            // A high surrogate must be followed by \uDC00..\uDFFF.
            if (pos_ + 2 > s_.size() || s_[pos_] != '\\' || s_[pos_ + 1] != 'u')
              fail("unpaired UTF-16 surrogate");
            pos_ += 2;
            const unsigned lo = parse_hex4();
            if (lo < 0xDC00 || lo > 0xDFFF) fail("unpaired UTF-16 surrogate");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            fail("unpaired UTF-16 surrogate");
          }
          append_utf8(out, cp);
          break;
        }
        default: fail(std::string("bad escape '\\") + e + "'");
      }
    }
  }

  Json parse_number() {
    const size_t start = pos_;
    bool integral = true;
    if (s_[pos_] == '-') ++pos_;
    if (pos_ >= s_.size() || !(s_[pos_] >= '0' && s_[pos_] <= '9')) fail("bad number");
    if (s_[pos_] == '0') {
      ++pos_;
    } else {
      while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') ++pos_;
    }
    if (pos_ < s_.size() && s_[pos_] == '.') {
      integral = false;
      ++pos_;
      if (pos_ >= s_.size() || !(s_[pos_] >= '0' && s_[pos_] <= '9')) fail("bad fraction");
      while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') ++pos_;
    }
    if (pos_ < s_.size() && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
      integral = false;
      ++pos_;
      if (pos_ < s_.size() && (s_[pos_] == '+' || s_[pos_] == '-')) ++pos_;
      if (pos_ >= s_.size() || !(s_[pos_] >= '0' && s_[pos_] <= '9')) fail("bad exponent");
      while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') ++pos_;
    }
    const std::string lit(s_.substr(start, pos_ - start));
    errno = 0;
    if (integral) {
      const long long v = std::strtoll(lit.c_str(), nullptr, 10);
      if (errno == 0) return Json(int64_t(v));
      errno = 0;  // out of int64 range: keep it as a double
    }
    const double d = std::strtod(lit.c_str(), nullptr);
    if (errno == ERANGE && std::isinf(d)) fail("number out of range");
    return Json(d);
  }
};

void escape_to(std::string& out, const std::string& s) {
  out += '"';
  for (const char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", unsigned(c));
          out += buf;
        } else {
          out += c;  // UTF-8 passes through
        }
    }
  }
  out += '"';
}

}  // namespace

Json Json::parse(std::string_view text, const std::string& source) {
  return Parser(text, source).parse_document();
}

Json Json::parse_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  GL_CHECK(f.good(), path, ": cannot open for reading");
  std::ostringstream ss;
  ss << f.rdbuf();
  GL_CHECK(!f.bad(), path, ": read error");
  return parse(ss.str(), path);
}

const char* Json::type_name() const {
  switch (type_) {
    case Type::NUL: return "null";
    case Type::BOOL: return "bool";
    case Type::INT: return "integer";
    case Type::DOUBLE: return "number";
    case Type::STRING: return "string";
    case Type::ARRAY: return "array";
    case Type::OBJECT: return "object";
  }
  return "?";
}

bool Json::as_bool(const std::string& what) const {
  GL_CHECK(is_bool(), what, ": expected a bool, got ", type_name());
  return int_ != 0;
}

int64_t Json::as_int(const std::string& what) const {
  if (type_ == Type::DOUBLE && std::floor(double_) == double_ && std::fabs(double_) < 9.0e15)
    return int64_t(double_);  // 2.0 written by a float formatter
  GL_CHECK(is_int(), what, ": expected an integer, got ", type_name());
  return int_;
}

double Json::as_double(const std::string& what) const {
  GL_CHECK(is_number(), what, ": expected a number, got ", type_name());
  return type_ == Type::INT ? double(int_) : double_;
}

const std::string& Json::as_string(const std::string& what) const {
  GL_CHECK(is_string(), what, ": expected a string, got ", type_name());
  return string_;
}

const std::vector<Json>& Json::as_array(const std::string& what) const {
  GL_CHECK(is_array(), what, ": expected an array, got ", type_name());
  return array_;
}

const Json::Items& Json::items(const std::string& what) const {
  GL_CHECK(is_object(), what, ": expected an object, got ", type_name());
  return object_;
}

size_t Json::size() const {
  return is_array() ? array_.size() : is_object() ? object_.size() : 0;
}

const Json* Json::find(const std::string& key) const {
  if (!is_object()) return nullptr;
  for (const auto& [k, v] : object_)
    if (k == key) return &v;
  return nullptr;
}

const Json& Json::at(const std::string& key, const std::string& what) const {
  GL_CHECK(is_object(), what, ": expected an object, got ", type_name());
  const Json* v = find(key);
  GL_CHECK(v != nullptr, what, ": missing key '", key, "'");
  return *v;
}

const Json& Json::operator[](size_t i) const {
  GL_CHECK(is_array() && i < array_.size(), "json: index ", i, " out of range for ", type_name(),
           " of size ", size());
  return array_[i];
}

void Json::push_back(Json v) {
  GL_CHECK(is_array() || is_null(), "json: push_back on ", type_name());
  type_ = Type::ARRAY;
  array_.push_back(std::move(v));
}

Json& Json::set(const std::string& key, Json v) {
  GL_CHECK(is_object() || is_null(), "json: set('", key, "') on ", type_name());
  type_ = Type::OBJECT;
  for (auto& [k, old] : object_)
    if (k == key) return old = std::move(v);
  object_.emplace_back(key, std::move(v));
  return object_.back().second;
}

void Json::dump_to(std::string& out, int indent, int depth) const {
  auto newline = [&](int d) {
    if (indent < 0) return;
    out += '\n';
    out.append(size_t(indent * d), ' ');
  };
  switch (type_) {
    case Type::NUL: out += "null"; break;
    case Type::BOOL: out += int_ ? "true" : "false"; break;
    case Type::INT: out += std::to_string(int_); break;
    case Type::DOUBLE: {
      GL_CHECK(std::isfinite(double_), "json: cannot write non-finite number ", double_);
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.17g", double_);  // round-trips exactly
      std::string s = buf;
      if (s.find_first_of(".eE") == std::string::npos) s += ".0";  // stays a float
      out += s;
      break;
    }
    case Type::STRING: escape_to(out, string_); break;
    case Type::ARRAY:
      out += '[';
      for (size_t i = 0; i < array_.size(); ++i) {
        if (i) out += ",";
        newline(depth + 1);
        array_[i].dump_to(out, indent, depth + 1);
      }
      if (!array_.empty()) newline(depth);
      out += ']';
      break;
    case Type::OBJECT:
      out += '{';
      for (size_t i = 0; i < object_.size(); ++i) {
        if (i) out += ",";
        newline(depth + 1);
        escape_to(out, object_[i].first);
        out += indent < 0 ? ":" : ": ";
        object_[i].second.dump_to(out, indent, depth + 1);
      }
      if (!object_.empty()) newline(depth);
      out += '}';
      break;
  }
}

std::string Json::dump(int indent) const {
  std::string out;
  dump_to(out, indent, 0);
  return out;
}

}  // namespace gl
