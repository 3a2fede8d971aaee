// gridlock errors: every failure is an exception whose message says what was
// wrong, with which shapes/dtypes/devices, and where it was detected.
// GL_CHECK is the only macro: it exists to capture __FILE__/__LINE__.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace gl {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

[[noreturn]] void throw_error(const char* file, int line, const std::string& msg);

// Concatenates any streamable values into one message string.
template <class... Args>
std::string str(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

}  // namespace gl

// GL_CHECK(cond, parts...): throws gl::Error("file:line: parts...") when !cond.
#define GL_CHECK(cond, ...)                                                   \
  do {                                                                        \
    if (!(cond)) ::gl::throw_error(__FILE__, __LINE__, ::gl::str(__VA_ARGS__)); \
  } while (0)
