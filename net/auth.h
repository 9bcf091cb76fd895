// Authentication of latchkeyd connections: HMAC-SHA256 challenge-response.
//
// The server holds one master secret. Each identity (role, id) has its own
// key, HMAC(master, "latchkey-key-v1" | role | id), so an operator can hand
// a process only its own key: it can then authenticate as itself and as no
// one else, which is what binds tokens to processes (B9). The answer to a
// challenge is HMAC(key, "latchkey-auth-v1" | nonce | role | id | incarnation).
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "net/codec.h"

namespace latchkey::net {

Mac IdentityKey(std::string_view master_secret, Role role, std::uint64_t id);
Mac AuthAnswer(const Mac& key, const Nonce& nonce, Role role, std::uint64_t id,
               std::uint64_t incarnation);
// Constant-time comparison.
bool MacEqual(const Mac& a, const Mac& b);
// From OpenSSL's CSPRNG.
Nonce RandomNonce();

// The master secret from a file, as latchkeyd reads it: the whole file less
// trailing newlines (so `echo secret > file` works). Empty files are refused.
Result<std::string> ReadSecretFile(const std::string& path);

}  // namespace latchkey::net
