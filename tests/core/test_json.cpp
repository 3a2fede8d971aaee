// core/json: RFC 8259 parsing and writing as the checkpoint, config and
// tokenizer readers rely on it: exact round trips (key order, int64, the
// shortest-exact doubles), \u escapes with surrogate pairs, and errors that
// name the source, line and column or the key path.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>

#include <unistd.h>

#include "core/error.h"
#include "core/json.h"

using namespace gl;

namespace {

// The message of the gl::Error that `fn` throws ("" if it does not throw).
template <class Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("json: parse/dump round trip keeps types and key order") {
  const std::string text =
      R"({"zeta":1,"alpha":[true,false,null,-0.5,"s"],"mid":{"b":2,"a":{}},"e":[],)"
      R"("big":1e+300,"f":0.10000000000000001})";
  const Json j = Json::parse(text);
  REQUIRE(j.is_object());
  CHECK(j.size() == 6);
  CHECK(j.items()[0].first == "zeta");  // insertion order, not sorted
  CHECK(j.items()[1].first == "alpha");
  CHECK(j.at("alpha")[0].as_bool() == true);
  CHECK(j.at("alpha")[2].is_null());
  CHECK(j.at("alpha")[3].as_double() == -0.5);
  CHECK(j.at("alpha")[4].as_string() == "s");
  CHECK(j.at("mid").at("a").is_object());
  CHECK(j.at("e").is_array());
  CHECK(j.at("e").size() == 0);
  CHECK(j.at("f").as_double() == 0.1);
  // compact and indented dumps parse back to the same compact text
  const std::string compact = j.dump();
  CHECK(Json::parse(compact).dump() == compact);
  CHECK(Json::parse(j.dump(2)).dump() == compact);
  CHECK(j.dump(2).find("\n  \"zeta\": 1,") != std::string::npos);
  // doubles survive exactly; integral doubles stay floats
  for (double d : {0.1, 1.0 / 3.0, -1e-310, 6.02214076e23, 1e300, 2.0}) {
    const Json back = Json::parse(Json(d).dump());
    CHECK(back.type() == Json::Type::DOUBLE);
    CHECK(back.as_double() == d);
  }
  CHECK(Json(2.0).dump() == "2.0");
  CHECK(Json::parse("1E+2").as_double() == 100.0);
  CHECK(Json::parse("-0").as_int() == 0);
}

TEST_CASE("json: building values, set() replaces in place") {
  Json o = Json::object();
  o.set("b", Json(1));
  o.set("a", Json("x"));
  o.set("b", Json(3));  // replaces, keeps position
  CHECK(o.dump() == R"({"b":3,"a":"x"})");
  Json a;
  a.push_back(Json(1));  // null becomes an array
  a.push_back(Json::object());
  CHECK(a.dump() == "[1,{}]");
  CHECK(Json().dump() == "null");
  CHECK_THROWS_WITH_AS(o.push_back(Json(1)), doctest::Contains("json: push_back on object"), Error);
  CHECK_THROWS_WITH_AS(a.set("k", Json(1)), doctest::Contains("json: set('k') on array"), Error);
  CHECK_THROWS_WITH_AS(a[2], doctest::Contains("json: index 2 out of range for array of size 2"),
                       Error);
  CHECK(o.find("missing") == nullptr);
  CHECK(a.find("b") == nullptr);  // not an object
  CHECK_THROWS_WITH_AS(Json(std::nan("")).dump(),
                       doctest::Contains("json: cannot write non-finite number"), Error);
}

TEST_CASE("json: int64 values are exact") {
  const Json j = Json::parse(
      R"([9223372036854775807, -9223372036854775808, 9007199254740993, 0, -1])");
  CHECK(j[0].as_int() == std::numeric_limits<int64_t>::max());
  CHECK(j[1].as_int() == std::numeric_limits<int64_t>::min());
  CHECK(j[2].as_int() == 9007199254740993LL);  // 2^53 + 1: not representable as a double
  CHECK(j.dump() == "[9223372036854775807,-9223372036854775808,9007199254740993,0,-1]");
  // Beyond int64 the literal is kept as a double, which as_int refuses.
  const Json big = Json::parse("9223372036854775808");
  CHECK(big.type() == Json::Type::DOUBLE);
  CHECK_THROWS_WITH_AS(big.as_int("n"), doctest::Contains("n: expected an integer, got number"),
                       Error);
  CHECK_THROWS_WITH_AS(Json::parse("2.5").as_int("x"), doctest::Contains("x: expected an integer"),
                       Error);
  CHECK(Json::parse("3.0").as_int() == 3);  // float formatters write integral values as 3.0
  CHECK_THROWS_WITH_AS(Json::parse("1e400", "n.json"),
                       doctest::Contains("n.json: invalid JSON at line 1, column 6: number out of "
                                         "range"),
                       Error);
}

TEST_CASE("json: strings, escapes and unicode") {
  CHECK(Json::parse(R"("a\"b\\c\/d\b\f\n\r\t")").as_string() == "a\"b\\c/d\b\f\n\r\t");
  CHECK(Json::parse(R"("\u0041\u00e9\u20ac")").as_string() == "A\xc3\xa9\xe2\x82\xac");
  // U+1F600 as a UTF-16 surrogate pair -> 4-byte UTF-8
  CHECK(Json::parse(R"("\ud83d\ude00")").as_string() == "\xf0\x9f\x98\x80");
  CHECK(Json::parse(R"("\uD834\uDD1E")").as_string() == "\xf0\x9d\x84\x9e");  // U+1D11E
  // raw UTF-8 passes through in both directions
  const std::string raw = "\xe2\x98\x83 snow";
  CHECK(Json::parse("\"" + raw + "\"").as_string() == raw);
  CHECK(Json(raw).dump() == "\"" + raw + "\"");
  // control characters are written as escapes and read back
  const std::string ctl = std::string("a\x01") + '\0' + "z\n";
  CHECK(Json(ctl).dump() == R"("a\u0001\u0000z\n")");
  CHECK(Json::parse(Json(ctl).dump()).as_string() == ctl);

  CHECK_THROWS_WITH_AS(Json::parse(R"("\ud83d")"), doctest::Contains("unpaired UTF-16 surrogate"),
                       Error);
  CHECK_THROWS_WITH_AS(Json::parse(R"("\ud83d\u0041")"),
                       doctest::Contains("unpaired UTF-16 surrogate"), Error);
  CHECK_THROWS_WITH_AS(Json::parse(R"("\ude00")"), doctest::Contains("unpaired UTF-16 surrogate"),
                       Error);
  CHECK_THROWS_WITH_AS(Json::parse(R"("\u12g4")"), doctest::Contains("bad hex digit"), Error);
  CHECK_THROWS_WITH_AS(Json::parse(R"("\u12")"), doctest::Contains("truncated \\u escape"), Error);
  CHECK_THROWS_WITH_AS(Json::parse(R"("\x")"), doctest::Contains("bad escape '\\x'"), Error);
  CHECK_THROWS_WITH_AS(Json::parse("\"a\nb\""), doctest::Contains("control character in string"),
                       Error);
  CHECK_THROWS_WITH_AS(Json::parse("\"abc"), doctest::Contains("unterminated string"), Error);
}

TEST_CASE("json: syntax errors name source, line and column") {
  const std::string text = "{\n  \"a\": 1,\n  \"b\": x\n}";
  CHECK_THROWS_WITH_AS(
      Json::parse(text, "config.json"),
      doctest::Contains("config.json: invalid JSON at line 3, column 8: unexpected character 'x'"),
      Error);
  struct Case {
    const char* text;
    const char* message;
  };
  const Case cases[] = {
      {"", "line 1, column 1: unexpected end of input"},
      {"[1,]", "line 1, column 4: unexpected character ']'"},
      {"[1 2]", "line 1, column 4: expected ',' or ']' in array"},
      {"{\"a\" 1}", "line 1, column 6: expected ':' after key 'a'"},
      {"{\"a\":1,}", "line 1, column 8: expected a string key"},
      {"{1:2}", "expected a string key"},
      {"{\"a\":1 \"b\":2}", "expected ',' or '}' in object"},
      {"01", "line 1, column 2: unexpected trailing characters"},
      {"[1] x", "unexpected trailing characters"},
      {"-", "bad number"},
      {"1.", "bad fraction"},
      {"1e+", "bad exponent"},
      {"tru", "unexpected character 't'"},
      {"[", "unexpected end of input"},
      {"\t\r\n  ?", "line 2, column 3: unexpected character '?'"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.text);
    const std::string what = error_of([&] { Json::parse(c.text, "t.json"); });
    CHECK(what.find(std::string("t.json: invalid JSON at ")) == 0);
    CHECK(what.find(c.message) != std::string::npos);
    CHECK(what.find('\n') == std::string::npos);  // one line
  }
}

TEST_CASE("json: duplicate keys are an error") {
  CHECK_THROWS_WITH_AS(Json::parse(R"({"a":1,"b":2,"a":3})", "h.json"),
                       doctest::Contains("h.json: invalid JSON at line 1, column 17: duplicate "
                                         "key 'a'"),
                       Error);
  // the same key in different objects is fine
  CHECK(Json::parse(R"({"a":{"a":1},"b":{"a":2}})").at("b").at("a").as_int() == 2);
}

TEST_CASE("json: nesting depth is limited, not a stack overflow") {
  auto nested = [](size_t levels) { return std::string(levels, '[') + std::string(levels, ']'); };
  CHECK(Json::parse(nested(512)).is_array());
  CHECK(Json::parse(std::string(512, '[') + "1" + std::string(512, ']')).is_array());
  CHECK_THROWS_WITH_AS(Json::parse(nested(513)),
                       doctest::Contains("nesting deeper than 512 levels"), Error);
  CHECK_THROWS_WITH_AS(Json::parse(nested(100000)), doctest::Contains("nesting deeper than 512"),
                       Error);
  std::string objects;
  for (int i = 0; i < 1000; ++i) objects += "{\"k\":";
  CHECK_THROWS_WITH_AS(Json::parse(objects), doctest::Contains("nesting deeper than 512"), Error);
}

TEST_CASE("json: typed access errors name the key path") {
  const Json cfg =
      Json::parse(R"({"hidden_size":"768","layers":[1,2],"eps":1e-5,"flag":true})", "config.json");
  CHECK_THROWS_WITH_AS(cfg.at("vocab_size", "config.json"),
                       doctest::Contains("config.json: missing key 'vocab_size'"), Error);
  CHECK_THROWS_WITH_AS(cfg.at("hidden_size").as_int("config.json: hidden_size"),
                       doctest::Contains("config.json: hidden_size: expected an integer, got "
                                         "string"),
                       Error);
  CHECK_THROWS_WITH_AS(cfg.at("layers").as_string("config.json: layers"),
                       doctest::Contains("config.json: layers: expected a string, got array"),
                       Error);
  CHECK_THROWS_WITH_AS(cfg.at("eps").as_bool("config.json: eps"),
                       doctest::Contains("config.json: eps: expected a bool, got number"), Error);
  CHECK_THROWS_WITH_AS(cfg.at("flag").as_double("config.json: flag"),
                       doctest::Contains("config.json: flag: expected a number, got bool"), Error);
  CHECK_THROWS_WITH_AS(cfg.at("flag").items("config.json: flag"),
                       doctest::Contains("config.json: flag: expected an object, got bool"), Error);
  CHECK_THROWS_WITH_AS(cfg.at("eps").as_array("config.json: eps"),
                       doctest::Contains("config.json: eps: expected an array, got number"), Error);
  CHECK_THROWS_WITH_AS(cfg.at("layers").at("x", "config.json: layers"),
                       doctest::Contains("config.json: layers: expected an object, got array"),
                       Error);
  CHECK(cfg.at("eps").as_double() == 1e-5);
  CHECK(cfg.at("layers")[1].as_int() == 2);
}

TEST_CASE("json: parse_file names the path") {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("gridlock_json_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string good = (dir / "good.json").string(), bad = (dir / "bad.json").string();
  std::ofstream(good) << "{\"a\": [1, 2]}\n";
  std::ofstream(bad) << "{\n\"a\": [1, 2}\n";
  CHECK(Json::parse_file(good).at("a")[1].as_int() == 2);
  CHECK_THROWS_WITH_AS(Json::parse_file(bad),
                       doctest::Contains((bad + ": invalid JSON at line 2, column 11").c_str()),
                       Error);
  const std::string missing = (dir / "missing.json").string();
  CHECK_THROWS_WITH_AS(Json::parse_file(missing),
                       doctest::Contains((missing + ": cannot open for reading").c_str()), Error);
  fs::remove_all(dir);
}
