// Whether this build runs under a sanitizer, for the few places that must know (suppressions of
// third-party reports, tests that measure memory or scale their load): GCC defines
// __SANITIZE_ADDRESS__ / __SANITIZE_THREAD__, clang answers __has_feature instead.
#pragma once

#if defined(__SANITIZE_ADDRESS__)
#define ZERODET_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ZERODET_ASAN 1
#endif
#endif

#if defined(__SANITIZE_THREAD__)
#define ZERODET_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define ZERODET_TSAN 1
#endif
#endif
