#include "util/hmac.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

namespace wsc {

std::string hmac_sha256(std::string_view key, std::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest,
       &len);
  return std::string(reinterpret_cast<char*>(digest), len);
}

bool equal_constant_time(std::string_view x, std::string_view y) {
  return x.size() == y.size() &&
         CRYPTO_memcmp(x.data(), y.data(), x.size()) == 0;
}

} // namespace wsc
