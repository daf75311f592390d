#define CAF_SUITE sanitize

// Proves that a -DWSC_SANITIZE=ON build (scripts/sanitize.sh builds build-asan
// that way) really runs under AddressSanitizer and UndefinedBehaviorSanitizer:
// the CMake option defines WSC_SANITIZE=1, and then the ASan runtime must know
// a heap redzone and the UBSan runtime must be loaded. In every other
// configuration the suite only reports that sanitizers are off.

#include <caf/test/unit_test.hpp>

#include <dlfcn.h>

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define WSC_HAS_ASAN 1
#endif
#endif
#if !defined(WSC_HAS_ASAN) && defined(__SANITIZE_ADDRESS__)
#define WSC_HAS_ASAN 1
#endif

#ifdef WSC_HAS_ASAN
extern "C" int __asan_address_is_poisoned(void const volatile* addr);
#endif

#ifdef WSC_SANITIZE
namespace {

bool runtime_has(const char* symbol) {
  return dlsym(RTLD_DEFAULT, symbol) != nullptr;
}

} // namespace
#endif

CAF_TEST(the sanitizer configuration is what the build says) {
#ifdef WSC_SANITIZE
#ifndef WSC_HAS_ASAN
  CAF_FAIL("WSC_SANITIZE is defined but AddressSanitizer is not enabled");
#else
  // The byte right after a heap array is a poisoned redzone: only ASan knows.
  auto* bytes = new char[16];
  CAF_CHECK_EQUAL(__asan_address_is_poisoned(bytes), 0);
  CAF_CHECK_NOT_EQUAL(__asan_address_is_poisoned(bytes + 16), 0);
  delete[] bytes;
#endif
  CAF_CHECK(runtime_has("__asan_init"));
  // -fsanitize=undefined links the UBSan runtime and its handlers.
  CAF_CHECK(runtime_has("__ubsan_handle_add_overflow") ||
            runtime_has("__ubsan_handle_add_overflow_abort"));
#else
  CAF_MESSAGE(
      "not a sanitizer build (WSC_SANITIZE undefined): nothing to check");
#endif
}
