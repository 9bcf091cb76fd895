#include "net/auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

namespace latchkey::net {

namespace {

void PutU64(std::string* out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

Mac Hmac(const void* key, std::size_t key_bytes, const std::string& data) {
  Mac mac{};
  unsigned int len = 0;
  unsigned char* ok =
      HMAC(EVP_sha256(), key, static_cast<int>(key_bytes),
           reinterpret_cast<const unsigned char*>(data.data()), data.size(), mac.data(), &len);
  if (ok == nullptr || len != mac.size()) std::abort();  // OpenSSL broken: nothing is safe
  return mac;
}

}  // namespace

Mac IdentityKey(std::string_view master_secret, Role role, std::uint64_t id) {
  std::string data = "latchkey-key-v1";
  data.push_back(static_cast<char>(role));
  PutU64(&data, id);
  return Hmac(master_secret.data(), master_secret.size(), data);
}

Mac AuthAnswer(const Mac& key, const Nonce& nonce, Role role, std::uint64_t id,
               std::uint64_t incarnation) {
  std::string data = "latchkey-auth-v1";
  data.append(reinterpret_cast<const char*>(nonce.data()), nonce.size());
  data.push_back(static_cast<char>(role));
  PutU64(&data, id);
  PutU64(&data, incarnation);
  return Hmac(key.data(), key.size(), data);
}

bool MacEqual(const Mac& a, const Mac& b) {
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

Nonce RandomNonce() {
  Nonce n{};
  if (RAND_bytes(n.data(), static_cast<int>(n.size())) != 1) std::abort();
  return n;
}

Result<std::string> ReadSecretFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::Error("cannot read the secret file " + path);
  std::stringstream bytes;
  bytes << in.rdbuf();
  std::string secret = bytes.str();
  while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r')) secret.pop_back();
  if (secret.empty()) return Status::Error("the secret file " + path + " is empty");
  return secret;
}

}  // namespace latchkey::net
