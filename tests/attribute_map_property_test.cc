// AttributeMap (core/types.h) stands in for std::map<std::string,
// std::string>: random edits applied to both must leave them equal, through
// both of its searches (a linear walk for a few entries, a binary search
// beyond 16).
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "core/types.h"

namespace latchkey::core {
namespace {

using Reference = std::map<std::string, std::string>;

void ExpectSame(const AttributeMap& map, const Reference& reference) {
  RC_ASSERT(map.size() == reference.size());
  auto it = map.begin();
  for (const auto& [name, value] : reference) {
    RC_ASSERT(it->first == name);
    RC_ASSERT(it->second == value);
    ++it;
  }
}

RC_GTEST_PROP(AttributeMapProperty, BehavesAsAStdMap, ()) {
  // Names from a pool of up to 64, so maps grow past the binary-search
  // threshold and edits hit existing names often.
  const int pool = *rc::gen::inRange(1, 65);
  const auto ops = *rc::gen::container<std::vector<std::pair<int, int>>>(
      rc::gen::pair(rc::gen::inRange(0, 6), rc::gen::inRange(0, pool)));
  AttributeMap map;
  Reference reference;
  int version = 0;
  for (const auto& [op, n] : ops) {
    std::string name = "a" + std::to_string(n);
    std::string value = "v" + std::to_string(++version);
    switch (op) {
      case 0:
        map[name] = value;
        reference[name] = value;
        break;
      case 1: {
        bool inserted = map.insert_or_assign(name, value).second;
        RC_ASSERT(inserted == reference.insert_or_assign(name, value).second);
        break;
      }
      case 2: {
        bool inserted = map.emplace(name, value).second;
        RC_ASSERT(inserted == reference.emplace(name, value).second);
        break;
      }
      case 3:
        RC_ASSERT(map.erase(name) == reference.erase(name));
        break;
      case 4: {
        auto found = map.find(name);
        auto expected = reference.find(name);
        RC_ASSERT((found == map.end()) == (expected == reference.end()));
        if (found != map.end()) RC_ASSERT(found->second == expected->second);
        RC_ASSERT(map.contains(name) == (reference.count(name) == 1));
        break;
      }
      default:
        map.emplace_hint(map.cend(), name, value);
        reference.emplace_hint(reference.cend(), name, value);
        break;
    }
    ExpectSame(map, reference);
  }
}

}  // namespace
}  // namespace latchkey::core
